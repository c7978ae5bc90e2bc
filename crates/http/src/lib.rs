//! Every HTTP client in Confer is built here: reqwest on rustls with the *ring*
//! provider, the crypto the rest of the product already uses (kube's client, tonic,
//! the SFU's DTLS). reqwest's own `rustls` feature would bring a second stack
//! (aws-lc-rs, a C library built from source) for these clients alone.
//!
//! reqwest, built without a provider of its own, takes the process's default; the
//! first builder made here installs ring as that default.

use std::sync::Once;

/// A client builder whose TLS runs on ring.
pub fn builder() -> reqwest::ClientBuilder {
    static RING: Once = Once::new();
    RING.call_once(|| {
        // Another default installed first (by an embedding program) is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A client with reqwest's defaults, on ring.
///
/// # Errors
/// When the TLS backend cannot be set up (no usable root certificates, say).
pub fn client() -> reqwest::Result<reqwest::Client> {
    builder().build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_are_built_on_ring_as_the_process_default() {
        let built = super::client();
        assert!(built.is_ok(), "{built:?}");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        // A second client, and a builder, share the one installed provider.
        assert!(super::builder().build().is_ok());
    }
}
