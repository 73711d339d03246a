//! Certificate fingerprints: the key identity a SealedSecret records.
//!
//! A fingerprint is the SHA-256 of the certificate's DER SubjectPublicKeyInfo, written as 64 lowercase
//! hex digits. Hashing the public key rather than the whole certificate means a certificate renewed
//! for the same key keeps its fingerprint, which is what matters for "which private key opens this".

use std::fmt;
use std::str::FromStr;

use crate::backend;

/// SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

/// The text is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 fingerprint (expected 64 hex digits): {0:?}")]
pub struct FingerprintParseError(String);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(backend::sha256(spki_der))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for messages where the whole value would be noise.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Accepts 64 hex digits in either case, optionally prefixed `sha256:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FingerprintParseError(s.to_owned());
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lowercase_hex() {
        let text = "5E6264B79F61BD4504183F548076A5C5BD72AB07A00D1332FB85E7B4EC1F9DCC";
        let fp: Fingerprint = text.parse().unwrap();
        assert_eq!(fp.to_string(), text.to_lowercase());
        assert_eq!(fp.short(), "5e6264b79f61");
        assert_eq!(format!("sha256:{fp}").parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn refuses_wrong_length_and_non_hex() {
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
    }
}
