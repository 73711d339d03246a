//! seal-agent's endpoint against the AWS Secrets Manager Agent 2.1.0 itself: both run against
//! the same moto with the same token, are sent the same requests (values, versions, both
//! forms, missing secrets, bad queries, bad tokens, wrong methods, proxies), and must answer the
//! same bytes: status line, headers and body. Only the `Date` header is left out: it is the
//! clock, not the agent. No other normalisation is needed, as both read the same moto data.
//!
//! The deliberate differences (seal's `/metrics`, `/v1/secrets/NAME`, `Forwarded` and
//! `X-Seal-Token`, documented in the README) are checked too, so a change on either side shows.
//!
//! The agent binary comes from `SEAL_AWS_AGENT`, which `cargo xtask test` sets (`cargo xtask
//! peers` prints it); without it the test fails under `CI=true` or `SEAL_REQUIRE_PEERS=1`, and
//! says SKIPPED loudly elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use seal_testenv::{TestEnv, testenv};

use crate::harness::{Agent, Answer, TOKEN, aws_secret, free_port, http, wait_for};

/// The AWS agent's binary, or `None` after a loud SKIPPED line where it is not required.
fn aws_agent_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEAL_AWS_AGENT").map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("SEAL_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let message = "aws_secretsmanager_agent 2.1.0 not available: set SEAL_AWS_AGENT (`cargo xtask peers` prints it), or run the tests with `cargo xtask test`, which builds it";
    assert!(!required, "{message}");
    eprintln!("SKIPPED: {message}");
    None
}

/// The AWS agent running on a port of its own, killed when dropped.
struct AwsAgent {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl AwsAgent {
    /// Starts `binary` against `endpoint` (the test environment's moto, with its region and
    /// credentials), with the tests' token in `AWS_TOKEN` (which it reads first), and waits for
    /// `/ping`.
    fn start(binary: &PathBuf, env: &TestEnv, endpoint: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, format!("http_port = \"{port}\"\n"))?;
        let log = std::fs::File::create(dir.path().join("stdout.log"))?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            command.env(name, env.var(name));
        }
        command.env("AWS_ENDPOINT_URL", endpoint);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let agent = AwsAgent {
            child,
            address: format!("127.0.0.1:{port}"),
            dir,
        };
        wait_for("the AWS agent's /ping", Duration::from_secs(30), || {
            http(&agent.address, "GET", "/ping", &[])
                .ok()
                .filter(|a| a.status == 200)
        });
        Ok(agent)
    }

    /// Its output and log file, for a failure message.
    fn log(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        if let Ok(more) =
            std::fs::read_to_string(self.dir.path().join("logs/secrets_manager_agent.log"))
        {
            text.push_str(&more);
        }
        text
    }
}

impl Drop for AwsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer as compared: the status line and headers but `Date` (lower-cased names, in the
/// order sent), then the body.
fn comparable(answer: &Answer) -> String {
    let head: Vec<String> = answer
        .head
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
        .map(|line| match line.split_once(':') {
            Some((name, value)) if !line.starts_with("HTTP/") => {
                format!("{}:{value}", name.to_ascii_lowercase())
            }
            _ => line.to_owned(),
        })
        .collect();
    format!("{}\n\n{}", head.join("\n"), answer.body)
}

/// One request of the list: method, target, headers.
type Request = (&'static str, String, Vec<(&'static str, &'static str)>);

/// The secrets both agents read: a text one with two versions (values that need escaping) and
/// a binary one.
struct Seeded {
    text: String,
    first: String,
    second: String,
    binary: String,
}

async fn seed(env: &TestEnv) -> Result<Seeded> {
    let text = aws_secret(env, "first \"quoted\"\n\u{e9}").await?;
    let client = env.secretsmanager().await;
    let first = client
        .get_secret_value()
        .secret_id(&text)
        .send()
        .await?
        .version_id
        .context("moto gives a version id")?;
    let second = client
        .put_secret_value()
        .secret_id(&text)
        .secret_string("second \\ value \u{1f511}")
        .send()
        .await?
        .version_id
        .context("moto gives a version id")?;
    let binary = format!("{text}-bin");
    client
        .create_secret()
        .name(&binary)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![
            0xff, 0, b'a', b'b',
        ]))
        .send()
        .await?;
    Ok(Seeded {
        text,
        first,
        second,
        binary,
    })
}

