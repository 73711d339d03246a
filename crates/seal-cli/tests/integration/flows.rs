//! The offline flows a developer runs, end to end through the binary.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::harness::{Scratch, parse, repo, seal, seal_env, secret_data, secret_yaml};

const CERT: &str = "keys/tls.crt";
const KEY: &str = "keys/tls.key";

#[test]
fn seal_then_unseal_round_trips_every_item_with_string_data_winning() {
    let s = Scratch::with_keys("keys");
    let input = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ml-prod, labels: {app: ml-api}}\ndata:\n  user: bWw=\n  password: b2xk\nstringData:\n  password: new\n";
    let sealed = seal(&["--cert", CERT], input.as_bytes(), s.path())
        .ok()
        .to_owned();
    let doc = parse(&sealed);
    assert_eq!(doc["apiVersion"], "seal.dev/v1alpha1");
    assert_eq!(doc["spec"]["scope"], "strict");
    assert_eq!(
        doc["spec"]["template"]["metadata"]["labels"]["app"],
        "ml-api"
    );
    let unsealed = parse(seal(&["unseal", "--key", KEY], sealed.as_bytes(), s.path()).ok());
    let data = secret_data(&unsealed);
    assert_eq!(data["user"], b"ml");
    assert_eq!(data["password"], b"new");
    assert_eq!(unsealed["metadata"]["labels"]["app"], "ml-api");
}

#[test]
fn multi_document_yaml_and_a_json_list_seal_every_secret() {
    let s = Scratch::with_keys("keys");
    let stream = format!(
        "{}---\n{}",
        secret_yaml("a", "one", &[("k", "1")]),
        secret_yaml("b", "two", &[("k", "2")])
    );
    let out = seal(&["--cert", CERT, "-o", "json"], stream.as_bytes(), s.path())
        .ok()
        .to_owned();
    let list = parse(&out);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let list_input = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x","namespace":"n"},"stringData":{"a":"b"}}]}"#;
    let one = parse(seal(&["--cert", CERT], list_input.as_bytes(), s.path()).ok());
    assert_eq!(one["metadata"]["name"], "x");
    let back = seal(&["unseal", "--key", KEY], out.as_bytes(), s.path());
    assert_eq!(back.ok().matches("kind: Secret").count(), 2);
}

#[test]
fn write_flag_writes_the_file_and_nothing_to_stdout() {
    let s = Scratch::with_keys("keys");
    s.write("secret.yaml", &secret_yaml("ml", "db", &[("a", "b")]));
    let run = seal(
        &["--cert", CERT, "-w", "out/db.sealed.yaml", "secret.yaml"],
        b"",
        s.path(),
    );
    run.fails(3, "out/db.sealed.yaml: cannot write");
    std::fs::create_dir(s.file("out")).unwrap();
    let run = seal(
        &[
            "--cert",
            CERT,
            "-w",
            "out/db.sealed.yaml",
            "-f",
            "secret.yaml",
        ],
        b"",
        s.path(),
    );
    assert!(run.ok().is_empty());
    assert_eq!(parse(&s.read("out/db.sealed.yaml"))["kind"], "SealedSecret");
}

