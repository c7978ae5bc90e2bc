//! This process's certificate and key, made again when their files change
//! (`reload.rs`): a certificate renewed in place is presented from the next handshake
//! on, without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::reload::{FromFiles, Reloading};
use super::{TlsError, certs, private_key, read};

/// The certificate and key to present, read again when they change.
pub(super) type Identity = Reloading<KeyFiles>;

#[derive(Debug)]
pub(super) struct KeyFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) provider: Arc<CryptoProvider>,
}

impl FromFiles for KeyFiles {
    /// The certificate file's bytes, then the key file's.
    type Bytes = (Vec<u8>, Vec<u8>);
    type Value = Arc<CertifiedKey>;
    const WHAT: &'static str = "certificate";

    fn path(&self) -> &Path {
        &self.cert
    }

    fn read(&self) -> Result<Self::Bytes, TlsError> {
        Ok((read("certificate", &self.cert)?, read("key", &self.key)?))
    }

    /// The certificate, then the key, each read and checked in turn, and the pair they
    /// make.
    fn load(&self) -> Result<(Self::Bytes, Self::Value), TlsError> {
        let cert = read("certificate", &self.cert)?;
        let chain = certs("certificate", &self.cert, &cert)?;
        let key = read("key", &self.key)?;
        let der = private_key(&self.key, &key)?;
        let certified = CertifiedKey::from_der(chain, der, &self.provider).map_err(|err| {
            TlsError::Unusable {
                key: self.key.clone(),
                cert: self.cert.clone(),
                message: err.to_string(),
            }
        })?;
        Ok(((cert, key), Arc::new(certified)))
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
