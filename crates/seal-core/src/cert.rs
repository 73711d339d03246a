//! Sealing certificates: the public half a developer seals with.
//!
//! A controller publishes a self-signed X.509 certificate for each of its keys; `seal` reads the first
//! certificate of a PEM file (or a DER file), checks that it carries an RSA key of at least 2048 bits,
//! and refuses it once it has expired. Nothing about the certificate is trusted beyond its public key:
//! the trust decision is "this file came from the cluster I mean", which the fingerprint makes
//! checkable. Certificates made here mirror Bitnami's: empty subject, random serial, 10 years by
//! default.

use std::fmt;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::backend;
use crate::fingerprint::Fingerprint;
use crate::keys::{KeyError, PrivateKey, PublicKey};

/// Default validity of a generated certificate: ten years.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// How far clocks may disagree: a certificate that starts at most this long after now is
/// accepted as valid now.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Why a certificate could not be read, used or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No `CERTIFICATE` PEM block and not DER either.
    #[error("no certificate found (expected PEM \"CERTIFICATE\")")]
    NotFound,
    /// The certificate's encoding is damaged.
    #[error("invalid certificate: {0}")]
    Invalid(String),
    /// Its key is not RSA, or is too small.
    #[error("certificate key: {0}")]
    Key(#[from] KeyError),
    /// It has expired.
    #[error("certificate expired on {}", format_date(*.not_after))]
    Expired {
        /// When it stopped being valid.
        not_after: OffsetDateTime,
    },
    /// It starts later than now plus [`CLOCK_SKEW`].
    #[error("certificate is not valid before {}", format_date(*.not_before))]
    NotYetValid {
        /// When it starts being valid.
        not_before: OffsetDateTime,
    },
    /// Building a new certificate failed.
    #[error("certificate generation failed: {0}")]
    Generation(String),
}

/// A parsed sealing certificate.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    public_key: PublicKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: String,
}

impl Certificate {
    /// Reads the first certificate of a PEM text; input with no PEM marker is tried as DER.
    pub fn from_pem(input: &[u8]) -> Result<Self, CertError> {
        if !input.windows(11).any(|w| w == b"-----BEGIN ") {
            return Self::from_der(input);
        }
        // A certificate file may be a key + certificate bundle: never echo pem's messages.
        let blocks = pem::parse_many(input)
            .map_err(|e| CertError::Invalid(crate::keys::pem_error_message(&e).into()))?;
        let block = blocks
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or(CertError::NotFound)?;
        Self::from_der(block.contents())
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
            x509_parser::nom::Err::Incomplete(_) => CertError::Invalid("truncated".into()),
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
                CertError::Invalid(e.to_string())
            }
        })?;
        if !rest.is_empty() {
            return Err(CertError::Invalid(
                "trailing bytes after the certificate".into(),
            ));
        }
        let spki = cert.public_key();
        let algorithm = spki.algorithm.algorithm.to_id_string();
        if algorithm != "1.2.840.113549.1.1.1" {
            return Err(KeyError::UnsupportedPublicKey(format!(
                "not RSA (algorithm {algorithm}); seal certificates carry RSA keys"
            ))
            .into());
        }
        if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed()
            && rsa.key_size() < crate::keys::MIN_RSA_BITS
        {
            return Err(KeyError::UnsupportedPublicKey(format!(
                "RSA-{} is too small (minimum RSA-{})",
                rsa.key_size(),
                crate::keys::MIN_RSA_BITS
            ))
            .into());
        }
        let public_key = PublicKey::from_spki_der(spki.raw)?;
        Ok(Self {
            der: der[..der.len() - rest.len()].to_vec(),
            public_key,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            serial: cert.raw_serial_as_string(),
        })
    }

    /// Makes a self-signed certificate for `key`, valid from `not_before` for `validity`, with an
    /// empty subject and a random serial number (as Bitnami's controller does).
    pub fn self_signed(
        key: &PrivateKey,
        not_before: SystemTime,
        validity: Duration,
    ) -> Result<Self, CertError> {
        let generation = |e: &dyn fmt::Display| CertError::Generation(e.to_string());
        let signer = Signer(
            backend::RsaSigner::from_pkcs8(key.pkcs8_der())
                .map_err(|_| generation(&"the key cannot sign"))?,
        );
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_before + validity);
        let mut serial = [0u8; 16];
        backend::random_bytes(&mut serial).map_err(|_| generation(&"no randomness"))?;
        serial[0] &= 0x7f; // keep it a positive INTEGER
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::DataEncipherment,
        ];
        let cert = params.self_signed(&signer).map_err(|e| generation(&e))?;
        Self::from_der(cert.der())
    }

    /// Whether the certificate may be sealed to (or trusted as a key) at `now`: fails with
    /// [`CertError::Expired`] past its end, and with [`CertError::NotYetValid`] when it starts
    /// more than [`CLOCK_SKEW`] after `now` (a certificate dated ahead is one nobody should have
    /// yet: a planted key would be "newest").
    pub fn check_valid_at(&self, now: SystemTime) -> Result<(), CertError> {
        if OffsetDateTime::from(now) > self.not_after {
            return Err(CertError::Expired {
                not_after: self.not_after,
            });
        }
        if SystemTime::from(self.not_before) > now + CLOCK_SKEW {
            return Err(CertError::NotYetValid {
                not_before: self.not_before,
            });
        }
        Ok(())
    }

    /// The public key to seal with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// SHA-256 of the SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public_key.fingerprint()
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The serial number as colon-separated hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint())
            .field("bits", &self.public_key.bits())
            .field("not_after", &format_date(self.not_after))
            .finish_non_exhaustive()
    }
}

