//! Every case of the shared test vectors (made by two independent implementations of the Bitnami
//! format) through the library: `ok` cases open to the recorded plaintext with the PKCS#1 and the
//! PKCS#8 form of the key, `decrypt_failed` cases fail with the one uniform error, `malformed` cases
//! are refused before any key is tried.

use std::collections::BTreeMap;
use std::path::PathBuf;

use seal_core::envelope::{self, Envelope};
use seal_core::{Certificate, Malformed, OpenError, PrivateKey, Scope};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    fingerprints_sha256_spki: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    key: String,
    scope: String,
    namespace: String,
    secret_name: String,
    sealed: String,
    expect: String,
    plaintext_b64: Option<String>,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

fn load() -> Vectors {
    let text = std::fs::read_to_string(vectors_dir().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn key(id: &str, form: &str) -> PrivateKey {
    let path = vectors_dir().join(format!("keys/{id}.{form}.pem"));
    PrivateKey::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn cert(id: &str) -> Certificate {
    let path = vectors_dir().join(format!("keys/{id}.crt.pem"));
    Certificate::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_vector_case_has_the_expected_outcome_with_pkcs1_and_pkcs8_keys() {
    let vectors = load();
    assert!(vectors.cases.len() >= 18, "vectors went missing");
    for form in ["key", "pkcs8"] {
        for case in &vectors.cases {
            let key = key(&case.key, form);
            let scope: Scope = case.scope.parse().unwrap();
            let label = scope
                .label(Some(&case.namespace), Some(&case.secret_name))
                .unwrap();
            let result = envelope::open_base64([&key], &label, &case.sealed);
            match case.expect.as_str() {
                "ok" => {
                    let want =
                        envelope::decode_base64(case.plaintext_b64.as_deref().unwrap()).unwrap();
                    let got = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                    assert_eq!(got.expose(), want.as_slice(), "{}", case.name);
                }
                "decrypt_failed" => {
                    assert_eq!(
                        result.unwrap_err(),
                        OpenError::DecryptionFailed,
                        "{}",
                        case.name
                    );
                }
                "malformed" => {
                    assert!(
                        matches!(result.unwrap_err(), OpenError::Malformed(_)),
                        "{}",
                        case.name
                    );
                }
                other => panic!("{}: unknown expectation {other}", case.name),
            }
        }
    }
}

#[test]
fn malformed_cases_are_refused_from_their_shape_alone() {
    // No key is passed: a malformed blob must be refused before any key could be tried.
    let vectors = load();
    let label = Scope::ClusterWide.label(None, None).unwrap();
    for case in vectors.cases.iter().filter(|c| c.expect == "malformed") {
        let err = envelope::open_base64([], &label, &case.sealed).unwrap_err();
        assert!(matches!(err, OpenError::Malformed(_)), "{}", case.name);
    }
    let not_b64 = vectors
        .cases
        .iter()
        .find(|c| c.name == "fail_not_base64")
        .unwrap();
    assert_eq!(
        envelope::decode_base64(&not_b64.sealed).unwrap_err(),
        Malformed::NotBase64
    );
}

#[test]
fn a_case_that_fails_with_one_key_opens_when_the_right_key_is_also_offered() {
    let vectors = load();
    let case = vectors
        .cases
        .iter()
        .find(|c| c.name == "cluster_wide_ok")
        .unwrap();
    let label = Scope::ClusterWide.label(None, None).unwrap();
    let keys = [
        key("rsa2048-other", "key"),
        key("rsa4096-a", "key"),
        key("rsa2048-a", "key"),
    ];
    assert!(envelope::open_base64(&keys, &label, &case.sealed).is_ok());
    assert_eq!(
        envelope::open_base64(&keys[..2], &label, &case.sealed).unwrap_err(),
        OpenError::DecryptionFailed
    );
}

#[test]
fn fingerprints_match_the_vectors_from_certificate_and_from_private_key() {
    let vectors = load();
    for (id, want) in &vectors.fingerprints_sha256_spki {
        assert_eq!(
            &cert(id).fingerprint().to_string(),
            want,
            "{id} certificate"
        );
        assert_eq!(
            &key(id, "key").fingerprint().to_string(),
            want,
            "{id} PKCS#1"
        );
        assert_eq!(
            &key(id, "pkcs8").fingerprint().to_string(),
            want,
            "{id} PKCS#8"
        );
    }
}

#[test]
fn vector_certificates_are_rsa_and_dated_as_documented() {
    let cert = cert("rsa4096-a");
    assert_eq!(cert.public_key().bits(), 4096);
    assert_eq!(cert.not_before().year(), 2026);
    assert_eq!(cert.not_after().year(), 2036);
    assert_eq!(self::cert("rsa2048-a").public_key().bits(), 2048);
}

#[test]
fn values_sealed_here_open_with_the_vector_keys() {
    let cert = cert("rsa4096-a");
    let key = key("rsa4096-a", "key");
    let label = Scope::Strict
        .label(Some("ml-prod"), Some("ml-api-db"))
        .unwrap();
    let sealed = envelope::seal_base64(cert.public_key(), &label, b"postgres://ml@db/ml").unwrap();
    assert!(sealed.starts_with("Ag"));
    let blob = envelope::decode_base64(&sealed).unwrap();
    assert_eq!(Envelope::parse(&blob).unwrap().wrapped_key_len(), 512);
    let opened = envelope::open_base64([&key], &label, &sealed).unwrap();
    assert_eq!(opened.expose(), b"postgres://ml@db/ml");
}
