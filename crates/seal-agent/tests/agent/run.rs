//! `seal-agent run`: a refresh after an upstream change rewrites the file atomically (a reader
//! polling all the while only ever sees a whole old or a whole new file), keeps its mode, and
//! signals the app, by PID file or by process name.

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use seal_testenv::{testenv, unique_name};

use crate::harness::{Agent, TOKEN, http, metric, vault_kv2, vault_put, wait_for};

/// An app that appends a line to `marker` at each SIGUSR1, started as `program` (a symlink to
/// sh, so it has a name of its own for processName).
fn app(agent: &Agent, program: &str, marker: &str) -> App {
    let link = agent.file(program);
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    let marker = agent.file(marker);
    let child = std::process::Command::new(&link)
        .arg("-c")
        .arg(format!(
            "trap 'echo usr1 >> {}' USR1; echo ready >> {}; while :; do sleep 0.05; done",
            marker.display(),
            marker.display()
        ))
        .spawn()
        .unwrap();
    let app = App(child);
    wait_for("the app to set its trap", Duration::from_secs(10), || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|t| t.contains("ready"))
    });
    app
}

/// The app, killed when dropped.
struct App(std::process::Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn refresh_rewrites_atomically_keeps_the_mode_and_signals_the_pid_file() -> Result<()> {
    let env = testenv!();
    // Large values make a torn read likely if the write were not atomic.
    let old = "A".repeat(256 * 1024);
    let new = "B".repeat(300 * 1024);
    let vault = vault_kv2(env, &[("blob", &old)]).await?;
    let agent = Agent::new(env);
    let app = app(&agent, "pidapp", "signals");
    std::fs::write(agent.file("app.pid"), app.0.id().to_string())?;
    let config = agent.config(&format!(
        r#"
secrets: {{blob: 'ref+vault://{vault}#/blob'}}
files: [{{path: "{{dir}}/blob", secret: blob}}]
refresh: {{interval: 200ms, jitter: 0.2}}
onChange: {{signal: SIGUSR1, pidFile: "{{dir}}/app.pid"}}
"#
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let path = agent.file("blob");
    wait_for("the first write", Duration::from_secs(30), || {
        std::fs::read_to_string(&path).ok().filter(|t| *t == old)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, path) = (stop.clone(), reads.clone(), path.clone());
        let (old, new) = (old.clone(), new.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text == old || text == new,
                    "torn read: {} bytes",
                    text.len()
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    vault_put(env, &vault, &[("blob", &new)]).await?;
    wait_for("the rewrite", Duration::from_secs(30), || {
        std::fs::read_to_string(&path).ok().filter(|t| *t == new)
    });
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw only whole files");
    assert!(reads.load(Ordering::Relaxed) > 10);
    assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o400);
    // The first write and the rewrite each signalled once; unchanged refreshes signal nobody.
    let signals = || {
        std::fs::read_to_string(agent.file("signals"))
            .unwrap_or_default()
            .matches("usr1")
            .count()
    };
    wait_for("the signal", Duration::from_secs(10), || {
        (signals() >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        signals() <= 2,
        "signalled on unchanged refreshes: {}",
        signals()
    );
    assert!(running.log().contains("signalled"), "{}", running.log());
    Ok(())
}

#[tokio::test]
async fn a_change_signals_processes_by_name_and_sigterm_stops_the_agent() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("k", "one")]).await?;
    let agent = Agent::new(env);
    let name = unique_name("app").replace('-', "");
    let _app = app(&agent, &name, "signals");
    let config = agent.config(&format!(
        r#"
secrets: {{k: 'ref+vault://{vault}#/k'}}
files: [{{path: "{{dir}}/k", secret: k, mode: "0600"}}]
refresh: {{interval: 200ms}}
onChange: {{signal: USR1, processName: {name}}}
"#
    ));
    // The file is there already with the current value: the start signals nobody.
    std::fs::write(agent.file("k"), "one")?;
    let mut running = agent.spawn(&["run", "-c", &config]);
    std::thread::sleep(Duration::from_millis(600));
    let signals = || {
        std::fs::read_to_string(agent.file("signals"))
            .unwrap_or_default()
            .matches("usr1")
            .count()
    };
    assert_eq!(signals(), 0, "signalled without a change");
    vault_put(env, &vault, &[("k", "two")]).await?;
    wait_for("the signal by name", Duration::from_secs(30), || {
        (signals() == 1).then_some(())
    });
    assert_eq!(std::fs::read_to_string(agent.file("k"))?, "two");
    assert_eq!(std::fs::metadata(agent.file("k"))?.mode() & 0o777, 0o600);
    nix::sys::signal::kill(running.pid(), nix::sys::signal::Signal::SIGTERM)?;
    assert_eq!(running.wait(Duration::from_secs(10)), 0);
    Ok(())
}

#[tokio::test]
async fn an_on_change_command_runs_after_the_write() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("k", "one")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{k: 'ref+vault://{vault}#/k'}}
files: [{{path: "{{dir}}/k", secret: k}}]
refresh: {{interval: 200ms}}
onChange: {{command: [sh, -c, 'cat {{dir}}/k >> {{dir}}/seen']}}
"#
    ));
    let _running = agent.spawn(&["run", "-c", &config]);
    wait_for("the first command", Duration::from_secs(30), || {
        std::fs::read_to_string(agent.file("seen"))
            .ok()
            .filter(|t| t == "one")
    });
    vault_put(env, &vault, &[("k", "two")]).await?;
    wait_for("the second command", Duration::from_secs(30), || {
        std::fs::read_to_string(agent.file("seen"))
            .ok()
            .filter(|t| t == "onetwo")
    });
    Ok(())
}