/// The token in the agent's first header.
const TOKEN_HEADER: (&str, &str) = ("X-Aws-Parameters-Secrets-Token", TOKEN);

/// `/secretsmanager/get?QUERY`.
fn get(query: &str) -> String {
    format!("/secretsmanager/get?{query}")
}

/// The requests whose answers must be the same bytes.
#[allow(clippy::too_many_lines)] // one list, read top to bottom
fn requests(seeded: &Seeded) -> Vec<Request> {
    let Seeded {
        text,
        first,
        second,
        binary: binary_name,
    } = seeded;
    let token = vec![TOKEN_HEADER];
    let vault = vec![("X-Vault-Token", TOKEN)];
    let encoded = text.replace('/', "%2F");
    vec![
        // Values, with either of the agent's token headers, in both forms.
        ("GET", get(&format!("secretId={text}")), token.clone()),
        ("GET", get(&format!("secretId={encoded}")), vault.clone()),
        (
            "GET",
            get(&format!("secretId={binary_name}")),
            token.clone(),
        ),
        ("GET", format!("/v1/{text}"), token.clone()),
        ("GET", format!("/v1/{binary_name}"), vault.clone()),
        ("GET", format!("/v1/a/../{text}"), token.clone()),
        // Versions.
        (
            "GET",
            get(&format!("secretId={text}&versionStage=AWSPREVIOUS")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&versionId={first}")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!(
                "secretId={text}&versionId={second}&versionStage=AWSCURRENT"
            )),
            token.clone(),
        ),
        (
            "GET",
            format!("/v1/{text}?versionStage=AWSPREVIOUS"),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&versionId=&versionStage=")),
            token.clone(),
        ),
        // A role assumed for the request.
        (
            "GET",
            get(&format!(
                "secretId={text}&roleArn=arn:aws:iam::123456789012:role/seal-differential"
            )),
            token.clone(),
        ),
        // refreshNow, its spellings, a repeated parameter, empty pairs.
        (
            "GET",
            get(&format!("secretId={text}&refreshNow=TRUE")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&refreshNow=1")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&refreshNow=false")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId=other&secretId={text}&&")),
            token.clone(),
        ),
        // Secrets Manager's errors, relayed.
        ("GET", get("secretId=agent%2Fno-such-secret"), token.clone()),
        ("GET", get("secretId=no+such+secret"), token.clone()),
        ("GET", format!("/v1/{encoded}"), token.clone()),
        (
            "GET",
            get(&format!("secretId={text}&versionId=no-such-version")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&versionStage=NOSUCHSTAGE")),
            token.clone(),
        ),
        // Bad queries.
        ("GET", "/secretsmanager/get".into(), token.clone()),
        ("GET", get("secretId="), token.clone()),
        ("GET", get("secretId"), token.clone()),
        ("GET", get(&format!("secretId={text}&foo=1")), token.clone()),
        (
            "GET",
            get(&format!("secretId={text}&refreshNow=yes")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&refreshNow=")),
            token.clone(),
        ),
        (
            "GET",
            get(&format!("secretId={text}&roleArn=not-an-arn")),
            token.clone(),
        ),
        ("GET", "/v1/".into(), token.clone()),
        ("GET", format!("/v1/{text}?secretId=x"), token.clone()),
        ("GET", "/secretsmanager/get/".into(), token.clone()),
        ("GET", "/nothing".into(), token.clone()),
        // Tokens: missing, wrong, a prefix, in another header, a wrong first value.
        ("GET", get(&format!("secretId={text}")), vec![]),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![("X-Aws-Parameters-Secrets-Token", "wrong")],
        ),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![("X-Vault-Token", &TOKEN[..TOKEN.len() - 1])],
        ),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![("Authorization", TOKEN)],
        ),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![
                ("X-Aws-Parameters-Secrets-Token", "wrong"),
                ("X-Aws-Parameters-Secrets-Token", TOKEN),
            ],
        ),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![
                ("X-Aws-Parameters-Secrets-Token", "wrong"),
                ("X-Vault-Token", TOKEN),
            ],
        ),
        ("GET", "/nothing".into(), vec![]),
        // Proxies and methods, and the order the rules are checked in.
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![
                ("X-Aws-Parameters-Secrets-Token", TOKEN),
                ("X-Forwarded-For", "10.0.0.1"),
            ],
        ),
        (
            "GET",
            get(&format!("secretId={text}")),
            vec![("X-Forwarded-For", "10.0.0.1")],
        ),
        ("POST", get(&format!("secretId={text}")), token.clone()),
        ("POST", get(&format!("secretId={text}")), vec![]),
        ("DELETE", "/nothing".into(), vault.clone()),
        // /ping: no token, any proxy header, GET only.
        ("GET", "/ping".into(), vec![]),
        ("GET", "/ping".into(), vec![("X-Forwarded-For", "10.0.0.1")]),
        ("POST", "/ping".into(), vec![]),
    ]
}

