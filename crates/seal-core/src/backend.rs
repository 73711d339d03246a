//! The one place where seal-core touches a cryptographic library.
//!
//! Every primitive the sealing format needs (RSA-OAEP-SHA256 wrap and unwrap, AES-256-GCM, SHA-256,
//! randomness, RSA key generation) goes through this module, and this module uses aws-lc-rs only.
//! The choice matters for one operation above all: the RSA private-key operation must be constant
//! time. The `rsa` crate is exposed to the Marvin timing attack (RUSTSEC-2023-0071, open against every
//! stable release), so it must not decrypt; AWS-LC's RSA is blinded and constant time. Swapping the
//! implementation means changing this file and nothing else, and the vector tests prove the swap.
//!
//! Nothing here knows about envelopes, scopes or certificates: callers hand in bytes and get bytes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use zeroize::Zeroizing;

/// Length of the AES-256 session key in bytes.
pub(crate) const SESSION_KEY_LEN: usize = 32;
/// Length of the AES-GCM authentication tag in bytes.
pub(crate) const GCM_TAG_LEN: usize = 16;

/// The primitive failed. Deliberately carries no detail: callers turn it into their own uniform error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

/// A parsed RSA private key, ready to unwrap session keys.
///
/// Parsing is the expensive part (AWS-LC precomputes blinding values on first use), so keys are
/// parsed once and kept.
pub(crate) struct RsaPrivateKey {
    oaep: OaepPrivateDecryptingKey,
    modulus_len: usize,
    public_spki_der: Vec<u8>,
}

impl RsaPrivateKey {
    /// Parses a PKCS#8 `PrivateKeyInfo` holding an RSA key.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, Failed> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| Failed)?;
        let modulus_len = key.key_size_bytes();
        let public: PublicKeyX509Der<'static> = key.public_key().as_der().map_err(|_| Failed)?;
        let public_spki_der = public.as_ref().to_vec();
        let oaep = OaepPrivateDecryptingKey::new(key).map_err(|_| Failed)?;
        Ok(Self {
            oaep,
            modulus_len,
            public_spki_der,
        })
    }

    /// Generates a fresh key pair and returns its PKCS#8 DER.
    pub(crate) fn generate_pkcs8(bits: u32) -> Result<Zeroizing<Vec<u8>>, Failed> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(Failed),
        };
        let key = PrivateDecryptingKey::generate(size).map_err(|_| Failed)?;
        let der: Pkcs8V1Der<'static> = key.as_der().map_err(|_| Failed)?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The DER SubjectPublicKeyInfo of the matching public key.
    pub(crate) fn public_spki_der(&self) -> &[u8] {
        &self.public_spki_der
    }

    /// Modulus length in bytes: the exact length of every ciphertext this key can open.
    pub(crate) fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// RSA-OAEP (SHA-256 hash, SHA-256 MGF1) decryption of a wrapped session key under `label`.
    ///
    /// Constant time in the private key; any failure (wrong key, wrong label, bad padding, wrong
    /// length of the recovered key) is the same `Failed`.
    pub(crate) fn unwrap_session_key(
        &self,
        label: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; SESSION_KEY_LEN]>, Failed> {
        let mut out = Zeroizing::new(vec![0u8; self.modulus_len]);
        PRIVATE_KEY_DECRYPTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let plain = self
            .oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, Some(label))
            .map_err(|_| Failed)?;
        let mut key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        if plain.len() != SESSION_KEY_LEN {
            return Err(Failed);
        }
        key.copy_from_slice(plain);
        Ok(key)
    }
}

/// RSA private-key decryptions this process made ([`crate::keys::private_key_decryptions`]).
pub(crate) static PRIVATE_KEY_DECRYPTIONS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// An RSA key pair that signs with PKCS#1 v1.5 SHA-256: only used to self-sign certificates.
pub(crate) struct RsaSigner {
    key_pair: RsaKeyPair,
}

impl RsaSigner {
    /// Parses a PKCS#8 `PrivateKeyInfo` holding an RSA key.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, Failed> {
        let key_pair = RsaKeyPair::from_pkcs8(der).map_err(|_| Failed)?;
        Ok(Self { key_pair })
    }

    /// The public key as DER PKCS#1 `RSAPublicKey`.
    pub(crate) fn public_key_pkcs1_der(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub(crate) fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, Failed> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| Failed)?;
        Ok(signature)
    }
}

