//! Headless Chromium driven through chromedriver's W3C WebDriver HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backing::free_port;

/// A chromedriver process; browsers are sessions on it.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

pub struct Browser {
    base: String,
    http: reqwest::Client,
    _profile: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Driver {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| {
                anyhow::anyhow!("cannot start chromedriver (install chromium-driver): {err}")
            })?;
        // No WebDriver call takes this long (scripts time out after 30 s in the
        // browser): a browser that stops answering fails the test instead of hanging it.
        let http = confer_http::builder()
            .timeout(Duration::from_secs(90))
            .build()?;
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .is_ok()
            {
                return Ok(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("chromedriver did not come up")
    }

    /// A new headless Chromium with fake camera and microphone.
    pub async fn browser(&self) -> anyhow::Result<Browser> {
        self.browser_with(&[]).await
    }

    /// A new headless Chromium with fake devices and `extra` command-line flags
    /// (e.g. `--use-file-for-fake-audio-capture=<wav>`).
    pub async fn browser_with(&self, extra: &[String]) -> anyhow::Result<Browser> {
        let profile = std::env::temp_dir().join(format!("confer-chromium-{}", rand_suffix()));
        std::fs::create_dir_all(&profile)?;
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,720",
        ];
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium_binary(), "args": args}
            }}
        });
        let response: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let session = response["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no session: {response}"))?;
        Ok(Browser {
            base: format!("{}/session/{session}", self.base),
            http: self.http.clone(),
            _profile: TempDir(profile),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Browsers a failed test did not close outlive chromedriver; their profile
        // directories name this process, so they can be found and stopped.
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(format!("confer-chromium-{}-", std::process::id()))
            .status();
    }
}

fn chromium_binary() -> String {
    std::env::var("CONFER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

impl Browser {
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command("url", json!({ "url": url })).await.map(drop)
    }

    /// Runs `script` (a function body) and returns what it returns; promises are awaited.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.command("execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Clicks the element `selector` finds, as a person would; an error if none does.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let script = format!(
            "const e = document.querySelector({}); if (!e) return false; e.click(); return true;",
            serde_json::to_string(selector)?
        );
        anyhow::ensure!(
            self.eval(&script).await? == Value::Bool(true),
            "nothing on the page matches {selector:?}"
        );
        Ok(())
    }

    /// Polls `script` until it returns `true`, or fails with its last value.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.eval(script).await?;
            if last == Value::Bool(true) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("timed out after {timeout:?} waiting for {what}; last value: {last}")
    }

    /// Opens the web app at `url` (a join link) and waits until it is in the call;
    /// returns the participant id it joined as.
    pub async fn join_call(&self, url: &str) -> anyhow::Result<String> {
        self.goto(url).await?;
        self.wait_for(
            "the page in the call",
            "return document.getElementById('status').textContent === 'Connected';",
            Duration::from_secs(15),
        )
        .await?;
        let id = self.eval("return window.conferClient.self.id;").await?;
        Ok(id.as_str().unwrap_or_default().to_owned())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.http.delete(&self.base).send().await?;
        Ok(())
    }

    async fn command(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response: Value = self
            .http
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if let Some(error) = response["value"].get("error") {
            anyhow::bail!(
                "webdriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        Ok(response["value"].clone())
    }
}
