//! The bad-input matrix: each case asserts the one-line message, the documented exit code, an empty
//! stdout, and that not one file in the working directory was created or changed.

use crate::harness::{Run, Scratch, repo, seal, secret_yaml};

struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: String,
    code: i32,
    message: &'static str,
}

fn case(name: &'static str, args: &[&str], stdin: &str, code: i32, message: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        stdin: stdin.to_owned(),
        code,
        message,
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one table of cases reads best in one place
fn bad_input_gets_a_clear_error_the_documented_code_and_writes_nothing() {
    let s = Scratch::with_keys("keys");
    s.keygen("other");
    s.expired_cert("expired.crt");
    s.future_cert("future.crt");
    let ec = repo().join("testdata/certs/ec-p256.crt.pem");
    let small = repo().join("testdata/certs/rsa1024.crt.pem");
    let good = secret_yaml("ml", "db", &[("password", "hunter2")]);
    let sealed = seal(&["--cert", "keys/tls.crt"], good.as_bytes(), s.path())
        .ok()
        .to_owned();
    s.write("db.sealed.yaml", &sealed);
    let truncated = {
        let doc: serde_json::Value = serde_yaml::from_str(&sealed).unwrap();
        let value = doc["spec"]["encryptedData"]["password"].as_str().unwrap();
        sealed.replace(value, &value[..40])
    };
    s.write("secret.yaml", &good);
    std::fs::write(
        s.file("latin1.yaml"),
        b"kind: Secret\nmetadata: {name: \xe9}\n",
    )
    .unwrap();

    let cases = vec![
        case(
            "not YAML",
            &["--cert", "keys/tls.crt"],
            "kind: Secret\nmetadata: [unclosed\n",
            2,
            "<stdin>: line 3: not valid YAML",
        ),
        case(
            "not a Secret",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            2,
            "<stdin>:1: expected a Secret, found ConfigMap",
        ),
        case(
            "no documents",
            &["--cert", "keys/tls.crt"],
            "# nothing\n",
            2,
            "<stdin>: no Secret found",
        ),
        case(
            "missing name",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: Secret\nmetadata: {namespace: ml}\nstringData: {a: b}\n",
            2,
            "scope strict needs a name",
        ),
        case(
            "missing namespace",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {a: b}\n",
            2,
            "scope strict needs a namespace",
        ),
        case(
            "namespace-wide without namespace",
            &["--cert", "keys/tls.crt", "--scope", "namespace-wide"],
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {a: b}\n",
            2,
            "scope namespace-wide needs a namespace",
        ),
        case(
            "namespace conflict",
            &["--cert", "keys/tls.crt", "-n", "other"],
            &good,
            2,
            "namespace \"other\" given, but the Secret's metadata says \"ml\"",
        ),
        case(
            "name conflict",
            &["--cert", "keys/tls.crt", "--name", "x"],
            &good,
            2,
            "name \"x\" given, but the Secret's metadata says \"db\"",
        ),
        case(
            "bad base64",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ml}\ndata: {password: 'not*base64'}\n",
            2,
            "<stdin>: line 1: invalid Secret",
        ),
        case(
            "empty data",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ml}\n",
            2,
            "pass --allow-empty-data",
        ),
        case(
            "unknown scope annotation",
            &["--cert", "keys/tls.crt"],
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: ml, annotations: {seal.dev/scope: galaxy}}\nstringData: {a: b}\n",
            2,
            "annotation seal.dev/scope: unknown scope \"galaxy\"",
        ),
        case(
            "no certificate",
            &[],
            &good,
            2,
            "no certificate to seal with",
        ),
        case(
            "expired certificate",
            &["--cert", "expired.crt"],
            &good,
            2,
            "expired.crt: certificate expired on 2023-11-15T22:13:20Z",
        ),
        case(
            "certificate from the future",
            &["--cert", "future.crt"],
            &good,
            2,
            "future.crt: certificate is not valid before",
        ),
        case(
            "certificate over plain http",
            &["--cert", "http://cert.example.invalid/v1/cert.pem"],
            &good,
            2,
            "a certificate over plain http could be replaced on the way",
        ),
        case(
            "non-RSA certificate",
            &["--cert", ec.to_str().unwrap()],
            &good,
            2,
            "not RSA",
        ),
        case(
            "RSA-1024 certificate",
            &["--cert", small.to_str().unwrap()],
            &good,
            2,
            "RSA-1024 is too small",
        ),
        case(
            "garbage certificate",
            &["--cert", "secret.yaml"],
            &good,
            2,
            "secret.yaml: invalid certificate",
        ),
        case(
            "missing certificate file",
            &["--cert", "nope.crt"],
            &good,
            3,
            "nope.crt: cannot read: No such file or directory",
        ),
        case(
            "unreachable certificate URL",
            &[
                "--cert",
                "http://127.0.0.1:9/cert.pem",
                "--request-timeout",
                "2s",
            ],
            &good,
            3,
            "cannot fetch certificate from http://127.0.0.1:9/cert.pem",
        ),
        case(
            "unreadable input",
            &["--cert", "keys/tls.crt", "missing.yaml"],
            "",
            3,
            "missing.yaml: cannot read: No such file or directory",
        ),
        case(
            "not UTF-8",
            &["--cert", "keys/tls.crt", "latin1.yaml"],
            "",
            2,
            "latin1.yaml: not UTF-8 text",
        ),
        case(
            "unwritable output",
            &["--cert", "keys/tls.crt", "-w", "no/such/dir/out.yaml"],
            &good,
            3,
            "no/such/dir/out.yaml: cannot write",
        ),
        case(
            "truncated value",
            &["unseal", "--key", "keys/tls.key"],
            &truncated,
            2,
            "item \"password\": malformed sealed value: too short for its length prefix",
        ),
        case(
            "wrong key",
            &["unseal", "--key", "other/tls.key"],
            &sealed,
            2,
            "item \"password\": decryption failed",
        ),
        case(
            "key file is not a key",
            &["unseal", "--key", "secret.yaml"],
            &sealed,
            2,
            "secret.yaml: no private key found",
        ),
        case(
            "wrong key for re-encrypt",
            &[
                "re-encrypt",
                "--key",
                "other/tls.key",
                "--cert",
                "other/tls.crt",
                "db.sealed.yaml",
            ],
            "",
            2,
            "db.sealed.yaml:1: item \"password\": decryption failed",
        ),
        case(
            "merge into a file sealed with another certificate",
            &["--cert", "other/tls.crt", "--merge-into", "db.sealed.yaml"],
            &good,
            2,
            "it was sealed with certificate",
        ),
        case(
            "merge into a file that is not a SealedSecret",
            &["--cert", "keys/tls.crt", "--merge-into", "secret.yaml"],
            &good,
            2,
            "needs a file with exactly one SealedSecret",
        ),
        case(
            "unknown scope flag",
            &["--cert", "keys/tls.crt", "--scope", "galaxy"],
            &good,
            2,
            "invalid value 'galaxy' for '--scope <SCOPE>'",
        ),
        case(
            "cert and env together",
            &["--cert", "keys/tls.crt", "--env", "prod"],
            &good,
            2,
            "cannot be used with",
        ),
        case(
            "env without .seal.yaml",
            &["--env", "prod"],
            &good,
            2,
            "--env needs a .seal.yaml",
        ),
        case(
            "keygen bad size",
            &["keygen", "--out", "k", "--bits", "1024"],
            "",
            2,
            "1024 is not a supported size",
        ),
        case(
            "convert a Secret",
            &["convert", "--in-place"],
            "",
            2,
            "--in-place needs file arguments",
        ),
    ];

    for c in &cases {
        let before = s.snapshot();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let run: Run = seal(&args, c.stdin.as_bytes(), s.path());
        assert_eq!(
            run.status, c.code,
            "{}: exit code\nstderr: {}",
            c.name, run.stderr
        );
        assert!(
            run.stderr.contains(c.message),
            "{}: stderr lacks {:?}:\n{}",
            c.name,
            c.message,
            run.stderr
        );
        assert!(
            run.stdout.is_empty(),
            "{}: stdout not empty:\n{}",
            c.name,
            run.stdout
        );
        if c.code != 2 || !run.stderr.starts_with("error: invalid value") {
            assert!(
                run.stderr.starts_with("error: "),
                "{}: {}",
                c.name,
                run.stderr
            );
        }
        assert!(s.snapshot() == before, "{}: files changed", c.name);
    }
}
