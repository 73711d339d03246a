//! The envelope: one value sealed with a one-time AES key wrapped to an RSA public key.
//!
//! Byte layout (Bitnami's hybrid format, kept bit for bit so both controllers open each other's
//! values):
//!
//! ```text
//! u16 big-endian n | RSA-OAEP-SHA256(session key, label = scope label) : n bytes | AES-256-GCM(value) | tag : 16 bytes
//! ```
//!
//! with an all-zero GCM nonce (each session key is used once) and no associated data. In manifests the
//! blob is standard base64 with padding.
//!
//! Opening fails in exactly two ways. [`OpenError::Malformed`] is decided from the shape of the input
//! alone (not base64, or too short for its own length prefix) before any RSA work. Everything after
//! that, whichever key or step fails, is [`OpenError::DecryptionFailed`]: one error that says nothing
//! about why, so a caller who can submit ciphertexts learns nothing about padding or tags.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::backend::{self, GCM_TAG_LEN};
use crate::keys::{PrivateKey, PublicKey};
use crate::scope::Label;
use crate::secret::SecretBytes;

/// Why a blob was refused before any cryptography was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The text is not standard base64.
    #[error("not valid base64")]
    NotBase64,
    /// Fewer bytes than the length prefix and the GCM tag need.
    #[error("too short for its length prefix")]
    TooShort,
}

/// Why a value could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The blob's shape is wrong; no key was tried.
    #[error("malformed sealed value: {0}")]
    Malformed(#[from] Malformed),
    /// No key opened it under this label. Deliberately says nothing more.
    #[error("decryption failed")]
    DecryptionFailed,
}

/// Sealing failed in the cryptographic library (no randomness, or a key it refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealing failed")]
pub struct SealError;

/// A blob split into its parts, checked for shape only.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    wrapped_key: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits a binary blob. Errors: [`Malformed::TooShort`].
    pub fn parse(blob: &'a [u8]) -> Result<Self, Malformed> {
        let (prefix, rest) = blob.split_first_chunk::<2>().ok_or(Malformed::TooShort)?;
        let n = usize::from(u16::from_be_bytes(*prefix));
        if rest.len() < n + GCM_TAG_LEN {
            return Err(Malformed::TooShort);
        }
        let (wrapped_key, payload) = rest.split_at(n);
        Ok(Self {
            wrapped_key,
            payload,
        })
    }

    /// Length of the RSA part: the modulus length of the key it was sealed to.
    pub fn wrapped_key_len(&self) -> usize {
        self.wrapped_key.len()
    }

    /// Tries to open with one key under `label`. Errors: [`OpenError::DecryptionFailed`] only.
    pub fn open_with(&self, key: &PrivateKey, label: &Label) -> Result<SecretBytes, OpenError> {
        let backend = key.backend();
        if backend.modulus_len() != self.wrapped_key.len() {
            return Err(OpenError::DecryptionFailed);
        }
        let session_key = backend
            .unwrap_session_key(label.as_bytes(), self.wrapped_key)
            .map_err(|_| OpenError::DecryptionFailed)?;
        let plaintext = backend::aes_gcm_open(&session_key, self.payload)
            .map_err(|_| OpenError::DecryptionFailed)?;
        Ok(SecretBytes::from(plaintext))
    }
}

/// Seals `plaintext` to `key` under `label`, returning the binary blob.
pub fn seal(key: &PublicKey, label: &Label, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let rsa = key.backend();
    let session_key = backend::random_session_key().map_err(|_| SealError)?;
    let wrapped = rsa
        .wrap_session_key(label.as_bytes(), &session_key)
        .map_err(|_| SealError)?;
    let n = u16::try_from(wrapped.len()).map_err(|_| SealError)?;
    let mut blob = Vec::with_capacity(2 + wrapped.len() + plaintext.len() + GCM_TAG_LEN);
    blob.extend_from_slice(&n.to_be_bytes());
    blob.extend_from_slice(&wrapped);
    backend::aes_gcm_seal(&session_key, plaintext, &mut blob).map_err(|_| SealError)?;
    Ok(blob)
}

