//! API tokens: generated from the OS's random source, shown once, stored only as a hash.
//!
//! Tokens carry 256 random bits, so a plain SHA-256 is the right hash: a slow password hash
//! protects guessable secrets, and these are not guessable. Looking a token up by its hash
//! also means no comparison ever runs on the secret itself.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Every tenant token starts with this, so a leaked one is recognisable (secret scanners,
/// logs) and a token pasted in the wrong place is easy to spot.
pub const TENANT_TOKEN_PREFIX: &str = "msbt_";

/// A fresh tenant token: the prefix and 64 hex digits.
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).context("reading the OS's random source")?;
    Ok(format!("{TENANT_TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// A fresh broker password for a tenant's AMQP user: 192 random bits as hex.
pub fn broker_password() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).context("reading the OS's random source")?;
    Ok(hex::encode(bytes))
}

/// The hash a token is stored and looked up under.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares a presented secret with the expected one in time independent of where they
/// differ, by comparing their hashes (equal-length, and unrelated to the secret's prefix).
pub fn matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TENANT_TOKEN_PREFIX));
        assert_eq!(a.len(), TENANT_TOKEN_PREFIX.len() + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[TENANT_TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn matches_only_the_same_secret() {
        assert!(matches("operator-secret", "operator-secret"));
        assert!(!matches("operator-secreT", "operator-secret"));
        assert!(!matches("", "operator-secret"));
    }
}
