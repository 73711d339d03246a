//! A marker value goes through every command, failing runs included: it may appear only where
//! it was asked for (stdout of `get`, `env`, `render`, the child of `exec`, `$GITHUB_ENV` and
//! its masks), never on stderr, in an error, or in a file nobody asked for. An AppRole secret id
//! given in a reference is treated the same way.

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Ci, aws_secret, vault_kv2};

const MARKER: &str = "MARKER-5e1c0de-must-not-leak";

#[track_caller]
fn clean(what: &str, text: &str) {
    assert!(!text.contains(MARKER), "{what} leaked the marker:\n{text}");
}

#[tokio::test]
async fn the_marker_appears_only_where_asked_for() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("password", MARKER)]).await?;
    let aws = aws_secret(env, &format!(r#"{{"password":"{MARKER}"}}"#)).await?;
    let good = format!("ref+vault://{v2}#/password");
    let env_file = ci.write(
        "env.yaml",
        &format!("A: {good}\nB: ref+awssecrets://{aws}#/password\n"),
    );
    let broken = ci.write(
        "broken.yaml",
        &format!("A: {good}\nB: ref+awssecrets://{aws}#/nope\n"),
    );
    let values = ci.write("values.yaml", &format!("db:\n  password: {good}\n"));
    let github_env = ci.write("github_env", "");
    ci.set("GITHUB_ENV", &github_env);

    // Asked for: on stdout (or the requested file), nothing on stderr.
    for args in [
        vec!["get", good.as_str()],
        vec!["env", "-f", &env_file],
        vec!["env", "-f", &env_file, "--format", "json", "--flatten"],
        vec!["render", &values],
        vec![
            "exec",
            "-f",
            &env_file,
            "--",
            "sh",
            "-c",
            "printf %s \"$A\"",
        ],
    ] {
        let run = ci.seal(&args);
        assert!(run.ok().contains(MARKER), "{args:?}");
        clean(&format!("stderr of {args:?}"), &run.stderr);
    }
    let run = ci.seal(&["env", "-f", &env_file, "--format", "github"]);
    assert!(run.ok().starts_with(&format!("::add-mask::{MARKER}\n")));
    clean("stderr of env --format github", &run.stderr);
    assert!(ci.read("github_env").contains(MARKER));

    // Failing runs: neither stdout nor stderr.
    let mut failing = ci.seal(&["env", "-f", &broken, "--format", "github", "--overwrite"]);
    assert_ne!(failing.status, 0);
    clean("failing env stdout", &failing.stdout);
    clean("failing env stderr", &failing.stderr);
    failing = ci.seal(&["get", &format!("ref+awssecrets://{aws}#/password/deeper")]);
    assert_ne!(failing.status, 0);
    clean(
        "failing get",
        &format!("{}{}", failing.stdout, failing.stderr),
    );
    failing = ci.seal(&["render", "--in-place", &broken]);
    assert_ne!(failing.status, 0);
    clean(
        "failing render",
        &format!("{}{}", failing.stdout, failing.stderr),
    );
    assert!(!ci.read("broken.yaml").contains(MARKER));
    failing = ci.seal(&["exec", "-f", &broken, "--", "true"]);
    assert_ne!(failing.status, 0);
    clean(
        "failing exec",
        &format!("{}{}", failing.stdout, failing.stderr),
    );

    // A secret id in a reference is never echoed, whatever fails.
    let mut ci = Ci::new(env);
    ci.unset("VAULT_TOKEN");
    for reference in [
        format!("ref+vault://{v2}?auth_method=approle&role_id=x&secret_id={MARKER}#/password"),
        format!("ref+vault://{v2}?auth_method=approle&role_id=x&secret_id={MARKER}&oops=1"),
    ] {
        let run = ci.seal(&["get", &reference]);
        assert_eq!(run.status, 2, "{}", run.stderr);
        clean("secret id", &format!("{}{}", run.stdout, run.stderr));
    }
    // SEAL_DEBUG_CALLS prints counts, never keys or values.
    ci.set("VAULT_TOKEN", env.var("VAULT_TOKEN"));
    ci.set("SEAL_DEBUG_CALLS", "1");
    let run = ci.seal(&["get", &good]);
    assert!(
        run.stderr.starts_with("seal: calls: vault:"),
        "{}",
        run.stderr
    );
    clean("call summary", &run.stderr);
    Ok(())
}
