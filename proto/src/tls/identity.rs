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
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, TlsFiles, certs, private_key, read};

#[derive(Debug)]
pub(super) struct Identity {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    recheck: Duration,
    state: Mutex<Loaded>,
}

/// A certificate file's bytes, then its key file's.
type Source = (Vec<u8>, Vec<u8>);

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' bytes it was made from.
    source: Source,
    checked: Instant,
}

impl Identity {
    pub(super) fn load(
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
        recheck: Duration,
    ) -> Result<Self, TlsError> {
        let (source, key) = load_pair(files, &provider)?;
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
                    match load_pair(&self.files, &self.provider) {
                        Ok((source, key)) => {
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

/// The certificate and key files' bytes, as they are now.
fn read_pair(files: &TlsFiles) -> Result<Source, TlsError> {
    Ok((read("certificate", &files.cert)?, read("key", &files.key)?))
}

/// The certificate and key files, each read and checked in turn, and the pair they
/// make.
fn load_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(Source, Arc<CertifiedKey>), TlsError> {
    let cert = read("certificate", &files.cert)?;
    let chain = certs("certificate", &files.cert, &cert)?;
    let key = read("key", &files.key)?;
    let der = private_key(&files.key, &key)?;
    let certified =
        CertifiedKey::from_der(chain, der, provider).map_err(|err| TlsError::Unusable {
            key: files.key.clone(),
            cert: files.cert.clone(),
            message: err.to_string(),
        })?;
    Ok(((cert, key), Arc::new(certified)))
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
