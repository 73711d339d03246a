//! The CRD YAML committed under `deploy/crds/` is exactly what `crdgen` prints today.

#[test]
fn committed_crd_yaml_is_not_stale() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/crds/seal.dev_sealedsecrets.yaml"
    );
    let committed =
        std::fs::read_to_string(path).expect("deploy/crds/seal.dev_sealedsecrets.yaml exists");
    assert!(
        committed == seal_api::crd_yaml(),
        "deploy/crds/seal.dev_sealedsecrets.yaml is stale; regenerate it with\n  cargo run -p seal-api --bin crdgen > deploy/crds/seal.dev_sealedsecrets.yaml"
    );
}

#[test]
fn crd_keeps_unknown_template_metadata_and_has_a_status_subresource() {
    let crd: serde_json::Value = serde_yaml::from_str(&seal_api::crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["group"], "seal.dev");
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let metadata = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"]
        ["properties"]["metadata"];
    assert_eq!(metadata["x-kubernetes-preserve-unknown-fields"], true);
}
