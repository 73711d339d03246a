//! Fuzzes `seal_core::keys::read_private_keys`, the reader for private-key backups: PEM (PKCS#1 and
//! PKCS#8 blocks, mixed with certificates) and Kubernetes `kubernetes.io/tls` Secrets in YAML or JSON
//! (one document, several, or a `v1` `List`). It checks that no input makes it panic; that every key
//! it returns is an RSA key of at least 2048 bits that survives its own `to_pkcs1_pem` round trip
//! with the same fingerprint; and that an error never echoes key material. `KeyError` promises that
//! its messages never contain key material, and the check for that is deliberately simple and cheap:
//! no 16-character run of base64 characters (`A-Z a-z 0-9 + / =`) in the error's `Display` text
//! may also occur in the input. A Secret's `metadata.name` is the one piece of input a message is
//! meant to show ("Secret backup: ..."), so for `KeyError::InvalidSecret` only the `reason` is checked,
//! not the name.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seal_core::keys::{self, KeyError, MIN_RSA_BITS, PrivateKey};
use seal_fuzz::echoed_run;

fn check_error(error: &KeyError, input: &[u8]) {
    let checked = match error {
        KeyError::InvalidSecret { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    if let Some(run) = echoed_run(&checked, input) {
        panic!("error message echoes input {run:?}: {error}");
    }
}

fn check_key(key: &PrivateKey) {
    assert!(key.public_key().bits() >= MIN_RSA_BITS);
    let pem_text = key.to_pkcs1_pem();
    let again =
        PrivateKey::from_pem(pem_text.as_bytes()).expect("a key's own PKCS#1 PEM reads back");
    assert_eq!(again.fingerprint(), key.fingerprint());
    assert_eq!(again.pkcs8_der(), key.pkcs8_der());
}

fuzz_target!(|data: &[u8]| {
    match keys::read_private_keys(data) {
        Ok(found) => {
            assert!(!found.is_empty(), "Ok with no keys instead of NotFound");
            found.iter().for_each(check_key);
        }
        Err(error) => check_error(&error, data),
    }
});
