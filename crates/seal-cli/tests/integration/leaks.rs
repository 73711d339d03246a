//! A marker value goes through every flow, failing ones included; it must appear in no output except
//! the one place it is meant to (the Secret `seal unseal` prints), and in no file but the intended
//! output.

use crate::harness::{Scratch, seal, secret_yaml};

const MARKER: &str = "MARKER-7f3c9a1e-plaintext-must-not-leak";

fn assert_clean(what: &str, text: &str) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(MARKER);
    assert!(!text.contains(MARKER), "{what} leaked the marker:\n{text}");
    assert!(
        !text.contains(&encoded[..24]),
        "{what} leaked the marker's base64:\n{text}"
    );
}

#[test]
fn no_flow_prints_or_writes_the_plaintext_outside_its_intended_output() {
    let s = Scratch::with_keys("keys");
    s.keygen("other");
    let secret = secret_yaml("ml", "db", &[("password", MARKER)]);
    let sealed = seal(&["--cert", "keys/tls.crt"], secret.as_bytes(), s.path())
        .ok()
        .to_owned();
    assert_clean("seal", &sealed);
    s.write("db.sealed.yaml", &sealed);

    let bad_base64 = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: ml}}\ndata: {{password: '{MARKER}'}}\n"
    );
    let runs = [
        seal(
            &["--cert", "keys/tls.crt", "-n", "other"],
            secret.as_bytes(),
            s.path(),
        ),
        seal(&["--cert", "keys/tls.crt"], bad_base64.as_bytes(), s.path()),
        seal(
            &["--cert", "keys/tls.crt", "--bitnami", "-o", "json"],
            secret.as_bytes(),
            s.path(),
        ),
        seal(
            &["unseal", "--key", "other/tls.key", "db.sealed.yaml"],
            b"",
            s.path(),
        ),
        seal(
            &[
                "verify",
                "--cert",
                "keys/tls.crt",
                "--key",
                "keys/tls.key",
                "db.sealed.yaml",
            ],
            b"",
            s.path(),
        ),
        seal(
            &[
                "re-encrypt",
                "--key",
                "keys/tls.key",
                "--cert",
                "other/tls.crt",
                "db.sealed.yaml",
            ],
            b"",
            s.path(),
        ),
        seal(
            &["convert", "--to", "bitnami", "db.sealed.yaml"],
            b"",
            s.path(),
        ),
        seal(
            &["raw", "--cert", "keys/tls.crt", "--scope", "cluster-wide"],
            MARKER.as_bytes(),
            s.path(),
        ),
        seal(&["scan", "."], b"", s.path()),
    ];
    for run in &runs {
        assert_clean("stdout", &run.stdout);
        assert_clean("stderr", &run.stderr);
    }
    seal(
        &[
            "unseal",
            "--key",
            "other/tls.key",
            "-w",
            "unsealed.yaml",
            "db.sealed.yaml",
        ],
        b"",
        s.path(),
    )
    .ok();
    for (path, bytes) in s.snapshot() {
        if path.ends_with("unsealed.yaml") {
            continue; // the intended output of unseal
        }
        assert_clean(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

#[test]
fn sealing_for_several_environments_leaks_nothing_when_it_works_or_fails() {
    let s = Scratch::with_keys("keys");
    s.keygen("other");
    s.write(
        ".seal.yaml",
        "environments:\n  a: {cert: keys/tls.crt}\n  b: {cert: other/tls.crt}\n  broken: {cert: missing.crt}\n",
    );
    std::fs::create_dir(s.file("out")).unwrap();
    let secret = secret_yaml("ml", "db", &[("password", MARKER)]);
    let runs = [
        // Works: a file per environment.
        &["--env", "a,b", "-w", "out/{env}.yaml"][..],
        // The Secret's namespace is not the one asked for.
        &["--env", "a,b", "-w", "out/{env}.yaml", "-n", "other"],
        // The second certificate is missing.
        &["--env", "a,broken", "-w", "out/{env}.yaml"],
        // The directory is missing.
        &["--env", "b,a", "-w", "nodir/{env}.yaml"],
        // Several environments to stdout.
        &["--env", "all"],
    ];
    for args in runs {
        let run = seal(args, secret.as_bytes(), s.path());
        assert_clean("stdout", &run.stdout);
        assert_clean("stderr", &run.stderr);
    }
    assert!(s.file("out/b.yaml").exists(), "the first run wrote");
    for (path, bytes) in s.snapshot() {
        assert_clean(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}
