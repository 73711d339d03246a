//! `seal get` and every `seal env` format byte for byte, with values from OpenBao (KV v1 and v2)
//! and moto; GitHub masking before any value; flattening; the overwrite guard.

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Ci, TRICKY, aws_secret, json_str, pipe, vault_kv1, vault_kv2};

/// An env file over one KV v2 secret, one KV v1 secret and one AWS JSON secret.
async fn setup(ci: &Ci) -> Result<String> {
    let env = seal_testenv::TestEnv::get().expect("checked by the caller");
    let v2 = vault_kv2(env, &[("password", TRICKY), ("user", "ml")]).await?;
    let v1 = vault_kv1(env, &[("token", "tok=1")]).await?;
    let aws = aws_secret(
        env,
        &format!(
            r#"{{"user":"ml-ü","password":{},"tls":{{"ca-file":"x"}},"1st key":"v"}}"#,
            json_str(TRICKY)
        ),
    )
    .await?;
    Ok(ci.write(
        "env.yaml",
        &format!(
            "PW: ref+vault://{v2}#/password\nTOKEN: ref+vault://{v1}#/token\nURL: postgres://ref+awssecrets://{aws}#/user+:x@db\nPLAIN: just=text\n"
        ),
    ))
}

#[tokio::test]
async fn get_prints_values_in_order_and_json_on_request() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("password", TRICKY), ("user", "ml")]).await?;
    let aws = aws_secret(env, "plain-aws").await?;
    let pw = format!("ref+vault://{v2}#/password");
    // `#/` is the whole secret (without a fragment the last segment would be a key, as in vals).
    let whole = format!("ref+vault://{v2}#/");
    let plain = format!("ref+awssecrets://{aws}");
    let run = ci.seal(&["get", &pw, &plain, &pw]);
    assert_eq!(run.ok(), format!("{TRICKY}\nplain-aws\n{TRICKY}\n"));
    let run = ci.seal(&["get", "-o", "json", &whole, &plain]);
    assert_eq!(
        run.ok(),
        format!(
            "{{\"password\":{},\"user\":\"ml\"}}\n\"plain-aws\"\n",
            json_str(TRICKY)
        )
    );
    Ok(())
}

#[tokio::test]
async fn env_formats_are_exact() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let file = setup(&ci).await?;
    let run = |format: &str| ci.seal(&["env", "-f", &file, "--format", format]);

    assert_eq!(
        run("dotenv").ok(),
        "PW=\"l1 'q' \\\"dq\\\" a=b $HOME \\\\x\\nünï €\\n\"\nTOKEN=tok=1\nURL='postgres://ml-ü:x@db'\nPLAIN=just=text\n"
    );
    assert_eq!(
        run("shell").ok(),
        "export PW='l1 '\\''q'\\'' \"dq\" a=b $HOME \\x\nünï €\n'\nexport TOKEN='tok=1'\nexport URL='postgres://ml-ü:x@db'\nexport PLAIN='just=text'\n"
    );
    assert_eq!(
        run("json").ok(),
        format!(
            "{{\n  \"PW\": {},\n  \"TOKEN\": \"tok=1\",\n  \"URL\": \"postgres://ml-ü:x@db\",\n  \"PLAIN\": \"just=text\"\n}}\n",
            json_str(TRICKY)
        )
    );
    run("gitlab").fails(2, "PW: the value has several lines");
    Ok(())
}

#[tokio::test]
async fn shell_and_dotenv_outputs_read_back_as_the_values() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let file = setup(&ci).await?;
    let shell = ci.seal(&["env", "-f", &file, "--format", "shell"]);
    let script = format!("{}printf '%s' \"$PW\"", shell.ok());
    assert_eq!(pipe("sh", &[], &script), TRICKY);

    // python-dotenv (in the test environment's virtualenv) reads the dotenv output back.
    let dotenv = ci.seal(&["env", "-f", &file]);
    let cache = std::env::var_os("SEAL_CACHE_DIR").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/seal-dev")
        },
        std::path::PathBuf::from,
    );
    let venv_python = std::fs::read_dir(cache).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/python"))
            .find(|p| p.exists() && p.to_string_lossy().contains("openbao"))
    });
    if let Some(python) = venv_python {
        let read = pipe(
            &python.display().to_string(),
            &[
                "-c",
                "import io,json,sys; from dotenv import dotenv_values; print(json.dumps(dotenv_values(stream=io.StringIO(sys.stdin.read()), interpolate=False)))",
            ],
            dotenv.ok(),
        );
        let read: serde_json::Value = serde_json::from_str(&read)?;
        assert_eq!(read["PW"], TRICKY);
        assert_eq!(read["URL"], "postgres://ml-ü:x@db");
        assert_eq!(read["TOKEN"], "tok=1");
    }
    Ok(())
}

