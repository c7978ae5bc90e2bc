//! Secrets at rest: API and webhook secrets are needed in the clear to verify and sign
//! HMACs, so they are stored sealed with AES-256-GCM under the service's master key
//! (`CONFER_MASTER_KEY`), never in plain text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

#[derive(Clone)]
pub struct MasterKey(std::sync::Arc<LessSafeKey>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// From 32 bytes, base64 (standard alphabet, padding optional).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .or_else(|_| STANDARD_NO_PAD.decode(text.trim()))
            .map_err(|_| anyhow::anyhow!("the master key is not base64"))?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("the master key must be 32 bytes"))?;
        Ok(Self(std::sync::Arc::new(LessSafeKey::new(key))))
    }

    /// A random key, for `confer dev` and tests.
    pub fn random() -> Self {
        // 32 bytes is always a valid AES-256 key length.
        Self::from_bytes(&rand::random::<[u8; 32]>()).unwrap_or_else(|_| unreachable!())
    }

    pub fn seal(&self, plain: &str) -> String {
        self.seal_for("", plain)
    }

    pub fn open(&self, sealed: &str) -> Option<String> {
        self.open_for("", sealed)
    }

    /// Seals `plain` for one `purpose` (authenticated with it): it opens only with
    /// [`Self::open_for`] and the same purpose, so what is sealed for one use is never
    /// taken for another.
    pub fn seal_for(&self, purpose: &str, plain: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        // Sealing only fails for inputs over ~64 GiB.
        let _ = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(purpose.as_bytes()),
            &mut buf,
        );
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        STANDARD_NO_PAD.encode(out)
    }

    pub fn open_for(&self, purpose: &str, sealed: &str) -> Option<String> {
        let bytes = STANDARD_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let key = MasterKey::random();
        let sealed = key.seal("s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.open(&sealed).as_deref(), Some("s3cret"));
        assert_eq!(MasterKey::random().open(&sealed), None);
        assert_eq!(key.open("not base64!"), None);
        assert_eq!(key.open(""), None);
    }

    #[test]
    fn sealed_for_one_purpose_opens_for_that_purpose_only() {
        let key = MasterKey::random();
        let ticket = key.seal_for("rejoin", "acme/board\nada");
        assert_eq!(
            key.open_for("rejoin", &ticket).as_deref(),
            Some("acme/board\nada")
        );
        assert_eq!(key.open(&ticket), None);
        assert_eq!(key.open_for("other", &ticket), None);
        assert_eq!(key.open_for("rejoin", &key.seal("acme/board\nada")), None);
    }
}
