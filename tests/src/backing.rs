//! Real PostgreSQL and Redis for the suites: a fresh database on the server named by
//! CONFER_TEST_DATABASE_URL (which `scripts/test.sh` sets), a redis-server of a test's
//! own that it can stop and start again on the same port, and a TCP proxy that cuts a
//! connection on demand (an outage without stopping the server).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A fresh database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres() -> anyhow::Result<String> {
    let admin = std::env::var("CONFER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("confer_test_{:08x}", rand::random::<u32>());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await?;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// A TCP port on 127.0.0.1 that nothing listens on, for a process the test starts.
pub fn free_port() -> anyhow::Result<u16> {
    unclaimed_port(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A UDP port on 127.0.0.1 that nothing is bound to, for a process the test starts.
pub fn free_udp_port() -> anyhow::Result<u16> {
    unclaimed_port(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// Where ports for child processes are drawn from: below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default). A port the kernel hands
/// out for `bind(0)` or an outgoing connection comes from that range, so a port
/// chosen there could be taken by any other test's socket between the check here and
/// the child's bind; below it, only another explicit choice can collide, and the
/// choice is random.
const CHILD_PORTS: std::ops::Range<u16> = 10_000..32_768;

/// The end of [`CHILD_PORTS`] on this machine: the start of its ephemeral range, read
/// once (at least 1,000 ports above the start, should the range be set unusually low).
fn child_ports_end() -> u16 {
    static END: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *END.get_or_init(|| {
        let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(CHILD_PORTS.end);
        CHILD_PORTS
            .end
            .min(ephemeral_start)
            .max(CHILD_PORTS.start + 1_000)
    })
}

fn unclaimed_port(free: impl Fn(u16) -> bool) -> anyhow::Result<u16> {
    let end = child_ports_end();
    for _ in 0..200 {
        let port = rand::random_range(CHILD_PORTS.start..end);
        if free(port) && claim(port)? {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {}..{end}", CHILD_PORTS.start)
}

/// Claims `port` for this test process until it exits: an exclusive lock on a file
/// named after the port, kept open. A port is free between the check above and the
/// child's bind, so without a claim two draws in one test (an SFU's control and
/// metrics ports) or in two tests running side by side could hand out the same port,
/// and one child would fail to bind. The kernel drops the lock when the process
/// ends, however it ends, so nothing is left to clean up.
fn claim(port: u16) -> anyhow::Result<bool> {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("confer-test-ports");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))?;
    match file.try_lock() {
        Ok(()) => {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            Ok(true)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(err)) => Err(err.into()),
    }
}

/// A redis-server process on a fixed port, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on its port and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| {
                anyhow::anyhow!("cannot start redis-server (install redis-server): {err}")
            })?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server on port {} did not start", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy to `target` that a test can cut (dropping every connection and
/// refusing new ones) and restore: a database outage without stopping the database.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let accept_up = up.clone();
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(SeqCst) {
                    continue;
                }
                let mut cut = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            port,
            up,
            generation,
        })
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_port_is_handed_out_once_while_its_claimant_lives() -> anyhow::Result<()> {
        let ports = (0..100)
            .map(|_| super::free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in ports {
            assert!(!super::claim(port)?, "port {port} was claimed again");
        }
        Ok(())
    }
}
