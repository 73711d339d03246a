//! `seal exec`: values reach the child's environment (inherited or clean), the child's exit
//! code is seal's, signals are passed on, and a failing reference starts nothing.

use std::io::{BufRead as _, BufReader};
use std::time::{Duration, Instant};

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Ci, TRICKY, vault_kv2};

#[tokio::test]
async fn exec_passes_values_and_the_exit_code() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("password", TRICKY)]).await?;
    let file = ci.write("env.yaml", &format!("PW: ref+vault://{v2}#/password\n"));
    ci.set("INHERITED", "yes");
    let run = ci.seal(&[
        "exec",
        "-f",
        &file,
        "--",
        "sh",
        "-c",
        "printf '%s|%s' \"$PW\" \"$INHERITED\"; exit 7",
    ]);
    assert_eq!(run.status, 7, "{}", run.stderr);
    assert_eq!(run.stdout, format!("{TRICKY}|yes"));
    assert_eq!(run.stderr, "");

    // --clean-env: only the file's variables (no PATH either).
    let clean = ci.seal(&["exec", "-f", &file, "--clean-env", "--", "/usr/bin/env"]);
    assert_eq!(clean.ok(), format!("PW={TRICKY}\n"));
    Ok(())
}

#[tokio::test]
async fn a_failing_reference_starts_nothing_and_a_missing_command_exits_3() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let marker = ci.file("started");
    let file = ci.write(
        "env.yaml",
        "PW: ref+vault://secret/data/ci/does-not-exist#/k\n",
    );
    let script = format!("touch {}", marker.display());
    ci.seal(&["exec", "-f", &file, "--", "sh", "-c", &script])
        .fails(2, "not found");
    assert!(!marker.exists());

    let v2 = vault_kv2(env, &[("k", "v")]).await?;
    let file = ci.write("ok.yaml", &format!("PW: ref+vault://{v2}#/k\n"));
    ci.seal(&["exec", "-f", &file, "--", "/no/such/command"])
        .fails(3, "cannot run /no/such/command");
    Ok(())
}

#[tokio::test]
async fn sigterm_is_passed_on_to_the_child() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("k", "v")]).await?;
    let file = ci.write("env.yaml", &format!("PW: ref+vault://{v2}#/k\n"));
    let mut child = ci
        .command(&[
            "exec",
            "-f",
            &file,
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut ready)?;
    assert_eq!(ready, "ready\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "seal exec did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(42));
    Ok(())
}
