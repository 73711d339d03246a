//! `seal render`: nested YAML with references in lists and inside strings, key order kept,
//! `secretref+` kept with `--exclude-secret`, JSON in and out, `-w` and `--in-place`.

use std::os::unix::fs::PermissionsExt as _;

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Ci, aws_secret, vault_kv2};

#[tokio::test]
async fn render_resolves_nested_values_and_keeps_structure_and_order() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("password", "pw 1"), ("user", "ml")]).await?;
    let aws = aws_secret(env, r#"{"token":"t0k","cert":"line1\nline2"}"#).await?;
    let values = format!(
        "\
zeta: first
releases:
- name: ml-api
  values:
    db:
      url: postgres://ref+vault://{v2}#/user+:ref+vault://{v2}#/password+@db:5432/ml
      password: ref+vault://{v2}#/password
    tokens:
    - ref+awssecrets://{aws}#/token
    - literal
    - 42
    cert: ref+awssecrets://{aws}#/cert
  review: secretref+vault://{v2}#/password
alpha: last
"
    );
    let file = ci.write("values.yaml", &values);
    let expected = "\
zeta: first
releases:
- name: ml-api
  values:
    db:
      url: postgres://ml:pw 1@db:5432/ml
      password: pw 1
    tokens:
    - t0k
    - literal
    - 42
    cert: |-
      line1
      line2
  review: REVIEW
alpha: last
";
    let run = ci.seal(&["render", &file]);
    assert_eq!(run.ok(), expected.replace("REVIEW", "pw 1"));

    let kept = ci.seal(&["render", "--exclude-secret", &file]);
    assert_eq!(
        kept.ok(),
        expected.replace("REVIEW", &format!("secretref+vault://{v2}#/password"))
    );

    // JSON in, JSON out, order kept; -w writes the file (0600) and prints nothing.
    let json = ci.write(
        "values.json",
        &format!(r#"{{"b":{{"pw":"ref+vault://{v2}#/password"}},"a":[1,"ref+awssecrets://{aws}#/token"]}}"#),
    );
    assert_eq!(ci.seal(&["render", &json, "-w", "out.json"]).ok(), "");
    assert_eq!(
        ci.read("out.json"),
        "{\n  \"b\": {\n    \"pw\": \"pw 1\"\n  },\n  \"a\": [\n    1,\n    \"t0k\"\n  ]\n}\n"
    );
    let mode = std::fs::metadata(ci.file("out.json"))?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Several YAML documents, rewritten in place.
    let stream = ci.write(
        "stream.yaml",
        &format!("a: ref+vault://{v2}#/user\n---\nb: [ref+vault://{v2}#/password]\n"),
    );
    std::fs::set_permissions(&stream, std::fs::Permissions::from_mode(0o644))?;
    assert_eq!(ci.seal(&["render", "--in-place", &stream]).ok(), "");
    assert_eq!(ci.read("stream.yaml"), "a: ml\n---\nb:\n- pw 1\n");
    // It holds values now: readable by its owner only, whatever it was before.
    let mode = std::fs::metadata(&stream)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

#[tokio::test]
async fn a_malformed_reference_is_named_by_file_document_and_path() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let file = ci.write(
        "values.yaml",
        "a: 1\n---\nx:\n  list:\n  - ok\n  - ref+vault://secret/data/x?regoin=eu#/k\n",
    );
    ci.seal(&["render", &file]).fails(
        2,
        "values.yaml: document 2, .x.list[1]: malformed reference at column 27 (query): unknown parameter \"regoin\"",
    );
    Ok(())
}

/// The files in examples/ci resolve as the README says, against secrets seeded at their paths.
#[tokio::test]
async fn the_ci_examples_resolve() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ci");
    let root = env.vault_client(None)?;
    for (path, key, value) in [
        ("ml-api/db", "password", "pw"),
        ("ml-api/registry", "token", "tk"),
    ] {
        let data: std::collections::HashMap<&str, &str> = [(key, value)].into_iter().collect();
        vaultrs::kv2::set(&root, "secret", path, &data).await?;
    }
    let sm = env.secretsmanager().await;
    for (name, text) in [
        ("ci/registry", r#"{"password":"reg"}"#),
        (
            "ml-api/sentry",
            r#"{"dsn":"https://x@sentry","environment":"prod"}"#,
        ),
    ] {
        // Created once per environment; a rerun finds them there.
        let _ = sm
            .create_secret()
            .name(name)
            .secret_string(text)
            .send()
            .await;
    }
    let secrets = examples.join("secrets.yaml").display().to_string();
    assert_eq!(
        ci.seal(&["env", "-f", &secrets, "--flatten"]).ok(),
        "DATABASE_URL=postgres://ml:pw@db.prod.internal:5432/ml\nREGISTRY_PASSWORD=reg\nMODEL_REGISTRY_TOKEN=tk\nSENTRY_DSN=https://x@sentry\nSENTRY_ENVIRONMENT=prod\nDEPLOY_ENV=prod\n"
    );
    let values = examples
        .join("helmfile/values.secrets.yaml")
        .display()
        .to_string();
    assert_eq!(
        ci.seal(&["render", "--exclude-secret", &values]).ok(),
        "db:\n  url: postgres://ml:pw@db.prod.internal:5432/ml\n  password: pw\nregistry:\n  token: secretref+awssecrets://ml-api/registry?region=eu-west-1#/token\nreplicas: 3\n"
    );
    Ok(())
}