#[tokio::test]
async fn the_metrics_listener_counts_refreshes_and_serves_nothing_else() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("k", "v")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{k: 'ref+vault://{vault}#/k'}}
files: [{{path: "{{dir}}/k", secret: k}}]
refresh: {{interval: 100ms, jitter: 0}}
metrics: {{listen: "127.0.0.1:0"}}
"#
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.listening("metrics");
    let text = wait_for("three refreshes", Duration::from_secs(30), || {
        let text = http(&address, "GET", "/metrics", &[]).ok()?.body;
        (metric(&text, "seal_agent_refreshes_total{result=\"success\"}") >= 3).then_some(text)
    });
    assert_eq!(metric(&text, "seal_agent_file_writes_total"), 1, "{text}");
    assert!(
        metric(
            &text,
            "seal_agent_provider_api_calls_total{provider=\"vault\",call=\"read\",status=\"success\"}"
        ) >= 3,
        "{text}"
    );
    assert_eq!(http(&address, "GET", "/ping", &[])?.status, 200);
    assert_eq!(
        http(&address, "GET", "/v1/secrets/k", &[("X-Seal-Token", TOKEN)])?.status,
        404
    );
    assert_eq!(http(&address, "POST", "/metrics", &[])?.status, 405);
    Ok(())
}

/// Finding 12: what a workload sharing the volume can plant at an output path. A FIFO nobody
/// writes, a link to `/dev/zero` and a link to another file, there before the start and again
/// after the first write: the agent replaces each with the value (never writing through the
/// link), keeps answering `/ping`, and stops on SIGTERM. The deadlines only turn a hang into a
/// failure.
#[tokio::test]
async fn a_fifo_or_a_link_at_an_output_path_is_replaced_and_never_hangs_the_agent() -> Result<()> {
    let env = testenv!();
    let vault = vault_kv2(env, &[("k", "one")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{k: 'ref+vault://{vault}#/k'}}
files:
  - {{path: "{{dir}}/fifo", secret: k}}
  - {{path: "{{dir}}/zero", secret: k}}
  - {{path: "{{dir}}/linked", secret: k}}
refresh: {{interval: 100ms, jitter: 0}}
metrics: {{listen: "127.0.0.1:0"}}
"#
    ));
    let victim = agent.file("victim");
    std::fs::write(&victim, "not the agent's")?;
    let outputs = ["fifo", "zero", "linked"].map(|name| agent.file(name));
    // Each entry is made beside its target and renamed over it, so that a refresh running at
    // the same moment never finds the path missing.
    let plant = || {
        let planted = |target: &std::path::Path| target.with_extension("plant");
        let made = std::process::Command::new("mkfifo")
            .arg(planted(&outputs[0]))
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        std::os::unix::fs::symlink("/dev/zero", planted(&outputs[1])).unwrap();
        std::os::unix::fs::symlink(&victim, planted(&outputs[2])).unwrap();
        for path in &outputs {
            std::fs::rename(planted(path), path).unwrap();
        }
    };
    let replaced = |value: &str| {
        outputs.iter().all(|path| {
            std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
                && std::fs::read_to_string(path).is_ok_and(|text| text == value)
        })
    };

    plant();
    let mut running = agent.spawn(&["run", "-c", &config]);
    let address = running.listening("metrics");
    wait_for(
        "the planted entries replaced",
        Duration::from_secs(30),
        || replaced("one").then_some(()),
    );
    assert_eq!(http(&address, "GET", "/ping", &[])?.status, 200);

    // Planted again under a running agent, with a new value to write: the refresh compares
    // against whatever is there, and must neither wait on it nor follow it.
    plant();
    vault_put(env, &vault, &[("k", "two")]).await?;
    wait_for(
        "the entries replaced again",
        Duration::from_secs(30),
        || replaced("two").then_some(()),
    );
    // And with the value unchanged: compared, found different, replaced.
    plant();
    wait_for(
        "the unchanged value rewritten",
        Duration::from_secs(30),
        || replaced("two").then_some(()),
    );
    assert_eq!(http(&address, "GET", "/ping", &[])?.status, 200);
    assert_eq!(
        std::fs::read_to_string(&victim)?,
        "not the agent's",
        "written through the link"
    );
    nix::sys::signal::kill(running.pid(), nix::sys::signal::Signal::SIGTERM)?;
    assert_eq!(
        running.wait(Duration::from_secs(10)),
        0,
        "{}",
        running.log()
    );
    Ok(())
}
