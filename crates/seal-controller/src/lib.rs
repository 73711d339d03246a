//! `seal-controller`: the in-cluster half of seal, laid out by job. Each folder answers "where
//! does X happen":
//!
//! | job | home |
//! |---|---|
//! | one process: role, start, election, signals, HTTP serving | [`replica`] |
//! | the sealing keys: load, follow, renew, back up | [`keys`] |
//! | unsealing SealedSecrets (seal.dev, and Bitnami's bitnami.com in place of its controller) into Secrets; the record of what a Secret was unsealed from | [`sealed_secrets`] |
//! | syncing ExternalSecrets from AWS Secrets Manager and Vault | [`external_secrets`] |
//! | SecretStores: trust, providers, their `Ready` condition | [`stores`] |
//! | the certificate API (`/v1/cert.pem`, `verify`, `rotate`) and what clients may spend | [`certificate_api`] |
//! | the Kubernetes protocols every reconciler shares (ownership and takeover, the `Ready` condition, error redaction, the produced-Secret watch, bounded memory) | [`protocols`] |
//! | Prometheus metrics | [`metrics`] |
//!
//! Dependencies point one way: [`replica`] starts everything; the reconcilers use [`keys`],
//! [`metrics`] and [`protocols`]; [`protocols`] uses none of them (a test checks that no two
//! of these modules import each other). The binary is a thin `main` over this library, so tests
//! drive the same code against the real API server of the test environment.

pub mod certificate_api;
pub mod external_secrets;
pub mod keys;
pub mod metrics;
pub mod protocols;
pub mod replica;
pub mod sealed_secrets;
pub mod stores;

#[cfg(test)]
mod layout {
    //! The layout's one rule, checked on the source: no two top-level modules depend on each other,
    //! directly or through others, and [`crate::protocols`] depends on none of them.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module -> the top-level modules its code (not its comments) names as `crate::X`.
    fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            let mut files = Vec::new();
            collect(&path, &mut files);
            let mut imports = BTreeSet::new();
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (at, _) in line.match_indices("crate::") {
                        let rest = &line[at + "crate::".len()..];
                        let used: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !used.is_empty() && used != name {
                            imports.insert(used);
                        }
                    }
                }
            }
            graph.insert(name, imports);
        }
        graph
    }

    fn collect(path: &Path, files: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                collect(&entry.unwrap().path(), files);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.to_owned());
        }
    }

    #[test]
    fn no_module_depends_on_itself_through_others() {
        let graph = dependencies();
        assert!(graph.len() >= 8, "{graph:?}");
        for start in graph.keys() {
            // Every module reachable from `start`; `start` must not be one of them.
            let mut seen = BTreeSet::new();
            let mut next: Vec<&String> = graph[start].iter().collect();
            while let Some(module) = next.pop() {
                assert_ne!(module, start, "an import cycle through {start}: {graph:#?}");
                if seen.insert(module.clone()) {
                    next.extend(graph.get(module).into_iter().flatten());
                }
            }
        }
        assert!(graph["protocols"].is_empty(), "{:?}", graph["protocols"]);
        assert!(
            graph["keys"].iter().all(|m| m == "protocols"),
            "{:?}",
            graph["keys"]
        );
    }
}
