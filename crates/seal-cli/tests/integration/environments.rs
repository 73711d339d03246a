//! `seal --env a,b,c -w 'deploy/{env}/...'`: one Secret sealed for several environments of
//! `.seal.yaml` in one run, one file per environment, all files or none (Bitnami's wish #839).

use crate::harness::{Run, Scratch, parse, seal, seal_env, secret_data, secret_yaml};

const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const PATTERN: &str = "deploy/{env}/ml-api.sealed.yaml";

/// A scratch repository with a key pair per environment in `certs/NAME/`, a `.seal.yaml` naming
/// them (prod pinned by fingerprint, plus `extra` lines), `secret.yaml`, and `deploy/NAME/`.
fn repository(extra: &str) -> Scratch {
    let s = Scratch::new();
    for env in ENVS {
        s.keygen(&format!("certs/{env}"));
        std::fs::create_dir_all(s.file(&format!("deploy/{env}"))).unwrap();
    }
    let pin = fingerprint(&s, "prod");
    s.write(
        ".seal.yaml",
        &format!(
            "environments:\n  staging: {{cert: certs/staging/tls.crt}}\n  dev: {{cert: certs/dev/tls.crt}}\n  prod:\n    cert: certs/prod/tls.crt\n    fingerprint: {pin}\n{extra}"
        ),
    );
    s.write(
        "secret.yaml",
        &secret_yaml("ml", "ml-api", &[("password", "hunter2"), ("user", "ml")]),
    );
    s
}

fn fingerprint(s: &Scratch, env: &str) -> String {
    let cert = format!("certs/{env}/tls.crt");
    let info = seal(&["cert", "info", &cert, "-o", "json"], b"", s.path());
    parse(info.ok())["fingerprint"].as_str().unwrap().to_owned()
}

fn output(env: &str) -> String {
    PATTERN.replace("{env}", env)
}

fn unseal(s: &Scratch, key_env: &str, file: &str) -> Run {
    let key = format!("certs/{key_env}/tls.key");
    seal(&["unseal", "--key", &key, file], b"", s.path())
}

/// The file opens with its environment's key, and with no other environment's key.
#[track_caller]
fn opens_only_with_its_own_key(s: &Scratch, env: &str, file: &str) {
    let secret = parse(unseal(s, env, file).ok());
    let data = secret_data(&secret);
    assert_eq!(data["password"], b"hunter2", "{file}");
    assert_eq!(data["user"], b"ml", "{file}");
    for other in ENVS.iter().filter(|o| **o != env) {
        unseal(s, other, file).fails(2, "decryption failed");
    }
}

#[test]
fn each_environment_gets_its_own_file_that_opens_only_with_its_own_key() {
    let s = repository("");
    let run = seal(
        &["--env", "prod,dev", "-w", PATTERN, "secret.yaml"],
        b"",
        s.path(),
    );
    assert!(run.ok().is_empty(), "stdout: {}", run.stdout);
    let lines: Vec<_> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    for (line, env) in lines.iter().zip(["prod", "dev"]) {
        assert!(
            line.starts_with(&format!(
                "wrote {} for environment {env} (certificate ",
                output(env)
            )),
            "{line}"
        );
    }
    for env in ["prod", "dev"] {
        let file = output(env);
        let doc = parse(&s.read(&file));
        assert_eq!(doc["kind"], "SealedSecret");
        assert_eq!(
            doc["spec"]["certificateFingerprint"],
            fingerprint(&s, env).as_str()
        );
        opens_only_with_its_own_key(&s, env, &file);
    }
    assert!(
        !s.file(&output("staging")).exists(),
        "staging was not selected"
    );
    assert!(!run.stderr.contains("hunter2"));
}