/// Lets rcgen build the certificate while the signature is made by [`backend`], so the private key
/// never leaves seal's zeroizing buffers.
struct Signer(backend::RsaSigner);

impl rcgen::PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_pkcs1_der()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .sign_sha256(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A date as `2036-10-29T12:00:00Z`.
pub fn format_date(when: OffsetDateTime) -> String {
    let when = when.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySize;

    #[test]
    fn self_signed_certificate_carries_the_key_and_the_dates() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cert = Certificate::self_signed(&key, start, DEFAULT_VALIDITY).unwrap();
        assert_eq!(cert.fingerprint(), key.fingerprint());
        assert_eq!(cert.public_key().bits(), 2048);
        assert_eq!(cert.not_before(), OffsetDateTime::from(start));
        assert_eq!(
            cert.not_after(),
            OffsetDateTime::from(start + DEFAULT_VALIDITY)
        );
        let again = Certificate::from_pem(cert.to_pem().as_bytes()).unwrap();
        assert_eq!(again.der(), cert.der());
    }

    #[test]
    fn expired_certificate_is_refused_with_its_date() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cert = Certificate::self_signed(&key, start, Duration::from_secs(86_400)).unwrap();
        cert.check_valid_at(start).unwrap();
        let err = cert
            .check_valid_at(start + Duration::from_secs(2 * 86_400))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate expired on 2023-11-15T22:13:20Z"
        );
    }

    #[test]
    fn a_certificate_from_the_future_is_refused_beyond_the_clock_skew() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let soon = Certificate::self_signed(&key, now + CLOCK_SKEW, DEFAULT_VALIDITY).unwrap();
        soon.check_valid_at(now).unwrap();
        let later = now + CLOCK_SKEW + Duration::from_secs(60);
        let ahead = Certificate::self_signed(&key, later, DEFAULT_VALIDITY).unwrap();
        let err = ahead.check_valid_at(now).unwrap_err();
        assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("certificate is not valid before")
        );
        ahead.check_valid_at(later).unwrap();
    }

    #[test]
    fn damaged_bundle_errors_quote_no_key_material() {
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let cert = Certificate::self_signed(&key, SystemTime::now(), DEFAULT_VALIDITY).unwrap();
        let key_pem = key.to_pkcs1_pem();
        // The key's BEGIN line lost its closing dashes; the certificate follows.
        let bundle = format!(
            "{}{}",
            key_pem.replacen("KEY-----", "KEY", 1),
            cert.to_pem()
        );
        let err = Certificate::from_pem(bundle.as_bytes())
            .unwrap_err()
            .to_string();
        let body_line = key_pem.lines().nth(3).unwrap();
        assert!(!err.contains(body_line), "{err}");
    }

    #[test]
    fn garbage_and_other_pem_blocks_are_refused() {
        assert!(matches!(
            Certificate::from_pem(b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"),
            Err(CertError::NotFound)
        ));
        assert!(matches!(
            Certificate::from_pem(b"not a cert"),
            Err(CertError::Invalid(_))
        ));
    }
}