#[test]
fn scopes_bind_the_label_as_documented() {
    let s = Scratch::with_keys("keys");
    let sealed = seal(
        &["--cert", CERT, "--scope", "namespace-wide"],
        secret_yaml("ml", "db", &[("a", "b")]).as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    assert_eq!(parse(&sealed)["spec"]["scope"], "namespace-wide");
    // Renaming within the namespace keeps it openable; moving namespaces does not.
    let renamed = sealed.replace("name: db", "name: other");
    seal(&["unseal", "--key", KEY], renamed.as_bytes(), s.path()).ok();
    let moved = sealed.replace("namespace: ml", "namespace: elsewhere");
    seal(&["unseal", "--key", KEY], moved.as_bytes(), s.path()).fails(2, "decryption failed");
    // Strict: a rename breaks it.
    let strict = seal(
        &["--cert", CERT],
        secret_yaml("ml", "db", &[("a", "b")]).as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    seal(
        &["unseal", "--key", KEY],
        strict.replace("name: db", "name: other").as_bytes(),
        s.path(),
    )
    .fails(2, "decryption failed");
    // Cluster-wide needs no namespace at all.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: anywhere}\nstringData: {a: b}\n";
    let wide = seal(
        &["--cert", CERT, "--scope", "cluster-wide"],
        secret.as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    seal(
        &["unseal", "--key", KEY],
        wide.replace("name: anywhere", "name: moved").as_bytes(),
        s.path(),
    )
    .ok();
}

#[test]
fn raw_prints_base64_without_newline_that_opens_in_a_manifest() {
    let s = Scratch::with_keys("keys");
    let raw = seal(
        &["raw", "--cert", CERT, "-n", "ml", "--name", "db"],
        b"s3cret\n",
        s.path(),
    )
    .ok()
    .to_owned();
    assert!(!raw.ends_with('\n'));
    let manifest = format!(
        "apiVersion: seal.dev/v1alpha1\nkind: SealedSecret\nmetadata: {{name: db, namespace: ml}}\nspec:\n  encryptedData:\n    v: {raw}\n"
    );
    let secret = parse(seal(&["unseal", "--key", KEY], manifest.as_bytes(), s.path()).ok());
    assert_eq!(secret_data(&secret)["v"], b"s3cret\n");
    // kubeseal's spelling works too.
    s.write("value.txt", "v");
    let kubeseal_style = seal(
        &[
            "--raw",
            "--from-file",
            "value.txt",
            "--cert",
            CERT,
            "--scope",
            "cluster-wide",
        ],
        b"",
        s.path(),
    );
    assert!(kubeseal_style.ok().starts_with("AQ"));
    seal(&["raw", "--cert", CERT, "-n", "ml"], b"x", s.path())
        .fails(2, "scope strict needs a name");
}

#[test]
fn merge_into_adds_items_and_keeps_other_ciphertext_and_the_file_format() {
    let s = Scratch::with_keys("keys");
    let original = seal(
        &["--cert", CERT, "-o", "json"],
        secret_yaml("ml", "db", &[("a", "1"), ("b", "2")]).as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    s.write("db.sealed.json", &original);
    let before = parse(&original);
    let run = seal(
        &["--cert", CERT, "--merge-into", "db.sealed.json"],
        secret_yaml("ignored", "ignored", &[("b", "20"), ("c", "3")]).as_bytes(),
        s.path(),
    );
    assert!(run.ok().is_empty());
    let text = s.read("db.sealed.json");
    assert!(text.trim_start().starts_with('{'), "stays JSON");
    let after = parse(&text);
    assert_eq!(
        after["spec"]["encryptedData"]["a"],
        before["spec"]["encryptedData"]["a"]
    );
    assert_ne!(
        after["spec"]["encryptedData"]["b"],
        before["spec"]["encryptedData"]["b"]
    );
    let data = secret_data(&parse(
        seal(&["unseal", "--key", KEY, "db.sealed.json"], b"", s.path()).ok(),
    ));
    assert_eq!(
        (
            data["a"].as_slice(),
            data["b"].as_slice(),
            data["c"].as_slice()
        ),
        (&b"1"[..], &b"20"[..], &b"3"[..])
    );
}

#[test]
fn bitnami_output_and_convert_round_trip_keep_ciphertext() {
    let s = Scratch::with_keys("keys");
    let bitnami = seal(
        &["--cert", CERT, "--bitnami", "--scope", "cluster-wide"],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    let theirs = parse(&bitnami);
    assert_eq!(theirs["apiVersion"], "bitnami.com/v1alpha1");
    assert_eq!(
        theirs["metadata"]["annotations"]["sealedsecrets.bitnami.com/cluster-wide"],
        "true"
    );
    let ours = parse(seal(&["convert"], bitnami.as_bytes(), s.path()).ok());
    assert_eq!(ours["apiVersion"], "seal.dev/v1alpha1");
    assert_eq!(ours["spec"]["scope"], "cluster-wide");
    assert_eq!(
        ours["spec"]["encryptedData"]["a"],
        theirs["spec"]["encryptedData"]["a"]
    );
    assert!(
        ours["spec"]["certificateFingerprint"].is_string(),
        "the fingerprint survives the round trip"
    );
    s.write("legacy.yaml", &bitnami);
    seal(
        &["convert", "--to", "seal", "--in-place", "legacy.yaml"],
        b"",
        s.path(),
    )
    .ok();
    assert_eq!(
        parse(&s.read("legacy.yaml"))["apiVersion"],
        "seal.dev/v1alpha1"
    );
}

#[test]
fn verify_accepts_the_right_certificate_and_flags_the_wrong_environment() {
    let s = Scratch::with_keys("staging");
    s.keygen("prod");
    s.write(
        "prod.sealed.yaml",
        seal(
            &["--cert", "prod/tls.crt"],
            secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
            s.path(),
        )
        .ok(),
    );
    let ok = seal(
        &[
            "verify",
            "--cert",
            "prod/tls.crt",
            "--key",
            "prod/tls.key",
            "prod.sealed.yaml",
        ],
        b"",
        s.path(),
    );
    assert!(
        ok.ok()
            .starts_with("ok    prod.sealed.yaml:1 ml/db: 1 items"),
        "{}",
        ok.stdout
    );
    let wrong = seal(
        &["verify", "--cert", "staging/tls.crt", "prod.sealed.yaml"],
        b"",
        s.path(),
    );
    wrong.fails(1, "1 of 1 checks failed");
    assert!(
        wrong
            .stdout
            .contains("FAIL  prod.sealed.yaml:1 ml/db: sealed with certificate"),
        "{}",
        wrong.stdout
    );
    let mismatched_key = seal(
        &[
            "verify",
            "--cert",
            "prod/tls.crt",
            "--key",
            "staging/tls.key",
            "prod.sealed.yaml",
        ],
        b"",
        s.path(),
    );
    mismatched_key.fails(2, "none of the --key files is the private key");
    // A damaged item is reported by name.
    let tampered = s
        .read("prod.sealed.yaml")
        .replacen("a: Ag", "a: AgA", 1)
        .replacen("a: AQ", "a: AQA", 1);
    s.write("tampered.yaml", &tampered);
    let run = seal(
        &[
            "verify",
            "--cert",
            "prod/tls.crt",
            "--key",
            "prod/tls.key",
            "tampered.yaml",
        ],
        b"",
        s.path(),
    );
    run.fails(1, "checks failed");
    assert!(run.stdout.contains("item \"a\""), "{}", run.stdout);
}

#[test]
fn re_encrypt_moves_files_to_the_new_certificate_and_skips_those_already_there() {
    let s = Scratch::with_keys("old");
    s.keygen("new");
    let sealed = seal(
        &["--cert", "old/tls.crt", "--scope", "namespace-wide"],
        secret_yaml("ml", "db", &[("a", "1"), ("b", "2")]).as_bytes(),
        s.path(),
    )
    .ok()
    .to_owned();
    s.write("one.yaml", &sealed);
    s.write("two.yaml", &sealed);
    let run = seal(
        &[
            "re-encrypt",
            "--key",
            "old/tls.key",
            "--cert",
            "new/tls.crt",
            "one.yaml",
            "two.yaml",
        ],
        b"",
        s.path(),
    );
    run.ok();
    assert!(
        run.stderr
            .contains("re-encrypted 2 SealedSecret(s) in 2 file(s)"),
        "{}",
        run.stderr
    );
    for file in ["one.yaml", "two.yaml"] {
        let doc = parse(&s.read(file));
        assert_eq!(doc["spec"]["scope"], "namespace-wide");
        seal(
            &[
                "verify",
                "--cert",
                "new/tls.crt",
                "--key",
                "new/tls.key",
                file,
            ],
            b"",
            s.path(),
        )
        .ok();
    }
    let again = seal(
        &[
            "re-encrypt",
            "--key",
            "old/tls.key",
            "--cert",
            "new/tls.crt",
            "one.yaml",
        ],
        b"",
        s.path(),
    );
    again.ok();
    assert!(
        again.stderr.contains("1 already sealed with it"),
        "{}",
        again.stderr
    );
}

#[test]
fn keygen_writes_a_private_key_and_a_certificate_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let run = seal(&["keygen", "--out", "k", "--bits", "2048"], b"", s.path());
    let fingerprint = run.ok().trim().to_owned();
    assert_eq!(fingerprint.len(), 64);
    let mode = |f: &str| std::fs::metadata(s.file(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("k/tls.key"), 0o600);
    assert_eq!(mode("k/tls.crt"), 0o644);
    assert!(
        s.read("k/tls.key")
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let info = parse(seal(&["cert", "info", "k/tls.crt", "-o", "json"], b"", s.path()).ok());
    assert_eq!(info["fingerprint"], fingerprint.as_str());
    assert_eq!(info["keyBits"], 2048);
    let before = s.snapshot();
    seal(&["keygen", "--out", "k"], b"", s.path())
        .fails(2, "already exists; refusing to overwrite");
    assert_eq!(s.snapshot(), before);
}

#[test]
fn env_names_a_certificate_from_the_nearest_seal_yaml_and_pins_are_enforced() {
    let s = Scratch::with_keys("certs/staging");
    let fingerprint = parse(
        seal(
            &["cert", "info", "certs/staging/tls.crt", "-o", "json"],
            b"",
            s.path(),
        )
        .ok(),
    )["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    s.write(".seal.yaml", &format!("environments:\n  staging:\n    cert: certs/staging/tls.crt\n    fingerprint: {fingerprint}\n  prod:\n    cert: certs/staging/tls.crt\n    fingerprint: {}\n", "0".repeat(64)));
    std::fs::create_dir_all(s.file("deploy/ml-api")).unwrap();
    let deep = s.file("deploy/ml-api");
    let sealed = parse(
        seal(
            &["--env", "staging"],
            secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
            &deep,
        )
        .ok(),
    );
    assert_eq!(
        sealed["spec"]["certificateFingerprint"],
        fingerprint.as_str()
    );
    seal(
        &["--env", "prod"],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        &deep,
    )
    .fails(2, "does not match the pinned");
    seal(
        &["--env", "dev"],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        &deep,
    )
    .fails(2, "environment \"dev\" is not in");
    let via_env = seal_env(
        &[],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        &deep,
        &[("SEAL_ENV", "staging")],
    );
    via_env.ok();
    // A flag wins over the environment, and SEAL_CERT names a certificate directly.
    let flag_wins = seal_env(
        &["--cert", "../../certs/staging/tls.crt"],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        &deep,
        &[("SEAL_ENV", "nonexistent")],
    );
    flag_wins.ok();
    let cert_env = seal_env(
        &[],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        &deep,
        &[("SEAL_CERT", "../../certs/staging/tls.crt")],
    );
    assert_eq!(
        parse(cert_env.ok())["spec"]["certificateFingerprint"],
        fingerprint.as_str()
    );
}

#[test]
fn certificate_is_fetched_over_http_and_a_silent_server_times_out() {
    let s = Scratch::with_keys("keys");
    let pem = s.read(CERT);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{pem}",
                pem.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    let url = format!("http://127.0.0.1:{port}/v1/cert.pem");
    seal(
        &["--cert", &url],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        s.path(),
    )
    .ok();

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/v1/cert.pem",
        silent.local_addr().unwrap().port()
    );
    let run = seal(
        &["--cert", &url, "--request-timeout", "300ms"],
        secret_yaml("ml", "db", &[("a", "1")]).as_bytes(),
        s.path(),
    );
    run.fails(3, "cannot fetch certificate from");
    drop(silent);
}

#[test]
fn scan_reports_plaintext_secrets_with_file_and_line() {
    let s = Scratch::new();
    s.write(
        "deploy/app.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{}",
            secret_yaml("ml", "leaky", &[("a", "1")])
        ),
    );
    s.write("deploy/sealed.yaml", "apiVersion: seal.dev/v1alpha1\nkind: SealedSecret\nmetadata: {name: x}\nspec: {encryptedData: {a: AQ==}}\n");
    s.write(
        "node_modules/ignored.yaml",
        &secret_yaml("ml", "vendored", &[("a", "1")]),
    );
    let run = seal(&["scan"], b"", s.path());
    run.fails(1, "1 plaintext Secret(s) found");
    assert_eq!(run.stdout, "./deploy/app.yaml:5: leaky\n");
    seal(&["scan", "deploy/sealed.yaml"], b"", s.path()).ok();
    // The repository's own examples carry the opt-out annotation.
    seal(&["scan", "examples"], b"", &repo()).ok();
}

#[test]
fn kubeseal_only_flags_point_at_seal_commands() {
    let s = Scratch::new();
    let run = seal(
        &["--recovery-unseal", "--recovery-private-key", "k.pem"],
        b"",
        s.path(),
    );
    run.fails(2, "--recovery-unseal is kubeseal's");
    assert!(
        run.stderr.contains("hint: seal unseal --key"),
        "{}",
        run.stderr
    );
    seal(&["--re-encrypt"], b"", s.path()).fails(2, "hint: seal re-encrypt");
}

#[test]
fn completions_are_printed_for_bash() {
    let run = seal(&["completions", "bash"], b"", &repo());
    assert!(run.ok().contains("_seal()"));
}

#[test]
fn the_committed_ml_api_example_is_the_sealed_form_of_the_plaintext_example() {
    // examples/ml-api/secret.sealed.yaml must open with keys.example to exactly secret.yaml's items.
    let root = repo();
    let plain = parse(&std::fs::read_to_string(root.join("examples/ml-api/secret.yaml")).unwrap());
    let run = seal(
        &[
            "unseal",
            "--key",
            "keys.example/tls.key",
            "examples/ml-api/secret.sealed.yaml",
        ],
        b"",
        &root,
    );
    let data = secret_data(&parse(run.ok()));
    let want: std::collections::BTreeMap<String, Vec<u8>> = plain["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
        .collect();
    assert_eq!(
        data, want,
        "re-seal with: seal --cert keys.example/tls.crt -w examples/ml-api/secret.sealed.yaml examples/ml-api/secret.yaml"
    );
    seal(
        &[
            "verify",
            "--cert",
            "keys.example/tls.crt",
            "examples/ml-api/secret.sealed.yaml",
        ],
        b"",
        &root,
    )
    .ok();
}
