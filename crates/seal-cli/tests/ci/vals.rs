//! Differential tests against vals itself: v0.46.1, the version helmfile v1.8.0 pins, built by
//! `cargo xtask peers` from helmfile's module graph and found through `SEAL_VALS`. `vals get` and
//! `seal get` resolve the same references, `vals eval` and `seal render` the same documents,
//! with the same environment, against the same OpenBao and moto; the outputs are compared,
//! failures included (a missing secret, key or version, a path through a value that is not a
//! map). Where seal deliberately differs, the case says how each tool answers and why, so a
//! change on either side fails here (README, Secrets in CI, lists the differences).
//!
//! Without vals the tests fail when peers are required (`cargo xtask test`, CI) and are skipped
//! with a message otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;
use seal_testenv::{TestEnv, testenv, unique_name};
use serde_json::{Value, json};

use crate::harness::Ci;

/// vals from `SEAL_VALS` (see [`seal_testenv::peer`]).
fn vals_binary() -> Option<PathBuf> {
    seal_testenv::peer("SEAL_VALS", "vals v0.46.1 (`cargo xtask peers` builds it)")
}

/// How one tool answered: a value (stdout) or a failure (its stderr).
#[derive(Debug)]
enum Answer {
    Value(String),
    Failed(String),
}

/// What a case expects of the two tools.
enum Expect {
    /// The same value, or both fail.
    Same,
    /// seal deliberately differs: what each prints (a value) or a word of its error.
    Differs { vals: Want, seal: Want },
}