#[test]
fn all_selects_every_environment_sorted_and_the_sealing_flags_apply_to_each() {
    let s = repository("");
    let run = seal(
        &[
            "--env",
            "all",
            "-w",
            "out-{env}.json",
            "--bitnami",
            "-o",
            "json",
            "--scope",
            "namespace-wide",
            "secret.yaml",
        ],
        b"",
        s.path(),
    );
    run.ok();
    let written: Vec<_> = run
        .stderr
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        written,
        ["out-dev.json", "out-prod.json", "out-staging.json"],
        "sorted by name, not in the file's order"
    );
    for env in ENVS {
        let file = format!("out-{env}.json");
        let text = s.read(&file);
        assert!(text.trim_start().starts_with('{'), "JSON: {text}");
        let doc = parse(&text);
        assert_eq!(doc["apiVersion"], "bitnami.com/v1alpha1");
        assert_eq!(
            doc["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"],
            "true"
        );
        opens_only_with_its_own_key(&s, env, &file);
    }

    // One environment with {env}; SEAL_ENV takes a list as --env does.
    let one = seal(
        &["--env", "staging", "-w", PATTERN, "secret.yaml"],
        b"",
        s.path(),
    );
    assert_eq!(one.ok(), "");
    assert_eq!(one.stderr.lines().count(), 1, "{}", one.stderr);
    opens_only_with_its_own_key(&s, "staging", &output("staging"));
    let via_env = seal_env(
        &["-w", PATTERN, "--name", "ml-api", "-n", "ml", "secret.yaml"],
        b"",
        s.path(),
        &[("SEAL_ENV", "dev,prod")],
    );
    via_env.ok();
    assert_eq!(via_env.stderr.lines().count(), 2, "{}", via_env.stderr);
}

#[test]
fn a_failure_in_any_environment_leaves_every_file_as_it_was() {
    let s = repository(
        "  badpin:\n    cert: certs/staging/tls.crt\n    fingerprint: 0000000000000000000000000000000000000000000000000000000000000000\n  gone: {cert: certs/gone/tls.crt}\n  nodir: {cert: certs/staging/tls.crt}\n  isdir: {cert: certs/prod/tls.crt}\n",
    );
    // dev's file exists and must keep its content; prod's is new and must not appear.
    s.write(&output("dev"), "previous dev content\n");
    std::fs::create_dir_all(s.file(&output("isdir"))).unwrap();
    std::fs::create_dir_all(s.file("deploy/badpin")).unwrap();
    std::fs::create_dir_all(s.file("deploy/gone")).unwrap();
    let cases = [
        // The second environment's certificate does not match its pin.
        ("dev,badpin,prod", 2, "does not match the pinned"),
        // The second environment's certificate cannot be read.
        ("dev,gone,prod", 3, "certs/gone/tls.crt: cannot read"),
        // The second environment's directory does not exist: its temporary file cannot be made.
        (
            "dev,nodir,prod",
            3,
            "deploy/nodir/ml-api.sealed.yaml: cannot write",
        ),
        // The last target is a directory: dev's and prod's renames are done and must be undone.
        (
            "dev,prod,isdir",
            3,
            "deploy/isdir/ml-api.sealed.yaml: cannot write",
        ),
    ];
    for (envs, code, message) in cases {
        let before = s.snapshot();
        let run = seal(
            &["--env", envs, "-w", PATTERN, "secret.yaml"],
            b"",
            s.path(),
        );
        run.fails(code, message);
        assert!(run.stderr.starts_with("error: "), "{envs}: {}", run.stderr);
        assert!(!run.stderr.contains("wrote"), "{envs}: {}", run.stderr);
        assert_eq!(s.read(&output("dev")), "previous dev content\n", "{envs}");
        assert!(!s.file(&output("prod")).exists(), "{envs}: prod written");
        assert!(s.snapshot() == before, "{envs}: files changed");
    }
    // The same run without the failing environment writes both.
    seal(
        &["--env", "dev,prod", "-w", PATTERN, "secret.yaml"],
        b"",
        s.path(),
    )
    .ok();
    opens_only_with_its_own_key(&s, "dev", &output("dev"));
    opens_only_with_its_own_key(&s, "prod", &output("prod"));
}

