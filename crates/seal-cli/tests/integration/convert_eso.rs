//! `seal convert` with ESO manifests through the real binary: in place and atomically, both
//! directions, JSON as well as YAML, and nothing written when any document of any file cannot be
//! converted.

use crate::harness::{Scratch, parse, repo, seal};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("crates/seal-cli/tests/cmd/fixtures").join(name)).unwrap()
}

/// Every document of a YAML stream as JSON values.
fn documents(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---\n").map(parse).collect()
}

#[test]
fn eso_files_convert_in_place_and_back_to_the_same_objects() {
    let s = Scratch::new();
    s.write("aws.yaml", &fixture("eso-aws.yaml"));
    s.write("vault.yaml", &fixture("eso-vault.yaml"));
    seal(
        &["convert", "--in-place", "aws.yaml", "vault.yaml"],
        b"",
        s.path(),
    )
    .ok();
    let aws = documents(&s.read("aws.yaml"));
    let kinds: Vec<_> = aws
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["apiVersion"].as_str().unwrap(),
                d["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "seal.dev/v1alpha1 SecretStore",
            "seal.dev/v1alpha1 ExternalSecret",
            "v1 ConfigMap"
        ]
    );
    // ESO's v2 engine is seal's only one: the field goes, the template stays.
    assert!(
        aws[1]["spec"]["target"]["template"]
            .get("engineVersion")
            .is_none()
    );
    assert!(aws[1]["spec"]["target"]["template"]["data"]["DATABASE_URL"].is_string());
    let vault = documents(&s.read("vault.yaml"));
    assert_eq!(vault[0]["kind"], "ClusterSecretStore");
    // ESO's server-written defaults with no meaning in seal are gone; the rest is kept.
    assert_eq!(
        vault[1]["spec"]["data"][0]["remoteRef"],
        serde_json::json!({"key": "ml/db", "property": "password", "decodingStrategy": "None"})
    );

    // Back to ESO: v1, same objects, and converting again is a fixed point.
    seal(
        &[
            "convert",
            "--to",
            "eso",
            "--in-place",
            "aws.yaml",
            "vault.yaml",
        ],
        b"",
        s.path(),
    )
    .ok();
    let back = documents(&s.read("aws.yaml"));
    assert_eq!(back[0]["apiVersion"], "external-secrets.io/v1");
    assert_eq!(back[1]["spec"], aws[1]["spec"]);
    assert_eq!(back[2], aws[2], "the ConfigMap passes through");
    assert_eq!(
        documents(&s.read("vault.yaml"))[0]["apiVersion"],
        "external-secrets.io/v1"
    );
    let again = seal(&["convert", "aws.yaml"], b"", s.path())
        .ok()
        .to_owned();
    assert_eq!(documents(&again), aws);
}

#[test]
fn one_bad_document_in_one_file_writes_nothing_anywhere() {
    let s = Scratch::new();
    s.write("good.yaml", &fixture("eso-aws.yaml"));
    let bad = fixture("eso-vault.yaml").replace("metadataPolicy: None", "metadataPolicy: Fetch");
    s.write("bad.yaml", &bad);
    let before = s.snapshot();
    let run = seal(
        &["convert", "--in-place", "good.yaml", "bad.yaml"],
        b"",
        s.path(),
    );
    run.fails(
        2,
        "error: bad.yaml:25: ExternalSecret ml-api/ml-api-db (store ClusterSecretStore vault-backend): spec.data[0].remoteRef.metadataPolicy: only None is supported",
    );
    assert!(run.stdout.is_empty());
    assert_eq!(s.snapshot(), before, "no file was written");
}

#[test]
fn json_in_gives_json_out_and_yaml_on_request() {
    let s = Scratch::new();
    let yaml = fixture("eso-vault.yaml");
    let docs: Vec<serde_json::Value> = documents(yaml.split_once('\n').unwrap().1);
    let json = serde_json::to_string(
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    .unwrap();
    let out = seal(&["convert"], json.as_bytes(), s.path())
        .ok()
        .to_owned();
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"][1]["apiVersion"], "seal.dev/v1alpha1");
    let out = seal(&["convert", "-o", "yaml"], json.as_bytes(), s.path())
        .ok()
        .to_owned();
    assert_eq!(documents(&out)[1]["kind"], "ExternalSecret");
}

#[test]
fn each_direction_leaves_the_other_apis_documents_alone() {
    let s = Scratch::new();
    let eso = fixture("eso-aws.yaml");
    // --to eso: ESO documents (and anything else) pass through untouched.
    let out = seal(&["convert", "--to", "eso"], eso.as_bytes(), s.path())
        .ok()
        .to_owned();
    assert_eq!(documents(&out), documents(eso.split_once('\n').unwrap().1));
    // --to bitnami: seal ExternalSecrets are not SealedSecrets; they pass through.
    let ours = fixture("seal-externalsecret.yaml");
    let out = seal(&["convert", "--to", "bitnami"], ours.as_bytes(), s.path())
        .ok()
        .to_owned();
    assert_eq!(documents(&out), documents(&ours));
}
