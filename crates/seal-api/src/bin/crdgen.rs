//! Prints seal's CustomResourceDefinitions as YAML (`cargo run -p seal-api --bin crdgen >
//! deploy/crds/seal.dev_sealedsecrets.yaml`). The committed file is checked against this output by a
//! test, so it cannot go stale.

fn main() {
    print!("{}", seal_api::crd_yaml());
}