/// Seals and encodes as standard base64, the form stored in `encryptedData`.
pub fn seal_base64(key: &PublicKey, label: &Label, plaintext: &[u8]) -> Result<String, SealError> {
    seal(key, label, plaintext).map(|blob| STANDARD.encode(blob))
}

/// Opens a binary blob with the first of `keys` that works.
///
/// Guarantees: shape errors come back as [`OpenError::Malformed`] before any key is tried; any other
/// failure, with any number of keys, is the single [`OpenError::DecryptionFailed`].
pub fn open<'k>(
    keys: impl IntoIterator<Item = &'k PrivateKey>,
    label: &Label,
    blob: &[u8],
) -> Result<SecretBytes, OpenError> {
    let envelope = Envelope::parse(blob)?;
    keys.into_iter()
        .find_map(|key| envelope.open_with(key, label).ok())
        .ok_or(OpenError::DecryptionFailed)
}

/// Decodes base64 and opens, as [`open`].
pub fn open_base64<'k>(
    keys: impl IntoIterator<Item = &'k PrivateKey>,
    label: &Label,
    text: &str,
) -> Result<SecretBytes, OpenError> {
    let blob = decode_base64(text)?;
    open(keys, label, &blob)
}

/// Decodes standard base64 (with padding), skipping CR and LF as Go's decoder does so that wrapped
/// values read back. Errors: [`Malformed::NotBase64`].
pub fn decode_base64(text: &str) -> Result<Vec<u8>, Malformed> {
    if text.contains(['\r', '\n']) {
        let joined: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        STANDARD.decode(joined).map_err(|_| Malformed::NotBase64)
    } else {
        STANDARD.decode(text).map_err(|_| Malformed::NotBase64)
    }
}

/// Encodes as standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySize;
    use crate::scope::Scope;

    fn label() -> Label {
        Scope::Strict.label(Some("ns"), Some("name")).unwrap()
    }

    #[test]
    fn sealed_length_is_prefix_plus_modulus_plus_value_plus_tag() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let blob = seal(key.public_key(), &label(), b"12345").unwrap();
        assert_eq!(blob.len(), 2 + 256 + 5 + 16);
        assert_eq!(&blob[..2], &[0x01, 0x00]);
        assert!(
            seal_base64(key.public_key(), &label(), b"x")
                .unwrap()
                .starts_with("AQ")
        );
    }

    #[test]
    fn opens_with_the_right_key_among_several() {
        let wrong = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let right = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let blob = seal(right.public_key(), &label(), b"value").unwrap();
        let opened = open([&wrong, &right], &label(), &blob).unwrap();
        assert_eq!(opened.expose(), b"value");
        assert_eq!(
            open([&wrong], &label(), &blob),
            Err(OpenError::DecryptionFailed)
        );
        assert_eq!(open([], &label(), &blob), Err(OpenError::DecryptionFailed));
    }

    #[test]
    fn shape_errors_are_malformed() {
        assert_eq!(Envelope::parse(&[]).unwrap_err(), Malformed::TooShort);
        assert_eq!(Envelope::parse(&[0]).unwrap_err(), Malformed::TooShort);
        assert_eq!(
            Envelope::parse(&[0, 4, 1, 2, 3]).unwrap_err(),
            Malformed::TooShort
        );
        assert!(
            Envelope::parse(&[0, 0].iter().chain(&[0u8; 16]).copied().collect::<Vec<_>>()).is_ok()
        );
        assert_eq!(decode_base64("@@@").unwrap_err(), Malformed::NotBase64);
    }

    #[test]
    fn base64_with_line_breaks_decodes() {
        assert_eq!(decode_base64("aGVs\r\nbG8=\n").unwrap(), b"hello");
    }
}
