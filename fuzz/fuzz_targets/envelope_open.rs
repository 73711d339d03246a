//! Fuzzes the envelope opener, the code that handles attacker-supplied `encryptedData` values.
//!
//! Every input is first split with `Envelope::parse` as a binary blob (it must return `Ok` exactly
//! when the input holds its 2-byte length prefix, that many bytes and a 16-byte GCM tag, and
//! `TooShort` otherwise), then opened as a binary blob with `envelope::open`, and, when the input is
//! UTF-8, opened as text with `envelope::open_base64`. Both openers use one fixed RSA-2048 private key
//! (`testdata/vectors/keys/rsa2048-a.key.pem`, parsed once) and the fixed strict label
//! `ml-prod/ml-api-db`, so the vector blobs used as seeds really decrypt and the fuzzer explores the
//! RSA-OAEP and AES-GCM paths as well as the shape checks. The target checks that nothing panics and
//! that the result is `Ok` or one of the two documented error classes, and that the class is the one
//! the envelope's contract promises: `Malformed::NotBase64` exactly when the text is not base64,
//! `Malformed::TooShort` exactly when `Envelope::parse` refuses the blob (decided before any RSA
//! work), and otherwise `Ok` (only when the wrapped key is exactly the key's 256-byte modulus and the
//! plaintext is the payload minus its tag) or the single `DecryptionFailed`.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use seal_core::envelope::{self, Envelope, Malformed, OpenError};
use seal_core::{Label, PrivateKey, Scope, SecretBytes};

/// Length of the AES-GCM tag that ends every blob.
const TAG_LEN: usize = 16;
/// Modulus length in bytes of the fixed key.
const MODULUS_LEN: usize = 256;

static KEY: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::from_pem(include_bytes!(
        "../../testdata/vectors/keys/rsa2048-a.key.pem"
    ))
    .expect("the fixed test key parses")
});

static LABEL: LazyLock<Label> = LazyLock::new(|| {
    Scope::Strict
        .label(Some("ml-prod"), Some("ml-api-db"))
        .expect("a strict label with namespace and name")
});

/// What `Envelope::parse` must decide for `blob`: `Some(n)` (the wrapped-key length) when it fits.
fn expected_shape(blob: &[u8]) -> Option<usize> {
    let [hi, lo, ..] = *blob else { return None };
    let n = usize::from(u16::from_be_bytes([hi, lo]));
    (blob.len() >= 2 + n + TAG_LEN).then_some(n)
}

/// Checks `Envelope::parse` against the documented layout.
fn check_parse(blob: &[u8]) -> Option<usize> {
    let expected = expected_shape(blob);
    match (Envelope::parse(blob), expected) {
        (Ok(envelope), Some(n)) => assert_eq!(envelope.wrapped_key_len(), n),
        (Err(Malformed::TooShort), None) => {}
        (got, want) => panic!(
            "Envelope::parse gave {:?} for a {}-byte blob, expected wrapped key length {want:?}",
            got.map(|e| e.wrapped_key_len()),
            blob.len()
        ),
    }
    expected
}

/// Checks the result of opening `blob` (already base64-decoded) whose shape is `shape`.
fn check_open(result: &Result<SecretBytes, OpenError>, blob: &[u8], shape: Option<usize>) {
    match (result, shape) {
        (Err(OpenError::Malformed(Malformed::TooShort)), None) => {}
        (Err(OpenError::DecryptionFailed), Some(_)) => {}
        (Ok(plaintext), Some(n)) => {
            assert_eq!(
                n, MODULUS_LEN,
                "opened a blob whose wrapped key is not the modulus length"
            );
            assert_eq!(plaintext.len(), blob.len() - 2 - n - TAG_LEN);
        }
        (Err(e), shape) => panic!("open gave {e:?} for a blob of shape {shape:?}"),
        (Ok(_), None) => panic!("open succeeded on a blob Envelope::parse refuses"),
    }
}

fuzz_target!(|data: &[u8]| {
    let key: &PrivateKey = &KEY;

    // Binary: the bytes are the blob.
    let shape = check_parse(data);
    check_open(&envelope::open([key], &LABEL, data), data, shape);

    // Text: the bytes are the base64 value of `encryptedData`.
    if let Ok(text) = std::str::from_utf8(data) {
        let result = envelope::open_base64([key], &LABEL, text);
        match envelope::decode_base64(text) {
            Err(Malformed::NotBase64) => assert!(
                matches!(result, Err(OpenError::Malformed(Malformed::NotBase64))),
                "undecodable text gave {result:?}"
            ),
            Err(other) => panic!("decode_base64 gave {other:?}; only NotBase64 is documented"),
            Ok(blob) => {
                let shape = check_parse(&blob);
                check_open(&result, &blob, shape);
            }
        }
    }
});
