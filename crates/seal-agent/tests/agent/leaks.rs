//! A marker value goes through every path (files, templates, the environment of a child, both
//! endpoint routes, a failing template, a refresh) with debug logging on, and must never appear
//! in the agent's log or metrics.

use std::time::Duration;

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Agent, aws_secret, get, http, vault_kv2, vault_put, wait_for};

const MARKER: &str = "MARKER-7c1e0b5a-never-log-me";

#[tokio::test]
async fn a_marker_value_never_reaches_logs_or_metrics() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("pw", MARKER), ("bad", "%%%not-base64")]).await?;
    let aws = aws_secret(env, &format!(r#"{{"pw":"{MARKER}"}}"#)).await?;
    let mut agent = Agent::new(env);
    agent.set("SEAL_AGENT_LOG", "debug");
    let config = agent.config(&format!(
        r#"
secrets:
  pw: 'ref+vault://{vault}#/pw'
  aws: 'ref+awssecrets://{aws}#/pw'
files:
  - {{path: "{{dir}}/pw", secret: pw}}
  - {{path: "{{dir}}/dsn", template: "db://u:{{{{ .aws }}}}@h"}}
env: {{PW: {{secret: pw}}}}
refresh: {{interval: 200ms}}
server: {{listen: "127.0.0.1:0"}}
"#
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    wait_for("the files", Duration::from_secs(30), || {
        std::fs::read_to_string(agent.file("dsn")).ok()
    });
    assert!(get(&address, "/v1/secrets/pw").body.contains(MARKER));
    let path = format!("/secretsmanager/get?secretId={}", aws.replace('/', "%2F"));
    assert!(get(&address, &path).body.contains(MARKER));
    vault_put(env, &vault, &[("pw", &format!("{MARKER}-2"))]).await?;
    wait_for("the refresh", Duration::from_secs(30), || {
        std::fs::read_to_string(agent.file("pw"))
            .ok()
            .filter(|t| t.ends_with("-2"))
    });
    let metrics = http(&address, "GET", "/metrics", &[])?.body;
    drop(running);

    // An error about the value (a missing property) names the property, not the value.
    let endpoint_only = agent.config(&format!(
        "secrets: {{nokey: 'ref+awssecrets://{aws}#/nope'}}\nserver: {{listen: '127.0.0.1:0'}}\n"
    ));
    let running = agent.spawn(&["run", "-c", &endpoint_only]);
    let missing = get(&running.address(), "/v1/secrets/nokey");
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body.contains("nope"), "{}", missing.body);
    drop(running);

    // A template that fails on the value, and exec with the value in the environment.
    let broken = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/pw'}}\nfiles: [{{path: '{{dir}}/x', template: '{{{{ .pw | b64dec }}}}'}}]\n"
    ));
    let failed = agent.run(&["init", "-c", &broken]);
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    let exec_config = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/pw'}}\nenv: {{PW: {{secret: pw}}}}\n"
    ));
    let exec = agent.run(&["exec", "-c", &exec_config, "--", "true"]);
    assert_eq!(exec.status, 0, "{}", exec.stderr);

    // Every agent log of the test, one after another.
    let mut log = String::new();
    for entry in std::fs::read_dir(agent.path())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            log.push_str(&std::fs::read_to_string(path)?);
        }
    }
    assert!(
        log.contains("files changed"),
        "the log is not the agent's:\n{log}"
    );
    for (what, text) in [
        ("run log", log.as_str()),
        ("metrics", metrics.as_str()),
        ("error answer", missing.body.as_str()),
        ("init stderr", failed.stderr.as_str()),
        ("init stdout", failed.stdout.as_str()),
        ("exec stderr", exec.stderr.as_str()),
    ] {
        assert!(
            !text.contains("MARKER-7c1e"),
            "{what} holds the marker:\n{text}"
        );
    }
    Ok(())
}