#[test]
fn bad_multi_environment_usage_is_refused_before_anything_is_written() {
    let s = repository("");
    s.write(&output("dev"), "previous dev content\n");
    let cases: [(&[&str], &str); 11] = [
        (
            &["--env", "dev,prod", "secret.yaml"],
            "error: --env selects 2 environments (dev, prod) and they cannot share stdout",
        ),
        (
            &["--env", "dev,prod", "-w", "out.yaml", "secret.yaml"],
            "error: -w out.yaml: --env selects 2 environments (dev, prod), so the path needs {env}",
        ),
        (
            &["--cert", "certs/dev/tls.crt", "-w", PATTERN, "secret.yaml"],
            "error: -w deploy/{env}/ml-api.sealed.yaml: {env} needs --env",
        ),
        (
            &["--env", "dev,qa,prod", "-w", PATTERN, "secret.yaml"],
            "is not in",
        ),
        (
            &["--env", "dev,prod,dev", "-w", PATTERN, "secret.yaml"],
            "error: --env dev,prod,dev: environment dev is listed twice",
        ),
        (
            &["--env", "all,dev", "-w", PATTERN, "secret.yaml"],
            "`all` selects every environment and takes no other names",
        ),
        (
            &["--env", "dev,", "-w", PATTERN, "secret.yaml"],
            "an environment name is empty",
        ),
        (
            &[
                "--env",
                "dev,prod",
                "--merge-into",
                "deploy/dev/ml-api.sealed.yaml",
                "secret.yaml",
            ],
            "error: --merge-into updates one file, and --env selects 2 environments (dev, prod)",
        ),
        (
            &[
                "re-encrypt",
                "--key",
                "certs/dev/tls.key",
                "--env",
                "dev,prod",
                "deploy/dev/ml-api.sealed.yaml",
            ],
            "error: --env dev,prod selects 2 environments (dev, prod); this command takes one",
        ),
        (
            &[
                "verify",
                "--env",
                "dev,prod",
                "deploy/dev/ml-api.sealed.yaml",
            ],
            "deploy/dev/ml-api.sealed.yaml: --env selects 2 environments (dev, prod), so each FILE needs {env}",
        ),
        (
            &["raw", "--env", "all", "-n", "ml", "--name", "x"],
            "this command takes one",
        ),
    ];
    for (args, message) in cases {
        let before = s.snapshot();
        let run = seal(args, b"hunter2", s.path());
        run.fails(2, message);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(s.snapshot() == before, "{args:?}: files changed");
    }
    let unknown = seal(
        &["--env", "dev,qa", "-w", PATTERN, "secret.yaml"],
        b"",
        s.path(),
    );
    unknown.fails(2, "environment \"qa\" is not in");
    assert!(
        unknown.stderr.contains("(known: dev, prod, staging)"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn verify_checks_each_environment_file_with_its_own_certificate() {
    let s = repository("");
    seal(
        &["--env", "all", "-w", PATTERN, "secret.yaml"],
        b"",
        s.path(),
    )
    .ok();
    let run = seal(&["verify", "--env", "prod,dev", PATTERN], b"", s.path());
    let lines: Vec<_> = run.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for (line, env) in lines.iter().zip(["prod", "dev"]) {
        assert!(
            line.starts_with(&format!("ok    {}:1 ml/ml-api", output(env))),
            "{line}"
        );
        assert!(line.contains(&fingerprint(&s, env)[..12]), "{line}");
    }
    let keys = "certs/dev/tls.key,certs/staging/tls.key,certs/prod/tls.key";
    let run = seal(
        &["verify", "--env", "all", "--key", keys, PATTERN],
        b"",
        s.path(),
    );
    assert_eq!(run.ok().matches(", all open").count(), 3, "{}", run.stdout);

    // dev's file where prod's belongs: prod's check fails, dev's passes.
    std::fs::copy(s.file(&output("dev")), s.file(&output("prod"))).unwrap();
    let run = seal(&["verify", "--env", "dev,prod", PATTERN], b"", s.path());
    run.fails(1, "1 of 2 checks failed");
    assert!(
        run.stdout.contains(&format!("ok    {}", output("dev"))),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "FAIL  {}:1 ml/ml-api: sealed with certificate",
            output("prod")
        )),
        "{}",
        run.stdout
    );
}
