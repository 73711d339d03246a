//! `seal-agent init`: every file written with its mode, templates rendered from values of both
//! providers; any failure exits non-zero and writes nothing.

use std::os::unix::fs::MetadataExt as _;

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Agent, aws_secret, json_str, vault_kv2};

#[tokio::test]
async fn init_writes_every_file_with_its_mode_and_renders_templates() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("user", "ml"), ("password", "p@ss/w0rd")]).await?;
    let aws = aws_secret(env, r#"{"token":"reg-tok"}"#).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets:
  user: ref+vault://{vault}#/user
  password: ref+vault://{vault}#/password
  token: ref+awssecrets://{aws}#/token
files:
  - {{path: "{{dir}}/token", secret: token}}
  - path: "{{dir}}/dsn"
    template: "postgres://{{{{ .user }}}}:{{{{ .password | urlquery }}}}@db:5432/ml"
    mode: "0440"
  - path: "{{dir}}/app.json"
    template: '{{"token": {{{{ .token | quote }}}}}}'
"#
    ));
    agent.run(&["init", "-c", &config]).ok();
    let read = |name: &str| std::fs::read_to_string(agent.file(name)).unwrap();
    assert_eq!(read("token"), "reg-tok");
    assert_eq!(read("dsn"), "postgres://ml:p%40ss%2Fw0rd@db:5432/ml");
    assert_eq!(
        read("app.json"),
        format!(r#"{{"token": {}}}"#, json_str("reg-tok"))
    );
    let mode = |name: &str| std::fs::metadata(agent.file(name)).unwrap().mode() & 0o777;
    assert_eq!(mode("token"), 0o400);
    assert_eq!(mode("dsn"), 0o440);
    assert_eq!(mode("app.json"), 0o400);
    // Nothing but the files, the config and no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(agent.path())?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.json", "config.yaml", "dsn", "token"]);
    Ok(())
}

#[tokio::test]
async fn init_sets_the_owner_when_asked() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("k", "v")]).await?;
    let agent = Agent::new(env);
    // The scratch directory is ours: its owner is the test's user.
    if std::fs::metadata(agent.path())?.uid() != 0 {
        eprintln!("SKIPPED: changing a file's owner needs root");
        return Ok(());
    }
    let config = agent.config(&format!(
        r"
secrets: {{k: 'ref+vault://{vault}#/k'}}
files:
  - {{path: '{{dir}}/both', secret: k, owner: '1234:5678'}}
  - {{path: '{{dir}}/gid', secret: k, owner: ':5678'}}
"
    ));
    agent.run(&["init", "-c", &config]).ok();
    let meta = std::fs::metadata(agent.file("both"))?;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (1234, 5678, 0o400)
    );
    let meta = std::fs::metadata(agent.file("gid"))?;
    assert_eq!((meta.uid(), meta.gid()), (0, 5678));
    Ok(())
}

#[tokio::test]
async fn init_fails_on_a_missing_secret_and_writes_nothing() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("user", "ml")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets:
  user: ref+vault://{vault}#/user
  gone: ref+awssecrets://agent/no-such-secret-7f3a#/k
files:
  - {{path: "{{dir}}/user", secret: user}}
  - {{path: "{{dir}}/gone", secret: gone}}
"#
    ));
    let run = agent.run(&["init", "-c", &config]);
    run.fails(1, "ref+awssecrets://agent/no-such-secret-7f3a#/k");
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    assert!(
        !agent.file("user").exists(),
        "a file was written on failure"
    );
    assert!(!agent.file("gone").exists());
    Ok(())
}

#[tokio::test]
async fn init_fails_on_a_missing_property_and_an_unreachable_provider() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("user", "ml")]).await?;
    let mut agent = Agent::new(env);
    let config = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/password'}}\nfiles: [{{path: '{{dir}}/pw', secret: pw}}]\n"
    ));
    agent.run(&["init", "-c", &config]).fails(1, "password");
    agent.set("VAULT_ADDR", "http://127.0.0.1:9");
    let config = agent.config(&format!(
        "timeout: 1s\nsecrets: {{pw: 'ref+vault://{vault}#/user'}}\nfiles: [{{path: '{{dir}}/pw', secret: pw}}]\n"
    ));
    agent.run(&["init", "-c", &config]).fails(1, "unavailable");
    assert!(!agent.file("pw").exists());
    Ok(())
}
