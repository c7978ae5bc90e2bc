//! Mutual TLS for the internal gRPC APIs (room, chat, SFU control).
//!
//! Every internal server and client of a deployment shares one identity: a
//! certificate and key signed by the deployment's CA, naming [`GrpcTls::name`]
//! (`confer.internal` unless set). A server accepts only clients whose certificate the
//! CA signed; a client talks only to servers whose certificate the CA signed for that
//! name. Clients verify the name, not the address they dial: SFUs are found by their
//! IP through Consul, so a certificate cannot name every address.
//!
//! Without it the APIs speak plaintext HTTP/2, as `confer dev` and single-host setups
//! do. The PEM files are read and checked at start-up, so that a missing or malformed
//! file is a clear error there and not a failed handshake later; all three are read
//! again when they change (`reload.rs`): a certificate renewed, or a CA rotated, in
//! place is used without a restart.

mod connector;
mod identity;
mod incoming;
mod reload;
mod trust;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tonic::transport::{Channel, Endpoint};

pub use incoming::Conn;

/// The name internal certificates are issued for, and clients verify, by default.
pub const DEFAULT_NAME: &str = "confer.internal";

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} {path} is not valid PEM: {message}")]
    Malformed {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("key {key} cannot be used with certificate {cert}: {message}")]
    Unusable {
        key: PathBuf,
        cert: PathBuf,
        message: String,
    },
    #[error("{0:?} is not a name a certificate can carry")]
    BadName(String),
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// Where a process's TLS identity and the deployment's CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates peers must chain to (PEM).
    pub ca: PathBuf,
    /// The name servers' certificates must carry; clients check it.
    pub name: String,
}

/// How often the certificate, key and CA files are compared with what is in use.
pub const RECHECK: Duration = Duration::from_secs(30);

/// A checked TLS identity and CA, for internal gRPC servers and clients. Each is read
/// again when its files change (see `reload.rs`).
#[derive(Clone)]
pub struct GrpcTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GrpcTls {
    /// Reads and checks the files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::load_rechecking_every(files, RECHECK)
    }

    /// The same, comparing the files with what is in use at most every `recheck`.
    pub fn load_rechecking_every(files: &TlsFiles, recheck: Duration) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = Arc::new(identity::Identity::load(
            identity::KeyFiles {
                cert: files.cert.clone(),
                key: files.key.clone(),
                provider: provider.clone(),
            },
            recheck,
        )?);
        let trust = Arc::new(trust::Trust::load(
            trust::CaFile {
                path: files.ca.clone(),
                provider: provider.clone(),
            },
            recheck,
        )?);
        let name = ServerName::try_from(files.name.trim().to_owned())
            .map_err(|_| TlsError::BadName(files.name.clone()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Setup(err.to_string()))?
            .with_client_cert_verifier(trust.clone())
            .with_cert_resolver(identity.clone());
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Setup(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(trust)
            .with_client_cert_resolver(identity);
        client.alpn_protocols = vec![b"h2".to_vec()];
        // Every new connection checks the certificates of now: a resumed session
        // would keep one that has since been renewed or revoked.
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            name,
        })
    }

    /// The name servers' certificates are checked for.
    pub fn name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

/// The connections an internal gRPC server accepts on `listener`: over mutual TLS
/// when `tls` is given, plaintext otherwise; with TCP_NODELAY either way.
pub fn incoming(
    listener: tokio::net::TcpListener,
    tls: Option<&GrpcTls>,
) -> Pin<Box<dyn Stream<Item = std::io::Result<Conn>> + Send>> {
    match tls {
        Some(tls) => Box::pin(incoming::tls(listener, tls.server.clone())),
        None => Box::pin(incoming::plain(listener)),
    }
}

/// An endpoint for an internal API at `addr` (`host:port`), to set timeouts on and
/// then connect with [`lazy_channel`] or [`channel`].
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
}

/// A channel to `endpoint`, connected on first use: over mutual TLS when `tls` is
/// given, plaintext otherwise.
pub fn lazy_channel(endpoint: &Endpoint, tls: Option<&GrpcTls>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(tls.connector()),
        None => endpoint.connect_lazy(),
    }
}

/// A channel to `endpoint`, connected now: over mutual TLS when `tls` is given.
pub async fn channel(
    endpoint: &Endpoint,
    tls: Option<&GrpcTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
        None => endpoint.connect().await,
    }
}

impl GrpcTls {
    fn connector(&self) -> connector::Connector {
        connector::Connector {
            config: self.client.clone(),
            name: self.name.clone(),
        }
    }
}

impl TlsError {
    fn malformed(what: &'static str, path: &Path, err: impl std::fmt::Display) -> Self {
        TlsError::Malformed {
            what,
            path: path.to_owned(),
            message: err.to_string(),
        }
    }
}

pub(super) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificates in `pem`: at least one, each well-formed.
pub(super) fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::malformed(what, path, err))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// The private key in `pem`.
pub(super) fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key",
            path: path.to_owned(),
            expected: "private key",
        },
        err => TlsError::malformed("key", path, err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
            name: DEFAULT_NAME.to_owned(),
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("confer-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = temp_dir("missing");
        let err = GrpcTls::load(&files(&dir)).expect_err("no files");
        assert!(
            err.to_string().starts_with("cannot read certificate ")
                && err.to_string().contains("tls.crt"),
            "{err}"
        );
    }

    #[test]
    fn files_without_pem_are_refused_by_name() {
        let dir = temp_dir("garbage");
        std::fs::write(dir.join("tls.crt"), b"not a certificate").expect("write");
        let err = GrpcTls::load(&files(&dir)).expect_err("no PEM");
        assert_eq!(
            err.to_string(),
            format!(
                "certificate {} holds no PEM certificate",
                dir.join("tls.crt").display()
            )
        );
        let cut = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        std::fs::write(dir.join("tls.crt"), cut).expect("write");
        let err = GrpcTls::load(&files(&dir)).expect_err("cut short");
        assert!(
            matches!(
                err,
                TlsError::Malformed {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
    }
}
