//! Room passwords, stored as argon2id PHC strings.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

use crate::error::{RoomError, RoomResult};

pub const MAX_PASSWORD_CHARS: usize = 128;

pub fn hash(password: &str) -> RoomResult<String> {
    if password.is_empty() || password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(RoomError::invalid(
            "invalid_password",
            format!("room passwords are 1-{MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(RoomError::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(RoomError::internal)
}

pub fn verify(password: &str, phc: &str) -> bool {
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("open sesame").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("open sesame", &phc));
        assert!(!verify("open sesame ", &phc));
        assert!(!verify("open sesame", "not a hash"));
        assert!(hash("").is_err());
    }
}
