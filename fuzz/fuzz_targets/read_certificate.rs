//! Fuzzes the sealing-certificate readers `seal_core::Certificate::from_pem` and
//! `Certificate::from_der`, which parse whatever file or controller response a user points `--cert`
//! at. Every input goes to both. The target checks that nothing panics, that input without a
//! `-----BEGIN ` marker gets the same answer from `from_pem` as from `from_der` (its documented
//! fallback), and that an accepted certificate is consistent: `from_der` kept exactly the input (it
//! refuses trailing bytes), its key is RSA of at least 2048 bits, its DER and its `to_pem` text read
//! back to the same certificate, and its dates go through `Debug`, `check_not_expired` and the
//! `Expired` message without panicking (x509 dates reach year 9999 and back to year 0).

#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use seal_core::keys::MIN_RSA_BITS;
use seal_core::{CertError, Certificate};

fn check_certificate(cert: &Certificate) {
    assert!(cert.public_key().bits() >= MIN_RSA_BITS);
    let from_der = Certificate::from_der(cert.der()).expect("a certificate's own DER reads back");
    assert_eq!(from_der.der(), cert.der());
    assert_eq!(from_der.fingerprint(), cert.fingerprint());
    let from_pem = Certificate::from_pem(cert.to_pem().as_bytes())
        .expect("a certificate's own PEM reads back");
    assert_eq!(from_pem.der(), cert.der());
    assert_eq!(from_pem.not_after(), cert.not_after());
    assert_eq!(from_pem.serial(), cert.serial());

    let _ = format!("{cert:?}");
    for now in [
        SystemTime::UNIX_EPOCH,
        // Year 8307: far future, but inside the range `time` converts a SystemTime to.
        SystemTime::UNIX_EPOCH + Duration::from_secs(200_000_000_000),
    ] {
        if let Err(error) = cert.check_not_expired(now) {
            assert!(matches!(error, CertError::Expired { .. }), "{error:?}");
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let der = Certificate::from_der(data);
    match &der {
        Ok(cert) => {
            assert_eq!(cert.der(), data, "from_der accepted trailing bytes");
            check_certificate(cert);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }

    let pem = Certificate::from_pem(data);
    match &pem {
        Ok(cert) => check_certificate(cert),
        Err(error) => {
            let _ = error.to_string();
        }
    }

    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        assert_eq!(
            pem.as_ref()
                .map(Certificate::der)
                .map_err(ToString::to_string),
            der.as_ref()
                .map(Certificate::der)
                .map_err(ToString::to_string),
            "from_pem without a PEM marker differs from from_der"
        );
    }
});
