//! Interop with independent implementations, both ways, values and whole manifests: kubeseal v0.40.0
//! itself (`SEAL_KUBESEAL`) and the Python kubesealpy (`SEAL_PYTHON`, a Python with kubesealpy
//! installed). `cargo xtask test` provides both.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::harness::{
    Run, Scratch, bitnami_manifest, parse, peer, repo, run_program, seal, secret_data, secret_yaml,
};

const SCOPES: [&str; 3] = ["strict", "namespace-wide", "cluster-wide"];

fn kubeseal(program: &Path, args: &[&str], stdin: &[u8], cwd: &Path) -> Run {
    // kubeseal reads a kubeconfig for defaults even with --cert; give it none to find.
    run_program(program, args, stdin, cwd, &[("KUBECONFIG", "/dev/null")])
}

fn python_peer(python: &Path, args: &[&str], stdin: &[u8], cwd: &Path) -> Run {
    let script: PathBuf = repo().join("crates/seal-cli/tests/peers/kubesealpy_peer.py");
    let mut full = vec![script.to_str().unwrap()];
    full.extend_from_slice(args);
    run_program(python, &full, stdin, cwd, &[])
}

/// A binary value with every byte value, to catch any text mangling.
fn binary_value() -> Vec<u8> {
    (0..=255u8).rev().chain(0..=255u8).collect()
}

#[test]
fn kubeseal_raw_values_open_with_seal_unseal_in_every_scope() {
    let Some(kubeseal_bin) = peer("SEAL_KUBESEAL", "kubeseal v0.40.0") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    std::fs::write(s.file("value.bin"), binary_value()).unwrap();
    for scope in SCOPES {
        let raw = kubeseal(
            &kubeseal_bin,
            &[
                "--raw",
                "--cert",
                "keys/tls.crt",
                "--scope",
                scope,
                "-n",
                "ml-prod",
                "--name",
                "db",
                "--from-file",
                "value.bin",
            ],
            b"",
            s.path(),
        );
        let value = raw.ok().to_owned();
        let manifest = bitnami_manifest("ml-prod", "db", scope, "v", &value);
        let secret = parse(
            seal(
                &["unseal", "--key", "keys/tls.key"],
                manifest.as_bytes(),
                s.path(),
            )
            .ok(),
        );
        assert_eq!(secret_data(&secret)["v"], binary_value(), "{scope}");
    }
}

#[test]
fn kubeseal_manifests_open_with_seal_unseal() {
    let Some(kubeseal_bin) = peer("SEAL_KUBESEAL", "kubeseal v0.40.0") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    for scope in SCOPES {
        let input = secret_yaml(
            "ml-prod",
            "ml-api-db",
            &[("DATABASE_URL", "postgres://ml:pw@db/ml"), ("USER", "ml")],
        );
        let sealed = kubeseal(
            &kubeseal_bin,
            &["--cert", "keys/tls.crt", "--scope", scope, "-o", "yaml"],
            input.as_bytes(),
            s.path(),
        );
        let sealed = sealed.ok().to_owned();
        let secret = parse(
            seal(
                &["unseal", "--key", "keys/tls.key"],
                sealed.as_bytes(),
                s.path(),
            )
            .ok(),
        );
        let data = secret_data(&secret);
        assert_eq!(data["DATABASE_URL"], b"postgres://ml:pw@db/ml", "{scope}");
        assert_eq!(data["USER"], b"ml", "{scope}");
        // And through conversion: the converted manifest opens the same way.
        let converted = seal(&["convert"], sealed.as_bytes(), s.path())
            .ok()
            .to_owned();
        assert_eq!(parse(&converted)["spec"]["scope"], scope);
        seal(
            &["unseal", "--key", "keys/tls.key"],
            converted.as_bytes(),
            s.path(),
        )
        .ok();
    }
}

#[test]
fn seal_output_opens_with_kubeseal_recovery_unseal() {
    let Some(kubeseal_bin) = peer("SEAL_KUBESEAL", "kubeseal v0.40.0") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    for scope in SCOPES {
        let input = secret_yaml(
            "ml-prod",
            "ml-api-db",
            &[("token", "t0ken"), ("dsn", "postgres://x")],
        );
        // Both `--bitnami` output and a converted seal.dev manifest.
        let direct = seal(
            &["--cert", "keys/tls.crt", "--scope", scope, "--bitnami"],
            input.as_bytes(),
            s.path(),
        )
        .ok()
        .to_owned();
        let ours = seal(
            &["--cert", "keys/tls.crt", "--scope", scope],
            input.as_bytes(),
            s.path(),
        )
        .ok()
        .to_owned();
        let converted = seal(&["convert", "--to", "bitnami"], ours.as_bytes(), s.path())
            .ok()
            .to_owned();
        for manifest in [direct, converted] {
            let run = kubeseal(
                &kubeseal_bin,
                &[
                    "--recovery-unseal",
                    "--recovery-private-key",
                    "keys/tls.key",
                    "-o",
                    "yaml",
                ],
                manifest.as_bytes(),
                s.path(),
            );
            let data = secret_data(&parse(run.ok()));
            assert_eq!(data["token"], b"t0ken", "{scope}");
            assert_eq!(data["dsn"], b"postgres://x", "{scope}");
        }
    }
}

