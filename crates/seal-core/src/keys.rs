//! RSA key pairs: generating them, reading them in every form they are kept in, and writing them out.
//!
//! Private keys arrive as PEM (PKCS#1 `RSA PRIVATE KEY`, as Bitnami's controller writes them, or PKCS#8
//! `PRIVATE KEY`) or inside Kubernetes `kubernetes.io/tls` Secrets (YAML or JSON, one document, many
//! documents, or a `v1` `List`, as `kubectl get secret -o yaml` prints a key backup). A parsed
//! [`PrivateKey`] keeps its key material only in zeroizing buffers, prints nothing of it through
//! `Debug`, and is parsed once: the first RSA operation on a fresh key pays for precomputation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use pkcs8::der::Encode;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::backend::{RsaPrivateKey, RsaPublicKey};
use crate::fingerprint::Fingerprint;

/// The rsaEncryption algorithm identifier (PKCS#1).
const RSA_ENCRYPTION_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Smallest RSA modulus seal will seal to or accept, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Sizes seal generates keys in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeySize {
    /// RSA-2048: fast; acceptable for test clusters.
    Rsa2048,
    /// RSA-3072.
    Rsa3072,
    /// RSA-4096: the default, as Bitnami's controller generates.
    #[default]
    Rsa4096,
}

impl KeySize {
    /// Modulus size in bits.
    pub fn bits(self) -> u32 {
        match self {
            KeySize::Rsa2048 => 2048,
            KeySize::Rsa3072 => 3072,
            KeySize::Rsa4096 => 4096,
        }
    }

    /// The size with this many bits, if seal generates it.
    pub fn from_bits(bits: u32) -> Option<Self> {
        [KeySize::Rsa2048, KeySize::Rsa3072, KeySize::Rsa4096]
            .into_iter()
            .find(|size| size.bits() == bits)
    }
}

