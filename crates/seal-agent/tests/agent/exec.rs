//! `seal-agent exec`: the child gets the values in its environment, is restarted with the new
//! values when they change (or signalled), receives the signals the agent receives, and the
//! agent exits with its code.

use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use seal_testenv::testenv;

use crate::harness::{Agent, vault_kv2, vault_put, wait_for};

#[tokio::test]
async fn exec_restarts_the_child_with_new_values() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("pw", "first")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        "
secrets: {{pw: 'ref+vault://{vault}#/pw'}}
env: {{DB_PASSWORD: {{secret: pw}}, DSN: {{template: 'db://u:{{{{ .pw }}}}@h'}}}}
refresh: {{interval: 200ms}}
exec: {{onChange: restart, stopTimeout: 5s}}
"
    ));
    let starts = agent.file("starts");
    let script = format!(
        "echo \"$DB_PASSWORD $DSN\" >> {}; while :; do sleep 0.05; done",
        starts.display()
    );
    let mut running = agent.spawn(&["exec", "-c", &config, "--", "sh", "-c", &script]);
    let read = || std::fs::read_to_string(&starts).unwrap_or_default();
    wait_for("the first start", Duration::from_secs(30), || {
        (read() == "first db://u:first@h\n").then_some(())
    });
    // Unchanged refreshes do not restart it.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(read().lines().count(), 1, "{}", read());
    vault_put(env, &vault, &[("pw", "second")]).await?;
    wait_for("the restart", Duration::from_secs(30), || {
        (read() == "first db://u:first@h\nsecond db://u:second@h\n").then_some(())
    });
    // SIGTERM reaches the child, which dies of it; the agent reports it as a shell does.
    kill(running.pid(), Signal::SIGTERM)?;
    assert_eq!(running.wait(Duration::from_secs(10)), 128 + 15);
    Ok(())
}

#[tokio::test]
async fn exec_signals_the_child_on_change_when_asked_and_forwards_signals() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("pw", "first")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{pw: 'ref+vault://{vault}#/pw'}}
files: [{{path: "{{dir}}/pw", secret: pw}}]
refresh: {{interval: 200ms}}
exec: {{onChange: signal, signal: SIGUSR1}}
"#
    ));
    let log = agent.file("child");
    let script = format!(
        "trap 'echo usr1 $(cat {dir}/pw) >> {log}' USR1; trap 'echo hup >> {log}' HUP; \
         trap 'exit 7' TERM; echo up >> {log}; while :; do sleep 0.05; done",
        dir = agent.path().display(),
        log = log.display()
    );
    let mut running = agent.spawn(&["exec", "-c", &config, "--", "sh", "-c", &script]);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the child", Duration::from_secs(30), || {
        read().contains("up").then_some(())
    });
    vault_put(env, &vault, &[("pw", "second")]).await?;
    wait_for("the change signal", Duration::from_secs(30), || {
        read().contains("usr1 second").then_some(())
    });
    kill(running.pid(), Signal::SIGHUP)?;
    wait_for("the forwarded SIGHUP", Duration::from_secs(10), || {
        read().contains("hup").then_some(())
    });
    assert_eq!(
        read().lines().filter(|l| *l == "up").count(),
        1,
        "restarted: {}",
        read()
    );
    kill(running.pid(), Signal::SIGTERM)?;
    assert_eq!(running.wait(Duration::from_secs(10)), 7);
    Ok(())
}

#[tokio::test]
async fn exec_exits_with_the_child_code_and_never_starts_it_on_failure() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("pw", "v")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/pw'}}\nenv: {{PW: {{secret: pw}}}}\n"
    ));
    let run = agent.run(&[
        "exec",
        "-c",
        &config,
        "--",
        "sh",
        "-c",
        "test \"$PW\" = v && exit 7",
    ]);
    assert_eq!(run.status, 7, "{}", run.stderr);
    // The child inherits the agent's environment (VAULT_TOKEN included) unless cleanEnv.
    let script = "test \"$PW\" = v || exit 1; test -n \"$VAULT_TOKEN\" && exit 8; exit 9";
    let run = agent.run(&["exec", "-c", &config, "--", "/bin/sh", "-c", script]);
    assert_eq!(run.status, 8, "{}", run.stderr);
    let clean = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/pw'}}\nenv: {{PW: {{secret: pw}}}}\nexec: {{cleanEnv: true}}\n"
    ));
    let run = agent.run(&["exec", "-c", &clean, "--", "/bin/sh", "-c", script]);
    assert_eq!(run.status, 9, "{}", run.stderr);
    let config = agent.config(&format!(
        "secrets: {{pw: 'ref+vault://{vault}#/missing'}}\nenv: {{PW: {{secret: pw}}}}\n"
    ));
    let marker = agent.file("started");
    let run = agent.run(&[
        "exec",
        "-c",
        &config,
        "--",
        "touch",
        &marker.display().to_string(),
    ]);
    run.fails(1, "missing");
    assert!(!marker.exists(), "the child was started");
    Ok(())
}
