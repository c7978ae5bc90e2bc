//! This process's certificate and key, read again when their files change: a
//! certificate renewed in place (cert-manager rewriting the Secret, the kubelet
//! swapping the mounted files) is presented from the next handshake on, without a
//! restart. Files are compared at most every `recheck`, during a handshake; a renewal
//! that cannot be read (half-written, mismatched key) keeps the previous pair.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, TlsFiles, check_certs, check_key, read};

#[derive(Debug)]
pub(super) struct Identity {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    recheck: Duration,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' bytes it was made from, certificate then key.
    source: (Vec<u8>, Vec<u8>),
    checked: Instant,
}

impl Identity {
    pub(super) fn load(
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
        recheck: Duration,
    ) -> Result<Self, TlsError> {
        let source = read_pair(files)?;
        let key = certified(files, &source, &provider)?;
        Ok(Self {
            files: files.clone(),
            provider,
            recheck,
            state: Mutex::new(Loaded {
                key,
                source,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to present now, reloaded first if the files changed.
    pub(super) fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= self.recheck {
            state.checked = Instant::now();
            match read_pair(&self.files) {
                Ok(source) if source != state.source => {
                    match certified(&self.files, &source, &self.provider) {
                        Ok(key) => {
                            tracing::info!(cert = %self.files.cert.display(), "gRPC TLS certificate reloaded");
                            state.key = key;
                            state.source = source;
                        }
                        Err(err) => {
                            tracing::warn!(%err, "gRPC TLS certificate changed but cannot be used; keeping the previous one");
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "gRPC TLS certificate cannot be read; keeping the previous one");
                }
            }
        }
        state.key.clone()
    }
}

/// The certificate and key files' bytes, each checked to hold what it should.
fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert = read("certificate", &files.cert)?;
    check_certs("certificate", &files.cert, &cert)?;
    let key = read("key", &files.key)?;
    check_key(&files.key, &key)?;
    Ok((cert, key))
}

fn certified(
    files: &TlsFiles,
    (cert, key): &(Vec<u8>, Vec<u8>),
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| malformed("certificate", files, err.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|err| malformed("key", files, err.to_string()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|err| TlsError::Unusable {
            key: files.key.clone(),
            cert: files.cert.clone(),
            message: err.to_string(),
        })
}

fn malformed(what: &'static str, files: &TlsFiles, message: String) -> TlsError {
    TlsError::Malformed {
        what,
        path: if what == "key" {
            files.key.clone()
        } else {
            files.cert.clone()
        },
        message,
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