enum Want {
    Value(&'static str),
    Fails(&'static str),
}

fn run(program: &Path, args: &[&str], ci: &Ci) -> Answer {
    let output = Command::new(program)
        .args(args)
        .current_dir(ci.path())
        .env_clear()
        .envs(ci.vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Answer::Value(stdout)
    } else {
        assert!(stdout.is_empty(), "{args:?}: output on failure: {stdout}");
        Answer::Failed(stderr)
    }
}

fn vals_get(vals: &Path, ci: &Ci, reference: &str) -> Answer {
    run(vals, &["get", "-s", reference], ci)
}

/// `seal get`, its one trailing newline dropped (vals prints none).
fn seal_get(ci: &Ci, reference: &str) -> Answer {
    match run(
        Path::new(env!("CARGO_BIN_EXE_seal")),
        &["get", reference],
        ci,
    ) {
        Answer::Value(mut text) => {
            assert_eq!(text.pop(), Some('\n'), "{reference}");
            Answer::Value(text)
        }
        failed @ Answer::Failed(_) => failed,
    }
}

#[track_caller]
fn check(what: &str, want: &Want, got: &Answer) {
    match (want, got) {
        (Want::Value(v), Answer::Value(g)) => assert_eq!(g, v, "{what}"),
        (Want::Fails(needle), Answer::Failed(e)) => {
            assert!(e.contains(needle), "{what}: error lacks {needle:?}: {e}");
        }
        _ => panic!("{what}: got {got:?}"),
    }
}

#[track_caller]
fn compare(what: &str, expect: &Expect, vals: &Answer, seal: &Answer) {
    match expect {
        Expect::Same => match (vals, seal) {
            (Answer::Value(v), Answer::Value(s)) => assert_eq!(s, v, "{what}: seal vs vals"),
            (Answer::Failed(_), Answer::Failed(_)) => {}
            _ => panic!("{what}: vals {vals:?}, seal {seal:?}"),
        },
        Expect::Differs { vals: v, seal: s } => {
            check(&format!("{what} (vals)"), v, vals);
            check(&format!("{what} (seal)"), s, seal);
        }
    }
}

/// Writes `data` as a new version of a KV v2 secret at `secret/<path>`.
async fn kv2(env: &TestEnv, path: &str, data: &Value) -> Result<()> {
    let data: BTreeMap<String, Value> = serde_json::from_value(data.clone())?;
    vaultrs::kv2::set(&env.vault_client(None)?, "secret", path, &data).await?;
    Ok(())
}

async fn aws(env: &TestEnv, text: &str) -> Result<String> {
    let name = format!("ci/{}", unique_name("vals"));
    env.secretsmanager()
        .await
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await?;
    Ok(name)
}

/// The secrets both tools read: a KV v2 secret with two versions, a KV v1 secret, and AWS
/// secrets holding JSON, YAML and plain text.
struct Seeded {
    v2: String,
    v1: String,
    aws_json: String,
    aws_json_arn: String,
    aws_json_version: String,
    aws_yaml: String,
    aws_plain: String,
}

const PASSWORD: &str = "p@ss w0rd-ü";

async fn seed(env: &TestEnv) -> Result<Seeded> {
    let v2 = format!("ci/{}", unique_name("vals"));
    kv2(env, &v2, &json!({"password": "old"})).await?;
    kv2(
        env,
        &v2,
        &json!({"password": PASSWORD, "port": 5432, "flag": true, "nested": {"a": "b"},
                "list": [1, "x"], "nul": null, "a/b": "slash"}),
    )
    .await?;
    let v1 = format!("ci/{}", unique_name("vals"));
    let data = std::collections::HashMap::from([("password", "v1-pw")]);
    vaultrs::kv1::set(&env.vault_client(None)?, "kv", &v1, &data).await?;
    let aws_json = format!("ci/{}", unique_name("vals"));
    let created = env
        .secretsmanager()
        .await
        .create_secret()
        .name(&aws_json)
        .secret_string(r#"{"user":"ml","password":"aws pw","port":5432,"nested":{"a":"b"}}"#)
        .send()
        .await?;
    Ok(Seeded {
        v2: format!("secret/{v2}"),
        v1: format!("kv/{v1}"),
        aws_json,
        aws_json_arn: created.arn().unwrap_or_default().to_owned(),
        aws_json_version: created.version_id().unwrap_or_default().to_owned(),
        aws_yaml: aws(env, "user: yml\nport: 1\n").await?,
        aws_plain: aws(env, "just text").await?,
    })
}

#[tokio::test]
async fn get_answers_as_vals_does() -> Result<()> {
    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let ci = Ci::new(env);
    let s = seed(env).await?;
    let (v2, v1) = (&s.v2, &s.v1);
    let mut cases: Vec<(String, Expect)> = vec![
        // KV v2 found from the mount, without /data/.
        (format!("ref+vault://{v2}#/password"), Expect::Same),
        (format!("ref+vault://{v2}#/port"), Expect::Same),
        (format!("ref+vault://{v2}#/flag"), Expect::Same),
        (format!("ref+vault://{v2}#/nested/a"), Expect::Same),
        // Without a fragment, the last segment is the key.
        (format!("ref+vault://{v2}/password"), Expect::Same),
        (format!("ref+vault://{v2}/port?version=2"), Expect::Same),
        (format!("ref+vault://{v1}/password"), Expect::Same),
        (
            format!("ref+vault://{v2}?version=1#/password"),
            Expect::Same,
        ),
        (format!("ref+vault://{v1}#/password"), Expect::Same),
        (
            format!("ref+awssecrets://{}#/password", s.aws_json),
            Expect::Same,
        ),
        (
            format!("ref+awssecrets://{}#/port", s.aws_json),
            Expect::Same,
        ),
        (format!("ref+awssecrets://{}", s.aws_json), Expect::Same),
        // By ARN, by stage, by version id.
        (
            format!("ref+awssecrets://{}#/password", s.aws_json_arn),
            Expect::Same,
        ),
        (
            format!(
                "ref+awssecrets://{}?version_stage=AWSCURRENT#/password",
                s.aws_json
            ),
            Expect::Same,
        ),
        (
            format!(
                "ref+awssecrets://{}?version_id={}#/password",
                s.aws_json, s.aws_json_version
            ),
            Expect::Same,
        ),
        (
            format!(
                "ref+awssecrets://{}?version_stage=AWSPREVIOUS#/password",
                s.aws_json
            ),
            Expect::Same,
        ),
        (
            format!("ref+awssecrets://{}#/user", s.aws_yaml),
            Expect::Same,
        ),
        (format!("ref+awssecrets://{}", s.aws_plain), Expect::Same),
        // Failures: a missing secret or version, a path through a string, text with a fragment.
        (format!("ref+vault://{v2}-missing#/password"), Expect::Same),
        (
            format!("ref+vault://{v2}?version=9#/password"),
            Expect::Same,
        ),
        (format!("ref+vault://{v2}#/password/x"), Expect::Same),
        (format!("ref+vault://{v2}/missing"), Expect::Same),
        (
            format!("ref+awssecrets://{}-missing", s.aws_json),
            Expect::Same,
        ),
        (
            format!("ref+awssecrets://{}#/password/x", s.aws_json),
            Expect::Same,
        ),
        (format!("ref+awssecrets://{}#/x", s.aws_plain), Expect::Same),
    ];
    cases.extend(deliberate_differences(&s));
    for (reference, expect) in &cases {
        let vals_answer = vals_get(&vals, &ci, reference);
        let seal_answer = seal_get(&ci, reference);
        if let Answer::Failed(e) = &seal_answer {
            assert!(
                !e.contains(PASSWORD),
                "{reference}: the value in an error: {e}"
            );
        }
        compare(reference, expect, &vals_answer, &seal_answer);
    }
    Ok(())
}

/// The references `seal get` deliberately answers otherwise than `vals get`, each with why.
fn deliberate_differences(s: &Seeded) -> Vec<(String, Expect)> {
    let v2 = &s.v2;
    let v2_data = v2.replacen("secret/", "secret/data/", 1);
    vec![
        // vals puts /data/ after a KV v2 mount itself, so it doubles a written one; seal's
        // references had /data/ before, and they keep working.
        (
            format!("ref+vault://{v2_data}#/password"),
            Expect::Differs {
                vals: Want::Fails("no secret found for path"),
                seal: Want::Value(PASSWORD),
            },
        ),
        // `vals get` prints Go's `<nil>` for a missing key (`vals eval` fails); seal fails.
        (
            format!("ref+vault://{v2}#/missing"),
            Expect::Differs {
                vals: Want::Value("<nil>"),
                seal: Want::Fails("no such property"),
            },
        ),
        // A map: Go's formatting in vals, JSON in seal.
        (
            format!("ref+vault://{v2}#/nested"),
            Expect::Differs {
                vals: Want::Value("map[a:b]"),
                seal: Want::Value(r#"{"a":"b"}"#),
            },
        ),
        // vals indexes maps only; seal's fragment is a JSON pointer, arrays included.
        (
            format!("ref+vault://{v2}#/list/0"),
            Expect::Differs {
                vals: Want::Fails("expected a map"),
                seal: Want::Value("1"),
            },
        ),
        // `#/`: the whole secret as JSON in seal; vals reads the last segment as a key, as if
        // there were no fragment.
        (
            format!("ref+vault://{v2}#/"),
            Expect::Differs {
                vals: Want::Fails("no secret found for path"),
                seal: Want::Value(
                    r#"{"a/b":"slash","flag":true,"list":[1,"x"],"nested":{"a":"b"},"nul":null,"password":"p@ss w0rd-ü","port":5432}"#,
                ),
            },
        ),
        // A JSON null: Go's `<nil>` in vals, the empty string in seal (as ESO renders it).
        (
            format!("ref+vault://{v2}#/nul"),
            Expect::Differs {
                vals: Want::Value("<nil>"),
                seal: Want::Value(""),
            },
        ),
        // `~1` is a JSON pointer escape in seal; vals splits on `/` and looks up `a~1b`.
        (
            format!("ref+vault://{v2}#/a~1b"),
            Expect::Differs {
                vals: Want::Value("<nil>"),
                seal: Want::Value("slash"),
            },
        ),
        // A version of a KV v1 secret: Vault ignores it for vals; seal refuses it.
        (
            format!("ref+vault://{}?version=1#/password", s.v1),
            Expect::Differs {
                vals: Want::Value("v1-pw"),
                seal: Want::Fails("KV v1 keeps no versions"),
            },
        ),
        // A parameter neither knows: vals ignores it, seal refuses it (a typo would read
        // something else).
        (
            format!("ref+vault://{v2}?verison=1#/password"),
            Expect::Differs {
                vals: Want::Value(PASSWORD),
                seal: Want::Fails("unknown parameter \"verison\""),
            },
        ),
        // A vals parameter seal does not support is refused with vals' meaning of it.
        (
            format!("ref+vault://{v2}?proto=http#/password"),
            Expect::Differs {
                vals: Want::Value(PASSWORD),
                seal: Want::Fails("in vals it is the scheme put before host="),
            },
        ),
    ]
}

#[tokio::test]
async fn a_reference_names_the_token_as_vals_does() -> Result<()> {
    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let s = seed(env).await?;
    let mut ci = Ci::new(env);
    ci.unset("VAULT_TOKEN");
    ci.set("DEPLOY_VAULT_TOKEN", env.var("VAULT_TOKEN"));
    let token_file = ci.write("token", env.var("VAULT_TOKEN"));
    let v2 = &s.v2;
    let cases = [
        format!("ref+vault://{v2}?token_env=DEPLOY_VAULT_TOKEN#/password"),
        format!("ref+vault://{v2}?token_file={token_file}#/password"),
    ];
    for reference in &cases {
        let (v, s) = (vals_get(&vals, &ci, reference), seal_get(&ci, reference));
        compare(reference, &Expect::Same, &v, &s);
        check(reference, &Want::Value(PASSWORD), &s);
    }
    // A variable that is not set: vals refuses, and so does seal, naming it.
    let unset = format!("ref+vault://{v2}?token_env=NOT_SET#/password");
    compare(
        &unset,
        &Expect::Differs {
            vals: Want::Fails("token_env configured to read vault token from envvar \"NOT_SET\""),
            seal: Want::Fails("token_env=NOT_SET: the variable is not set"),
        },
        &vals_get(&vals, &ci, &unset),
        &seal_get(&ci, &unset),
    );
    Ok(())
}

/// A YAML or JSON document as canonical JSON text: mappings sorted (vals writes keys sorted,
/// seal in input order; both are the same document).
fn canonical(text: &str) -> String {
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let value: Value = serde_yaml::from_str(text).unwrap();
    sort(value).to_string()
}

fn eval_and_render(vals: &Path, ci: &Ci, name: &str, document: &str) -> (Answer, Answer) {
    let file = ci.write(name, document);
    let vals_answer = run(vals, &["eval", "-s", "-f", &file], ci);
    let seal_answer = run(
        Path::new(env!("CARGO_BIN_EXE_seal")),
        &["render", &file],
        ci,
    );
    (vals_answer, seal_answer)
}

#[tokio::test]
async fn render_answers_as_vals_eval_does() -> Result<()> {
    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let ci = Ci::new(env);
    let s = seed(env).await?;
    let (v2, v1, aws_json, aws_plain) = (&s.v2, &s.v1, &s.aws_json, &s.aws_plain);

    // Whole values, interpolations (a `+` ends a reference), several in one string, lists.
    let document = format!(
        "db:\n  password: ref+vault://{v2}#/password\n  url: postgres://ml:ref+vault://{v2}#/password+@db:5432/ml\n  port: ref+vault://{v2}#/port\n  v1: ref+vault://{v1}#/password\nuser: ref+awssecrets://{aws_json}#/user\ntwo: a ref+awssecrets://{aws_json}#/user b ref+vault://{v1}#/password\nlist: [ref+awssecrets://{aws_plain}, literal]\nuntouched: 3\n"
    );
    let (v, s) = eval_and_render(&vals, &ci, "values.yaml", &document);
    match (&v, &s) {
        (Answer::Value(v), Answer::Value(s)) => {
            assert_eq!(canonical(s), canonical(v), "seal render vs vals eval");
            assert!(
                s.contains(&format!("postgres://ml:{PASSWORD}@db:5432/ml")),
                "{s}"
            );
        }
        _ => panic!("vals {v:?}, seal {s:?}"),
    }

    // Failures fail both: a missing key (vals eval fails on it), secret, or a wrong type.
    for (name, document) in [
        (
            "missing-key.yaml",
            format!("a: ref+vault://{v2}#/missing\n"),
        ),
        (
            "missing-secret.yaml",
            format!("a: ref+vault://{v2}-gone#/password\n"),
        ),
        (
            "wrong-type.yaml",
            format!("a: x ref+awssecrets://{aws_json}#/user/x y\n"),
        ),
        (
            "bad-param.yaml",
            format!("a: ref+vault://{v2}?host=v:8200#/password\n"),
        ),
    ] {
        let (v, s) = eval_and_render(&vals, &ci, name, &document);
        let expect = if name == "bad-param.yaml" {
            // vals would build https://v:8200 from host= and fail to reach it; seal refuses
            // host= before any call, naming vals' meaning.
            Expect::Differs {
                vals: Want::Fails("v:8200"),
                seal: Want::Fails("in vals it is the Vault host"),
            }
        } else {
            Expect::Same
        };
        compare(name, &expect, &v, &s);
    }

    // Types: a string that is exactly one reference with a fragment takes the type of what it
    // picks (Vault's numbers are strings in vals); without a fragment, or inside a longer
    // string, a value is text.
    let document = format!(
        "flag: ref+vault://{v2}#/flag\nport: ref+vault://{v2}#/port\nvnested: ref+vault://{v2}#/nested\nvlist: ref+vault://{v2}#/list\nkeyed: ref+vault://{v2}/flag\nawsport: ref+awssecrets://{aws_json}#/port\nawsnested: ref+awssecrets://{aws_json}#/nested\ninside: x ref+awssecrets://{aws_json}#/port\n"
    );
    let (v, s) = eval_and_render(&vals, &ci, "types.yaml", &document);
    match (&v, &s) {
        (Answer::Value(v), Answer::Value(s)) => {
            assert_eq!(canonical(s), canonical(v), "seal render vs vals eval");
            assert_eq!(
                canonical(s),
                json!({"awsnested": {"a": "b"}, "awsport": 5432, "flag": true, "inside": "x 5432",
                       "keyed": "true", "port": "5432", "vlist": ["1", "x"],
                       "vnested": {"a": "b"}})
                .to_string()
            );
        }
        _ => panic!("vals {v:?}, seal {s:?}"),
    }
    Ok(())
}

/// The helmfile example (`examples/ci/helmfile`) renders as helmfile's vals renders it,
/// `secretref+` kept by both.
#[tokio::test]
async fn the_helmfile_example_renders_as_vals_renders_it() -> Result<()> {
    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let ci = Ci::new(env);
    kv2(env, "ml-api/db", &json!({"password": "pw"})).await?;
    let values = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ci/helmfile/values.secrets.yaml")
        .display()
        .to_string();
    let v = run(
        &vals,
        &["eval", "-s", "-exclude-secret", "-f", &values],
        &ci,
    );
    let s = run(
        Path::new(env!("CARGO_BIN_EXE_seal")),
        &["render", "--exclude-secret", &values],
        &ci,
    );
    match (&v, &s) {
        (Answer::Value(v), Answer::Value(s)) => {
            assert_eq!(canonical(s), canonical(v), "seal render vs vals eval");
            assert!(s.contains("password: pw"), "{s}");
        }
        _ => panic!("vals {v:?}, seal {s:?}"),
    }
    Ok(())
}

/// `namespace=` scopes the mount question too: a namespace's `secret/` mount is KV v1 here while
/// the root's is KV v2, and each tool reads each as what it is.
#[tokio::test]
async fn a_namespace_has_its_own_mounts_for_both() -> Result<()> {
    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let ci = Ci::new(env);
    let namespace = unique_name("vals-ns");
    ureq::post(format!(
        "{}/v1/sys/namespaces/{namespace}",
        env.vault_addr()
    ))
    .header("X-Vault-Token", env.var("VAULT_TOKEN"))
    .send_empty()?;
    let in_namespace = vaultrs::client::VaultClient::new(
        vaultrs::client::VaultClientSettingsBuilder::default()
            .address(env.vault_addr())
            .token(env.var("VAULT_TOKEN"))
            .namespace(Some(namespace.clone()))
            .build()?,
    )?;
    vaultrs::sys::mount::enable(&in_namespace, "secret", "kv", None).await?;
    let path = format!("ci/{}", unique_name("vals"));
    let data = std::collections::HashMap::from([("password", "scoped")]);
    let mut written = Err(anyhow::anyhow!("not tried"));
    for _ in 0..50 {
        // The new mount may take a moment to accept writes.
        written = vaultrs::kv1::set(&in_namespace, "secret", &path, &data)
            .await
            .map_err(Into::into);
        if written.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    written?;
    let scoped = format!("ref+vault://secret/{path}?namespace={namespace}#/password");
    let (v, s) = (vals_get(&vals, &ci, &scoped), seal_get(&ci, &scoped));
    compare(&scoped, &Expect::Same, &v, &s);
    check(&scoped, &Want::Value("scoped"), &s);
    // Outside the namespace the path is under the root's KV v2 mount, where it does not exist.
    let outside = format!("ref+vault://secret/{path}#/password");
    let (v, s) = (vals_get(&vals, &ci, &outside), seal_get(&ci, &outside));
    compare(&outside, &Expect::Same, &v, &s);
    check(&outside, &Want::Fails("not found"), &s);
    Ok(())
}

/// The logins vals and seal share, named in the reference: AppRole with `role_id=` and
/// `secret_id=` (or from `VAULT_ROLE_ID` / `VAULT_SECRET_ID`), and Kubernetes with `role_id=`
/// as the role (vals' reading). Each tool reads the ServiceAccount token from its own setting
/// (vals: `VAULT_KUBERNETES_JWT_TOKEN_PATH`; seal: `SEAL_VAULT_KUBERNETES_TOKEN_FILE`).
#[tokio::test]
async fn logins_named_in_the_reference_work_for_both() -> Result<()> {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::PostParams;

    let env = testenv!();
    let Some(vals) = vals_binary() else {
        return Ok(());
    };
    let s = seed(env).await?;
    let ns = env.namespace("vals-k8s").await?;
    let accounts = ns.api::<ServiceAccount>();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "deployer"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 600}}))?;
    let issued: TokenRequest = accounts
        .create_subresource("token", "deployer", &PostParams::default(), &request)
        .await?;
    let sa_token = issued.status.and_then(|s| s.token).unwrap_or_default();

    let mut ci = Ci::new(env);
    ci.unset("VAULT_TOKEN");
    let sa_file = ci.write("sa.token", &sa_token);
    ci.set("VAULT_KUBERNETES_JWT_TOKEN_PATH", &sa_file);
    ci.set("SEAL_VAULT_KUBERNETES_TOKEN_FILE", &sa_file);
    let (role_id, secret_id) = (
        env.var("SEAL_TESTENV_APPROLE_ROLE_ID"),
        env.var("SEAL_TESTENV_APPROLE_SECRET_ID"),
    );
    let v2 = &s.v2;
    let k8s_role = env.var("SEAL_TESTENV_KUBERNETES_ROLE");
    let cases = [
        format!(
            "ref+vault://{v2}?auth_method=approle&role_id={role_id}&secret_id={secret_id}#/password"
        ),
        format!("ref+vault://{v2}?auth_method=kubernetes&role_id={k8s_role}#/password"),
    ];
    for reference in &cases {
        let (v, s) = (vals_get(&vals, &ci, reference), seal_get(&ci, reference));
        compare(reference, &Expect::Same, &v, &s);
        check(reference, &Want::Value(PASSWORD), &s);
    }
    // AppRole's ids from the environment, and a wrong secret id refused by both.
    ci.set("VAULT_ROLE_ID", role_id);
    ci.set("VAULT_SECRET_ID", secret_id);
    let from_env = format!("ref+vault://{v2}?auth_method=approle#/password");
    let (v, s) = (vals_get(&vals, &ci, &from_env), seal_get(&ci, &from_env));
    compare(&from_env, &Expect::Same, &v, &s);
    check(&from_env, &Want::Value(PASSWORD), &s);
    ci.set("VAULT_SECRET_ID", "not-the-secret-id");
    let (v, s) = (vals_get(&vals, &ci, &from_env), seal_get(&ci, &from_env));
    compare(&from_env, &Expect::Same, &v, &s);
    check(&from_env, &Want::Fails("access denied"), &s);
    Ok(())
}