/// Each request sent to both; the differences found.
fn compare(requests: &[Request], aws: &str, seal: &str) -> Result<Vec<String>> {
    let mut differences = Vec::new();
    for (method, target, headers) in requests {
        let theirs = comparable(&http(aws, method, target, headers)?);
        let ours = comparable(&http(seal, method, target, headers)?);
        if theirs != ours {
            differences.push(format!(
                "{method} {target} {headers:?}\n--- aws_secretsmanager_agent\n{theirs}\n--- seal-agent\n{ours}\n"
            ));
        }
    }
    Ok(differences)
}

#[tokio::test]
async fn seal_answers_every_request_as_the_aws_agent_does() -> Result<()> {
    let env = testenv!();
    let Some(binary) = aws_agent_binary() else {
        return Ok(());
    };
    let seeded = seed(env).await?;
    let agent = Agent::new(env);
    let config = agent.config("server: {listen: \"127.0.0.1:0\"}\n");
    let seal = agent.spawn(&["run", "-c", &config]);
    let seal_address = seal.address();
    let aws = AwsAgent::start(&binary, env, env.var("AWS_ENDPOINT_URL"))?;

    let requests = requests(&seeded);
    let mut differences = compare(&requests, &aws.address, &seal_address)?;
    // Both cache: a new value is not seen until a refreshNow, then it is.
    env.secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&seeded.text)
        .secret_string("third")
        .send()
        .await?;
    let text = &seeded.text;
    let after: Vec<Request> = [
        get(&format!("secretId={text}")),
        get(&format!("secretId={text}&refreshNow=true")),
        get(&format!("secretId={text}")),
    ]
    .into_iter()
    .map(|target| ("GET", target, vec![TOKEN_HEADER]))
    .collect();
    differences.extend(compare(&after, &aws.address, &seal_address)?);
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}\nthe AWS agent's log:\n{}",
        differences.len(),
        requests.len() + after.len(),
        differences.join("\n"),
        aws.log()
    );
    deliberate_differences(text, &aws.address, &seal_address)?;
    drop(seal);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_secrets_manager_gets_the_agents_status_and_type() -> Result<()> {
    let env = testenv!();
    let Some(binary) = aws_agent_binary() else {
        return Ok(());
    };
    // A loopback port nothing listens on: every call is refused.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut agent = Agent::new(env);
    agent.set("AWS_ENDPOINT_URL", &closed);
    let config = agent.config("timeout: 1s\nserver: {listen: \"127.0.0.1:0\"}\n");
    let seal = agent.spawn(&["run", "-c", &config]);
    let aws = AwsAgent::start(&binary, env, &closed)?;
    let target = get("secretId=agent%2Fany");
    let theirs = http(&aws.address, "GET", &target, &[TOKEN_HEADER])?;
    let ours = http(&seal.address(), "GET", &target, &[TOKEN_HEADER])?;
    let kind = |answer: &Answer| -> Result<(u16, String)> {
        let json: serde_json::Value =
            serde_json::from_str(&answer.body).with_context(|| format!("not JSON: {answer:?}"))?;
        Ok((
            answer.status,
            json["__type"].as_str().unwrap_or("").to_owned(),
        ))
    };
    assert_eq!(
        kind(&theirs)?,
        (502, "ConnectionError".to_owned()),
        "{theirs:?}"
    );
    assert_eq!(kind(&ours)?, kind(&theirs)?, "{ours:?}");
    // The agent says "Read Error"; seal says which store failed, and how.
    assert!(theirs.body.contains("Read Error"), "{}", theirs.body);
    assert!(
        ours.body.contains("agent/any") && ours.body.contains("unavailable"),
        "{}",
        ours.body
    );
    Ok(())
}