/// Why a key could not be read or made. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input holds no PEM private key and no TLS Secret with a `tls.key`.
    #[error(
        "no private key found (expected PEM \"RSA PRIVATE KEY\" or \"PRIVATE KEY\", or a kubernetes.io/tls Secret)"
    )]
    NotFound,
    /// A PEM block could not be decoded.
    #[error("invalid PEM: {0}")]
    InvalidPem(String),
    /// The key is not an RSA key, or its encoding is damaged.
    #[error("not a valid RSA private key ({0})")]
    InvalidKey(&'static str),
    /// The input looked like YAML or JSON but is not.
    #[error("not valid YAML or JSON{0}")]
    InvalidDocument(String),
    /// A Secret's `tls.key` could not be read.
    #[error("Secret {name}: {reason}")]
    InvalidSecret {
        /// The Secret's name, or `<unnamed>`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The public key is not usable (not RSA, or too small).
    #[error("unsupported public key: {0}")]
    UnsupportedPublicKey(String),
    /// Key generation failed in the cryptographic library.
    #[error("key generation failed")]
    Generation,
}

/// An RSA public key that seals: parsed once, cheap to clone.
#[derive(Clone)]
pub struct PublicKey {
    inner: Arc<RsaPublicKey>,
    spki_der: Arc<[u8]>,
    fingerprint: Fingerprint,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    ///
    /// Errors: [`KeyError::UnsupportedPublicKey`] when it is not RSA or is smaller than
    /// [`MIN_RSA_BITS`].
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, KeyError> {
        let inner = RsaPublicKey::from_spki_der(spki_der).map_err(|_| {
            KeyError::UnsupportedPublicKey("not an RSA key of 2048 bits or more".into())
        })?;
        if inner.modulus_len() * 8 < MIN_RSA_BITS {
            return Err(KeyError::UnsupportedPublicKey(format!(
                "RSA-{} is too small (minimum RSA-{MIN_RSA_BITS})",
                inner.modulus_len() * 8
            )));
        }
        Ok(Self {
            inner: Arc::new(inner),
            spki_der: spki_der.into(),
            fingerprint: Fingerprint::of_spki_der(spki_der),
        })
    }

    /// SHA-256 of the SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.modulus_len() * 8
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub(crate) fn backend(&self) -> &RsaPublicKey {
        &self.inner
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// An RSA private key that unseals. Key material lives only in zeroizing buffers; `Debug` shows the
/// fingerprint and size, never the key.
pub struct PrivateKey {
    inner: RsaPrivateKey,
    pkcs8_der: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a new key pair.
    pub fn generate(size: KeySize) -> Result<Self, KeyError> {
        let der = RsaPrivateKey::generate_pkcs8(size.bits()).map_err(|_| KeyError::Generation)?;
        Self::from_pkcs8_der(&der)
    }

    /// Parses a DER PKCS#8 `PrivateKeyInfo` holding an RSA key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|_| KeyError::InvalidKey("damaged PKCS#8 encoding"))?;
        if info.algorithm.oid != RSA_ENCRYPTION_OID {
            return Err(KeyError::InvalidKey("PKCS#8 key is not RSA"));
        }
        let inner = RsaPrivateKey::from_pkcs8(der)
            .map_err(|_| KeyError::InvalidKey("rejected by the RSA implementation"))?;
        let public = PublicKey::from_spki_der(inner.public_spki_der())?;
        Ok(Self {
            inner,
            pkcs8_der: Zeroizing::new(der.to_vec()),
            public,
        })
    }

    /// Parses a DER PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let algorithm = pkcs8::AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION_OID,
            parameters: Some(pkcs8::der::asn1::AnyRef::NULL),
        };
        let pkcs8_der = Zeroizing::new(
            pkcs8::PrivateKeyInfo::new(algorithm, der)
                .to_der()
                .map_err(|_| KeyError::InvalidKey("damaged PKCS#1 encoding"))?,
        );
        Self::from_pkcs8_der(&pkcs8_der)
    }

    /// Parses the first private key in a PEM text (`RSA PRIVATE KEY` or `PRIVATE KEY`).
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, KeyError> {
        read_pem_keys(pem_text)?
            .into_iter()
            .next()
            .ok_or(KeyError::NotFound)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The fingerprint of the matching public key (and of any certificate for it).
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    /// The DER PKCS#8 encoding. Handle with care: this is the key.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// PEM PKCS#1 (`RSA PRIVATE KEY`), the form Bitnami's controller stores in `tls.key`.
    ///
    /// # Panics
    /// Never: the PKCS#8 encoding was parsed when the key was built.
    pub fn to_pkcs1_pem(&self) -> Zeroizing<String> {
        let info = pkcs8::PrivateKeyInfo::try_from(self.pkcs8_der.as_slice())
            .expect("invariant: pkcs8_der was parsed successfully when the key was built");
        let block = pem::Pem::new("RSA PRIVATE KEY", info.private_key.to_vec());
        let text = Zeroizing::new(pem::encode(&block));
        let mut contents = block.into_contents();
        zeroize::Zeroize::zeroize(&mut contents);
        text
    }

    pub(crate) fn backend(&self) -> &RsaPrivateKey {
        &self.inner
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.public.bits())
            .field("fingerprint", &self.public.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Reads every private key in `input`: PEM blocks, or Kubernetes TLS Secrets in YAML or JSON (one,
/// several documents, or a `v1` `List`).
///
/// Errors: [`KeyError::NotFound`] when there is none; the first damaged key or Secret otherwise.
/// Non-key PEM blocks (certificates) and Secrets without `tls.key` are skipped.
pub fn read_private_keys(input: &[u8]) -> Result<Vec<PrivateKey>, KeyError> {
    let keys = if looks_like_pem(input) {
        read_pem_keys(input)?
    } else {
        read_tls_secrets(input)?
    };
    if keys.is_empty() {
        return Err(KeyError::NotFound);
    }
    Ok(keys)
}

fn looks_like_pem(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
}

fn read_pem_keys(input: &[u8]) -> Result<Vec<PrivateKey>, KeyError> {
    let blocks =
        pem::parse_many(input).map_err(|e| KeyError::InvalidPem(pem_error_message(&e).into()))?;
    let mut keys = Vec::new();
    for block in blocks {
        let tag = block.tag().to_owned();
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|value| value.contains("ENCRYPTED"));
        let der = Zeroizing::new(block.into_contents());
        match tag.as_str() {
            "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
                if encrypted || tag.starts_with("ENCRYPTED") =>
            {
                return Err(KeyError::InvalidKey(
                    "encrypted PEM keys are not supported; decrypt it with openssl first",
                ));
            }
            "RSA PRIVATE KEY" => keys.push(PrivateKey::from_pkcs1_der(&der)?),
            "PRIVATE KEY" => keys.push(PrivateKey::from_pkcs8_der(&der)?),
            _ => {}
        }
    }
    Ok(keys)
}

/// `pem`'s message without the input it quotes: a damaged BEGIN or END line puts the key's base64
/// lines into the tags of `MismatchedTags`, and a blank line inside a key turns its lines into the
/// "header" of `InvalidHeader`.
pub(crate) fn pem_error_message(error: &pem::PemError) -> &'static str {
    // Fixed texts only: the pem crate's own messages quote the input, which may be a private key.
    match error {
        pem::PemError::MismatchedTags(..) => "mismatching BEGIN and END lines",
        pem::PemError::MalformedFraming => "malformed BEGIN or END line",
        pem::PemError::MissingBeginTag => "missing BEGIN line",
        pem::PemError::MissingEndTag => "missing END line",
        pem::PemError::MissingData => "nothing between BEGIN and END",
        pem::PemError::InvalidData(_) => "the content is not valid base64",
        pem::PemError::InvalidHeader(_) => "invalid header line (a blank line inside the block?)",
        pem::PemError::NotUtf8(_) => "not UTF-8 text",
    }
}

/// The parts of a Secret (or a `List` of them) that hold a TLS key.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsDocument {
    kind: Option<String>,
    #[serde(default)]
    metadata: DocumentMetadata,
    #[serde(default)]
    data: BTreeMap<String, Zeroizing<String>>,
    #[serde(default)]
    string_data: BTreeMap<String, Zeroizing<String>>,
    #[serde(default)]
    items: Vec<TlsDocument>,
}

#[derive(Deserialize, Default)]
struct DocumentMetadata {
    name: Option<String>,
}

const TLS_KEY: &str = "tls.key";

fn read_tls_secrets(input: &[u8]) -> Result<Vec<PrivateKey>, KeyError> {
    let mut keys = Vec::new();
    for document in serde_yaml::Deserializer::from_slice(input) {
        // The error text of serde could quote a value from the document, which may be key material:
        // report only where the problem is.
        let doc = match TlsDocument::deserialize(document) {
            Ok(doc) => doc,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                    .unwrap_or_default();
                return Err(KeyError::InvalidDocument(at));
            }
        };
        collect_tls_keys(&doc, &mut keys)?;
    }
    Ok(keys)
}

