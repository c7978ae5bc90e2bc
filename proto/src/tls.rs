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
//! do. The PEM files are read and checked once, at start-up, so that a missing or
//! malformed file is a clear error there and not a failed handshake later.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

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
    #[error("the certificate name must not be empty")]
    NoName,
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

/// A checked TLS identity and CA, for internal gRPC servers and clients.
#[derive(Clone, Debug)]
pub struct GrpcTls {
    identity: Identity,
    ca: Certificate,
    name: String,
}

impl GrpcTls {
    /// Reads and checks the files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let cert = read("certificate", &files.cert)?;
        check_certs("certificate", &files.cert, &cert)?;
        let key = read("key", &files.key)?;
        check_key(&files.key, &key)?;
        let ca = read("CA certificate", &files.ca)?;
        check_certs("CA certificate", &files.ca, &ca)?;
        if files.name.trim().is_empty() {
            return Err(TlsError::NoName);
        }
        install_ring();
        Ok(Self {
            identity: Identity::from_pem(cert, key),
            ca: Certificate::from_pem(ca),
            name: files.name.clone(),
        })
    }

    /// The name servers' certificates are checked for.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.ca.clone())
            .domain_name(self.name.clone())
    }
}

/// A server builder for an internal API: requiring client certificates when `tls` is
/// given, plaintext otherwise.
pub fn server(tls: Option<&GrpcTls>) -> Result<Server, tonic::transport::Error> {
    let builder = Server::builder();
    match tls {
        Some(tls) => builder.tls_config(tls.server_config()),
        None => Ok(builder),
    }
}

/// An endpoint for an internal API at `addr` (`host:port`): over mutual TLS when `tls`
/// is given, plaintext otherwise.
pub fn endpoint(addr: &str, tls: Option<&GrpcTls>) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        Some(tls) => {
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.client_config())
        }
        None => Endpoint::from_shared(format!("http://{addr}")),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn check_certs(what: &'static str, path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|err| TlsError::Malformed {
            what,
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(())
}

fn check_key(path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|err| match err {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                what: "key",
                path: path.to_owned(),
                expected: "private key",
            },
            err => TlsError::Malformed {
                what: "key",
                path: path.to_owned(),
                message: err.to_string(),
            },
        })
}

/// Makes ring the process's TLS provider, unless one is installed already.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
