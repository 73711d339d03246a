//! Prints seal's CustomResourceDefinitions as YAML: `cargo run -p seal-api --bin crdgen` prints
//! every CRD as one stream; `cargo run -p seal-api --bin crdgen -- deploy/crds` writes one file per
//! CRD (`<group>_<plural>.yaml`). The committed files are checked against this output by a test
//! (`crates/seal-api/tests/crd.rs`), so they cannot go stale.

use std::process::ExitCode;

fn main() -> ExitCode {
    let files = seal_api::crd_files();
    match std::env::args_os().nth(1) {
        None => {
            let documents: Vec<_> = files.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", documents.join("---\n"));
            ExitCode::SUCCESS
        }
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            for (name, yaml) in files {
                let path = dir.join(name);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("error: {}: cannot write: {e}", path.display());
                    return ExitCode::from(3);
                }
            }
            ExitCode::SUCCESS
        }
    }
}