#[tokio::test]
async fn roles_past_the_twentieth_are_refused_alike() -> Result<()> {
    let env = testenv!();
    let Some(binary) = aws_agent_binary() else {
        return Ok(());
    };
    let text = aws_secret(env, "by role").await?;
    let agent = Agent::new(env);
    let config = agent.config("server: {listen: \"127.0.0.1:0\"}\n");
    let seal = agent.spawn(&["run", "-c", &config]);
    let aws = AwsAgent::start(&binary, env, env.var("AWS_ENDPOINT_URL"))?;
    // Twenty roles get a client each; the twenty-first is refused; a known one still answers.
    let requests: Vec<Request> = (1..=21)
        .chain([1])
        .map(|n| {
            let target = get(&format!(
                "secretId={text}&roleArn=arn:aws:iam::123456789012:role/seal-role-{n}"
            ));
            ("GET", target, vec![TOKEN_HEADER])
        })
        .collect();
    let differences = compare(&requests, &aws.address, &seal.address())?;
    assert!(
        differences.is_empty(),
        "{}\nthe AWS agent's log:\n{}",
        differences.join("\n"),
        aws.log()
    );
    let refused = http(&seal.address(), "GET", &requests[20].1, &[TOKEN_HEADER])?;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.contains("MaxRolesExceeded"),
        "{}",
        refused.body
    );
    Ok(())
}

/// The documented differences: `Forwarded` is refused like `X-Forwarded-For` (the agent
/// ignores it), seal's own token header, `/metrics` without a token, `/v1/secrets/NAME`.
fn deliberate_differences(text: &str, aws: &str, seal: &str) -> Result<()> {
    let both = |method: &str, target: &str, headers: &[(&str, &str)]| -> Result<[Answer; 2]> {
        Ok([
            http(aws, method, target, headers)?,
            http(seal, method, target, headers)?,
        ])
    };
    let [theirs, ours] = both(
        "GET",
        &get(&format!("secretId={text}")),
        &[("X-Vault-Token", TOKEN), ("Forwarded", "for=10.0.0.1")],
    )?;
    assert_eq!((theirs.status, ours.status), (200, 400));
    assert_eq!(ours.body, "Forwarded");
    let [theirs, ours] = both(
        "GET",
        &get(&format!("secretId={text}")),
        &[("X-Seal-Token", TOKEN)],
    )?;
    assert_eq!((theirs.status, ours.status), (403, 200));
    let [theirs, ours] = both("GET", "/metrics", &[])?;
    assert_eq!((theirs.status, ours.status), (403, 200));
    let [theirs, ours] = both("GET", "/v1/secrets/pw", &[TOKEN_HEADER])?;
    assert_eq!((theirs.status, ours.status), (404, 404));
    assert!(
        theirs.body.contains("can't find the specified secret"),
        "{}",
        theirs.body
    );
    assert!(
        ours.body.contains(
            "an AWS secret named secrets/pw is read with /secretsmanager/get?secretId=secrets/pw"
        ),
        "{}",
        ours.body
    );
    Ok(())
}
