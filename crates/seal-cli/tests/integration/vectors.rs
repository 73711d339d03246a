//! Every case of the shared vectors through `seal unseal`: each sealed value is put into a Bitnami
//! SealedSecret with the case's scope, name and namespace, and opened with the case's key file.

use serde::Deserialize;

use crate::harness::{Scratch, bitnami_manifest, parse, repo, seal, secret_data, vector};

#[derive(Deserialize)]
struct Vectors {
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

#[test]
fn every_vector_case_through_seal_unseal() {
    use base64::Engine as _;
    let vectors: Vectors = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/vectors/vectors.json")).unwrap(),
    )
    .unwrap();
    let scratch = Scratch::new();
    for case in &vectors.cases {
        for form in ["key", "pkcs8"] {
            let key = vector(&format!("keys/{}.{form}.pem", case.key));
            let run = seal(
                &["unseal", "--key", key.to_str().unwrap(), "-o", "json"],
                bitnami_manifest(
                    &case.namespace,
                    &case.secret_name,
                    &case.scope,
                    "value",
                    &case.sealed,
                )
                .as_bytes(),
                scratch.path(),
            );
            match case.expect.as_str() {
                "ok" => {
                    let secret = parse(run.ok());
                    let want = base64::engine::general_purpose::STANDARD
                        .decode(case.plaintext_b64.as_deref().unwrap())
                        .unwrap();
                    assert_eq!(secret_data(&secret)["value"], want, "{}", case.name);
                    assert_eq!(secret["metadata"]["name"], case.secret_name.as_str());
                }
                "decrypt_failed" => {
                    run.fails(2, "item \"value\": decryption failed");
                    assert!(run.stdout.is_empty(), "{}", case.name);
                }
                "malformed" => {
                    run.fails(2, "item \"value\": malformed sealed value");
                    assert!(run.stdout.is_empty(), "{}", case.name);
                }
                other => panic!("unknown expectation {other}"),
            }
        }
    }
}

#[test]
fn vector_certificates_report_the_listed_fingerprints() {
    let run = seal(
        &[
            "cert",
            "info",
            vector("keys/rsa4096-a.crt.pem").to_str().unwrap(),
            "-o",
            "json",
        ],
        b"",
        &repo(),
    );
    let info = parse(run.ok());
    assert_eq!(
        info["fingerprint"],
        "5e6264b79f61bd4504183f548076a5c5bd72ab07a00d1332fb85e7b4ec1f9dcc"
    );
    assert_eq!(info["keyBits"], 4096);
}