/// A parsed RSA public key, ready to wrap session keys.
pub(crate) struct RsaPublicKey {
    oaep: OaepPublicEncryptingKey,
}

impl RsaPublicKey {
    /// Parses a DER SubjectPublicKeyInfo holding an RSA key.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, Failed> {
        let key = PublicEncryptingKey::from_der(der).map_err(|_| Failed)?;
        let oaep = OaepPublicEncryptingKey::new(key).map_err(|_| Failed)?;
        Ok(Self { oaep })
    }

    /// Modulus length in bytes.
    pub(crate) fn modulus_len(&self) -> usize {
        self.oaep.ciphertext_size()
    }

    /// RSA-OAEP (SHA-256 hash, SHA-256 MGF1) encryption of a session key under `label`.
    /// The output is exactly `modulus_len()` bytes.
    pub(crate) fn wrap_session_key(
        &self,
        label: &[u8],
        session_key: &[u8; SESSION_KEY_LEN],
    ) -> Result<Vec<u8>, Failed> {
        let mut out = vec![0u8; self.oaep.ciphertext_size()];
        let written = self
            .oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, session_key, &mut out, Some(label))
            .map_err(|_| Failed)?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

/// Draws a fresh random AES-256 session key from the operating system's generator.
pub(crate) fn random_session_key() -> Result<Zeroizing<[u8; SESSION_KEY_LEN]>, Failed> {
    let mut key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    SystemRandom::new().fill(&mut *key).map_err(|_| Failed)?;
    Ok(key)
}

/// Fills `out` with random bytes (serial numbers and the like).
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), Failed> {
    SystemRandom::new().fill(out).map_err(|_| Failed)
}

/// AES-256-GCM under a one-time key: all-zero 96-bit nonce, no associated data. Appends
/// `ciphertext || tag` to `out`.
///
/// The zero nonce is safe only because every session key encrypts exactly one message; it is what
/// the Bitnami format specifies. The plaintext is copied into `out` and encrypted there, after
/// reserving room so that no reallocation leaves a plaintext copy behind in freed memory.
pub(crate) fn aes_gcm_seal(
    key: &[u8; SESSION_KEY_LEN],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Failed> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| Failed)?);
    out.reserve(plaintext.len() + GCM_TAG_LEN);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let sealed = key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key([0u8; 12]),
        Aad::empty(),
        &mut out[start..],
    );
    if let Ok(tag) = sealed {
        out.extend_from_slice(tag.as_ref());
        Ok(())
    } else {
        zeroize::Zeroize::zeroize(&mut out[start..]);
        out.truncate(start);
        Err(Failed)
    }
}

/// Opens an AES-256-GCM `ciphertext || tag` under a one-time key (all-zero nonce, no associated data).
pub(crate) fn aes_gcm_open(
    key: &[u8; SESSION_KEY_LEN],
    ciphertext_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failed> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| Failed)?);
    let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| Failed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_round_trips_and_rejects_a_flipped_tag() {
        let key = [7u8; SESSION_KEY_LEN];
        let mut sealed = Vec::new();
        aes_gcm_seal(&key, b"hello", &mut sealed).unwrap();
        assert_eq!(sealed.len(), 5 + GCM_TAG_LEN);
        assert_eq!(&*aes_gcm_open(&key, &sealed).unwrap(), b"hello");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(aes_gcm_open(&key, &sealed), Err(Failed));
    }

    #[test]
    fn aes_gcm_seal_appends_after_existing_prefix() {
        let key = [1u8; SESSION_KEY_LEN];
        let mut out = vec![0xAA, 0xBB];
        aes_gcm_seal(&key, b"xyz", &mut out).unwrap();
        assert_eq!(&out[..2], &[0xAA, 0xBB]);
        assert_eq!(&*aes_gcm_open(&key, &out[2..]).unwrap(), b"xyz");
    }

    #[test]
    fn generation_refuses_unsupported_sizes() {
        assert!(RsaPrivateKey::generate_pkcs8(1024).is_err());
        assert!(RsaPrivateKey::generate_pkcs8(5000).is_err());
    }
}