#[tokio::test]
async fn gitlab_report_is_key_value_lines() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("a", "x y='z' \"q\" ü=1")]).await?;
    let file = ci.write("env.yaml", &format!("A: ref+vault://{v2}#/a\n"));
    let run = ci.seal(&["env", "-f", &file, "--format", "gitlab", "-w", "deploy.env"]);
    assert_eq!(run.ok(), "");
    assert_eq!(ci.read("deploy.env"), "A=x y='z' \"q\" ü=1\n");
    Ok(())
}

#[tokio::test]
async fn github_masks_every_line_first_then_appends_heredocs() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let file = setup(&ci).await?;
    let github_env = ci.write("github_env", "EARLIER=1\n");
    ci.set("GITHUB_ENV", &github_env);
    let run = ci.seal(&["env", "-f", &file, "--format", "github"]);
    // stdout holds nothing but masks, one per non-blank line of each value from a reference,
    // and the user interpolated into the URL on its own too (each line once).
    assert_eq!(
        run.ok(),
        "::add-mask::l1 'q' \"dq\" a=b $HOME \\x\n::add-mask::ünï €\n::add-mask::tok=1\n::add-mask::postgres://ml-ü:x@db\n::add-mask::ml-ü\n"
    );
    assert!(!run.stderr.contains("l1 'q'"), "{}", run.stderr);
    let written = ci.read("github_env");
    let rest = written.strip_prefix("EARLIER=1\nPW<<").expect(&written);
    let (delimiter, rest) = rest.split_once('\n').unwrap();
    assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() > 30);
    assert_eq!(
        rest,
        format!("{TRICKY}\n{delimiter}\nTOKEN=tok=1\nURL=postgres://ml-ü:x@db\nPLAIN=just=text\n")
    );
    // A second run picks another delimiter.
    ci.seal(&["env", "-f", &file, "--format", "github", "--overwrite"])
        .ok();
    let again = ci.read("github_env");
    assert_eq!(again.matches(delimiter).count(), 2, "{again}");
    Ok(())
}

#[tokio::test]
async fn flatten_names_json_keys_as_the_aws_action_does() -> Result<()> {
    let env = testenv!();
    let ci = Ci::new(env);
    let aws = aws_secret(
        env,
        r#"{"user":"ml","db.host":"h","tls":{"ca-file":"x"},"1st":"y","ports":[1,2]}"#,
    )
    .await?;
    let file = ci.write(
        "env.yaml",
        &format!("db: ref+awssecrets://{aws}\nPLAIN: ref+awssecrets://{aws}#/user\n"),
    );
    let run = ci.seal(&["env", "-f", &file, "--flatten", "--format", "json"]);
    assert_eq!(
        run.ok(),
        "{\n  \"DB_USER\": \"ml\",\n  \"DB_DB_HOST\": \"h\",\n  \"DB_TLS_CA_FILE\": \"x\",\n  \"DB_1ST\": \"y\",\n  \"DB_PORTS\": \"[1,2]\",\n  \"PLAIN\": \"ml\"\n}\n"
    );
    Ok(())
}

#[tokio::test]
async fn an_existing_variable_is_not_overwritten_unless_asked() -> Result<()> {
    let env = testenv!();
    let mut ci = Ci::new(env);
    let v2 = vault_kv2(env, &[("a", "new")]).await?;
    let file = ci.write("env.yaml", &format!("PW: ref+vault://{v2}#/a\n"));
    ci.set("PW", "old");
    ci.seal(&["env", "-f", &file])
        .fails(2, "PW: already set in the environment");
    assert_eq!(
        ci.seal(&["env", "-f", &file, "--overwrite"]).ok(),
        "PW=new\n"
    );
    Ok(())
}