#[test]
fn seal_raw_values_open_with_kubeseal_and_merge_into_is_compatible() {
    let Some(kubeseal_bin) = peer("SEAL_KUBESEAL", "kubeseal v0.40.0") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    // kubeseal merges an item into a file seal wrote in Bitnami's format...
    let input = secret_yaml("ml", "db", &[("a", "1")]);
    s.write(
        "db.yaml",
        seal(
            &["--cert", "keys/tls.crt", "--bitnami"],
            input.as_bytes(),
            s.path(),
        )
        .ok(),
    );
    kubeseal(
        &kubeseal_bin,
        &["--cert", "keys/tls.crt", "--merge-into", "db.yaml"],
        secret_yaml("ml", "db", &[("b", "2")]).as_bytes(),
        s.path(),
    )
    .ok();
    // ...seal merges another one into the result...
    seal(
        &["--cert", "keys/tls.crt", "--merge-into", "db.yaml"],
        secret_yaml("ml", "db", &[("c", "3")]).as_bytes(),
        s.path(),
    )
    .ok();
    // ...and both open everything.
    let ours = secret_data(&parse(
        seal(
            &["unseal", "--key", "keys/tls.key", "db.yaml"],
            b"",
            s.path(),
        )
        .ok(),
    ));
    let theirs_run = kubeseal(
        &kubeseal_bin,
        &[
            "--recovery-unseal",
            "--recovery-private-key",
            "keys/tls.key",
            "-o",
            "yaml",
        ],
        s.read("db.yaml").as_bytes(),
        s.path(),
    );
    let theirs = secret_data(&parse(theirs_run.ok()));
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 3);
}

#[test]
fn kubesealpy_and_seal_open_each_others_values_in_every_scope() {
    let Some(python) = peer("SEAL_PYTHON", "python with kubesealpy") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    let b64 = base64::engine::general_purpose::STANDARD;
    for scope in SCOPES {
        let theirs = python_peer(
            &python,
            &["seal-value", "keys/tls.crt", scope, "ml-prod", "db"],
            &binary_value(),
            s.path(),
        );
        let sealed = theirs.ok().to_owned();
        let manifest = bitnami_manifest("ml-prod", "db", scope, "v", &sealed);
        let secret = parse(
            seal(
                &["unseal", "--key", "keys/tls.key"],
                manifest.as_bytes(),
                s.path(),
            )
            .ok(),
        );
        assert_eq!(secret_data(&secret)["v"], binary_value(), "{scope}");

        let ours = seal(
            &[
                "raw",
                "--cert",
                "keys/tls.crt",
                "--scope",
                scope,
                "-n",
                "ml-prod",
                "--name",
                "db",
            ],
            &binary_value(),
            s.path(),
        )
        .ok()
        .to_owned();
        let opened = python_peer(
            &python,
            &["open-value", "keys/tls.key", scope, "ml-prod", "db"],
            ours.as_bytes(),
            s.path(),
        );
        assert_eq!(b64.decode(opened.ok()).unwrap(), binary_value(), "{scope}");
    }
}

#[test]
fn kubesealpy_and_seal_open_each_others_manifests() {
    let Some(python) = peer("SEAL_PYTHON", "python with kubesealpy") else {
        return;
    };
    let s = Scratch::with_keys("keys");
    let input = secret_yaml(
        "ml-prod",
        "ml-batch",
        &[
            ("WAREHOUSE_PASSWORD", "w4rehouse"),
            ("QUEUE_URL", "amqp://q"),
        ],
    );
    for scope in SCOPES {
        let theirs = python_peer(
            &python,
            &["seal-manifest", "keys/tls.crt", scope],
            input.as_bytes(),
            s.path(),
        )
        .ok()
        .to_owned();
        let data = secret_data(&parse(
            seal(
                &["unseal", "--key", "keys/tls.key"],
                theirs.as_bytes(),
                s.path(),
            )
            .ok(),
        ));
        assert_eq!(data["WAREHOUSE_PASSWORD"], b"w4rehouse", "{scope}");

        let ours = seal(
            &["--cert", "keys/tls.crt", "--scope", scope, "--bitnami"],
            input.as_bytes(),
            s.path(),
        )
        .ok()
        .to_owned();
        let secret = parse(
            python_peer(
                &python,
                &["unseal-manifest", "keys/tls.key"],
                ours.as_bytes(),
                s.path(),
            )
            .ok(),
        );
        let data = secret_data(&secret);
        assert_eq!(data["QUEUE_URL"], b"amqp://q", "{scope}");
    }
}