fn collect_tls_keys(doc: &TlsDocument, keys: &mut Vec<PrivateKey>) -> Result<(), KeyError> {
    match doc.kind.as_deref() {
        Some("List" | "SecretList") => {
            for item in &doc.items {
                collect_tls_keys(item, keys)?;
            }
        }
        Some("Secret") => {
            let name = doc
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| "<unnamed>".into());
            let invalid = |reason: &str| KeyError::InvalidSecret {
                name: name.clone(),
                reason: reason.into(),
            };
            let pem_text = if let Some(text) = doc.string_data.get(TLS_KEY) {
                Zeroizing::new(text.as_bytes().to_vec())
            } else if let Some(encoded) = doc.data.get(TLS_KEY) {
                crate::envelope::decode_base64(encoded)
                    .map(Zeroizing::new)
                    .map_err(|_| invalid("data.tls.key is not valid base64"))?
            } else {
                return Ok(());
            };
            let key = PrivateKey::from_pem(&pem_text).map_err(|e| invalid(&e.to_string()))?;
            keys.push(key);
        }
        _ => {}
    }
    Ok(())
}

/// How many RSA private-key decryptions this process has made, with any key: the cost a
/// controller counts (each is about 5 ms of CPU at RSA-4096), exported as a metric so that
/// "a restart does no RSA work" can be checked from outside.
pub fn private_key_decryptions() -> u64 {
    crate::backend::PRIVATE_KEY_DECRYPTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pkcs1_pem() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        assert_eq!(key.public_key().bits(), 2048);
        let pem_text = key.to_pkcs1_pem();
        assert!(pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let again = PrivateKey::from_pem(pem_text.as_bytes()).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
    }

    #[test]
    fn debug_shows_fingerprint_but_no_key_material() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.fingerprint().to_string()));
        let pem_text = key.to_pkcs1_pem();
        let body_line = pem_text.lines().nth(1).unwrap();
        assert!(!shown.contains(body_line));
    }

    #[test]
    fn tls_secret_and_list_are_read() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let encoded = crate::envelope::encode_base64(key.to_pkcs1_pem().as_bytes());
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: k1}}\ntype: kubernetes.io/tls\ndata:\n  tls.key: {encoded}\n  tls.crt: ''\n"
        );
        let keys = read_private_keys(secret.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint(), key.fingerprint());

        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{{"kind":"Secret","metadata":{{"name":"a"}},"data":{{"tls.key":"{encoded}"}}}},{{"kind":"Secret","metadata":{{"name":"b"}},"data":{{"tls.key":"{encoded}"}}}}]}}"#
        );
        assert_eq!(read_private_keys(list.as_bytes()).unwrap().len(), 2);

        let two_docs = format!("{secret}---\n{secret}");
        assert_eq!(read_private_keys(two_docs.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn damaged_tls_secret_names_the_secret_and_quotes_nothing() {
        let doc = "kind: Secret\nmetadata: {name: backup}\ndata:\n  tls.key: 'bm90IGEga2V5'\n";
        let err = read_private_keys(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("Secret backup:"), "{err}");
        assert!(!err.contains("bm90IGEga2V5"));
    }

    #[test]
    fn input_without_keys_is_not_found() {
        assert!(matches!(
            read_private_keys(b"kind: ConfigMap\n"),
            Err(KeyError::NotFound)
        ));
        assert!(matches!(read_private_keys(b""), Err(KeyError::NotFound)));
    }

    #[test]
    fn yaml_errors_report_a_location_and_not_the_content() {
        let err = read_private_keys(b"kind: Secret\ndata: [secret-material\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line"), "{text}");
        assert!(!text.contains("secret-material"), "{text}");
    }

    #[test]
    fn pem_errors_quote_no_key_material() {
        // fuzz/regressions/read_private_keys/mismatched-tags-min: found by the read_private_keys fuzz
        // target. A BEGIN line without its closing dashes made the whole body the BEGIN tag, and
        // pem's MismatchedTags message quoted it.
        let input = b"-----BEGIN RSAPRIfL0dCsYJ1j/q7-\nY-----\nM-\x01\x00-----END TKEY-----";
        let err = read_private_keys(input).unwrap_err().to_string();
        assert_eq!(err, "invalid PEM: mismatching BEGIN and END lines");

        // The realistic form: a BEGIN line that lost its dashes, with a certificate after the key,
        // made the BEGIN tag "RSA PRIVATE KEY\n<the whole key>".
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let pem_text = key.to_pkcs1_pem().replace("\r\n", "\n");
        let body_line = pem_text.lines().nth(1).unwrap();
        let damaged = pem_text.replace("BEGIN RSA PRIVATE KEY-----", "BEGIN RSA PRIVATE KEY")
            + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = read_private_keys(damaged.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!err.contains(body_line), "{err}");

        // A blank line inside the key: pem reads the lines before it as headers.
        let blank = pem_text.replacen(body_line, &format!("{body_line}\n"), 1);
        let err = read_private_keys(blank.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("invalid PEM: invalid header"), "{err}");
        assert!(!err.contains(body_line), "{err}");
    }

    #[test]
    fn encrypted_legacy_pem_keys_are_named_as_such() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = read_private_keys(text.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("encrypted PEM keys are not supported"),
            "{err}"
        );
    }

    #[test]
    fn key_sizes_map_to_bits() {
        assert_eq!(KeySize::default().bits(), 4096);
        assert_eq!(KeySize::from_bits(3072), Some(KeySize::Rsa3072));
        assert_eq!(KeySize::from_bits(1024), None);
    }
}
