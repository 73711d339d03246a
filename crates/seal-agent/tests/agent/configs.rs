//! Bad configurations and arguments: exit 2 before anything is fetched, naming the field.

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::Agent;

#[tokio::test]
async fn bad_configs_exit_2_naming_the_field() -> Result<()> {
    let env = testenv!();
    let agent = Agent::new(env);
    let base = "secrets: {a: 'ref+vault://secret/data/x#/k'}\n";
    let cases = [
        ("fils: []", "fils"),
        ("files: [{path: /tmp/x, secret: a, mdoe: 1}]", "files[0]"),
        ("files: [{path: /tmp/x, secret: b}]", "files[0].secret"),
        (
            "files: [{path: /tmp/x, secret: a, mode: 'rw'}]",
            "files[0].mode",
        ),
        (
            "files: [{path: /tmp/x, template: '{{ .nope }}'}]",
            "files[0].template",
        ),
        ("refresh: {interval: often}", "refresh.interval"),
        ("onChange: {signal: SIGHUP}", "onChange"),
        ("server: {listen: '0.0.0.0:2773'}", "server.listen"),
        ("secrets: {b: 'ref+sops://x'}", "secrets.b"),
    ];
    for (text, field) in cases {
        let text = if text.starts_with("secrets:") {
            text.to_owned()
        } else {
            format!("{base}{text}")
        };
        let config = agent.config(&text);
        for mode in ["init", "run"] {
            let run = agent.run(&[mode, "-c", &config]);
            run.fails(2, field);
        }
    }
    let missing = agent.run(&["init", "-c", "/nonexistent/config.yaml"]);
    missing.fails(2, "/nonexistent/config.yaml");
    // clap's own usage errors are 2 as well.
    assert_eq!(agent.run(&["init"]).status, 2);
    assert_eq!(agent.run(&["exec", "-c", "x"]).status, 2);
    Ok(())
}

#[tokio::test]
async fn the_endpoint_refuses_to_start_without_a_token() -> Result<()> {
    let env = testenv!();
    let mut agent = Agent::new(env);
    agent.unset("SEAL_AGENT_TOKEN");
    let config = agent.config("server: {listen: '127.0.0.1:0'}\n");
    agent.run(&["run", "-c", &config]).fails(2, "no token");
    agent.set("SEAL_AGENT_TOKEN", "file:///nonexistent/token");
    agent
        .run(&["run", "-c", &config])
        .fails(2, "cannot read the token file");
    Ok(())
}

#[tokio::test]
async fn help_shows_an_example_for_each_subcommand() -> Result<()> {
    let env = testenv!();
    let agent = Agent::new(env);
    for mode in ["init", "run", "exec"] {
        let run = agent.run(&[mode, "--help"]);
        run.ok();
        assert!(
            run.stdout.contains(&format!("seal-agent {mode} -c")),
            "{mode}: {}",
            run.stdout
        );
    }
    Ok(())
}
