//! The localhost endpoint, against moto and OpenBao: the AWS Secrets Manager Agent's answers,
//! every rule (token, forwarded header, method, loopback, connection cap, header timeout),
//! single-flight proven by counting upstream calls, and refreshNow.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use seal_testenv::testenv;

use crate::harness::{Agent, TOKEN, aws_secret, get, http, metric, vault_kv2, wait_for};

#[tokio::test]
async fn the_endpoint_answers_as_the_aws_agent_and_by_name() -> Result<()> {
    let env = testenv!();
    let aws = aws_secret(env, "aws-value").await?;
    let vault = vault_kv2(env, &[("pw", "vault-value")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{pw: 'ref+vault://{vault}#/pw'}}
server: {{listen: "127.0.0.1:0"}}
"#
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    let path = format!("/secretsmanager/get?secretId={}", aws.replace('/', "%2F"));

    // /ping needs no token.
    let ping = http(&address, "GET", "/ping", &[])?;
    assert_eq!((ping.status, ping.body.as_str()), (200, "healthy"));

    // The GetSecretValue JSON with either token header.
    for header in [
        "X-Aws-Parameters-Secrets-Token",
        "X-Vault-Token",
        "X-Seal-Token",
    ] {
        let answer = http(&address, "GET", &path, &[(header, TOKEN)])?;
        assert_eq!(answer.status, 200, "{header}: {}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body)?;
        assert_eq!(json["SecretString"], "aws-value");
        assert_eq!(json["Name"], aws.as_str());
        assert!(
            json["ARN"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:secretsmanager:")
        );
        assert!(!json["VersionId"].as_str().unwrap().is_empty());
        assert_eq!(json["VersionStages"][0], "AWSCURRENT");
        assert!(json["CreatedDate"].as_str().unwrap().parse::<f64>().is_ok());
    }

    // The AWS agent's other form, /v1/SECRET_ID, the id as written.
    let short = get(&address, &format!("/v1/{aws}"));
    assert_eq!(short.status, 200, "{}", short.body);
    assert!(
        short.body.contains("\"SecretString\":\"aws-value\""),
        "{}",
        short.body
    );
    assert_eq!(
        http(&address, "GET", &format!("/v1/{aws}"), &[])?.status,
        403
    );

    // Errors in the AWS agent's shape.
    let missing = get(
        &address,
        "/secretsmanager/get?secretId=agent%2Fno-such-secret-91",
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("ResourceNotFoundException"));
    assert_eq!(get(&address, "/secretsmanager/get").status, 400);

    // Configured secrets of any provider by name.
    let named = get(&address, "/v1/secrets/pw");
    assert_eq!((named.status, named.body.as_str()), (200, "vault-value"));
    assert_eq!(get(&address, "/v1/secrets/other").status, 404);
    assert_eq!(http(&address, "GET", "/v1/secrets/pw", &[])?.status, 403);

    // The metrics count what happened, with no value in them.
    let metrics = http(&address, "GET", "/metrics", &[])?;
    assert_eq!(metrics.status, 200);
    assert!(
        metric(
            &metrics.body,
            "seal_agent_requests_total{route=\"aws\",code=\"403\"}"
        ) >= 1
    );
    assert!(
        metric(
            &metrics.body,
            "seal_agent_cache_requests_total{route=\"aws\",outcome=\"hit\"}"
        ) >= 1
    );
    assert!(!metrics.body.contains("aws-value") && !metrics.body.contains("vault-value"));
    Ok(())
}

#[tokio::test]
async fn every_request_rule_is_enforced() -> Result<()> {
    let env = testenv!();
    let aws = aws_secret(env, "aws-value").await?;
    let vault = vault_kv2(env, &[("pw", "vault-value")]).await?;
    let agent = Agent::new(env);
    let config = agent.config(&format!(
        r#"
secrets: {{pw: 'ref+vault://{vault}#/pw'}}
server: {{listen: "127.0.0.1:0"}}
"#
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    let path = format!("/secretsmanager/get?secretId={}", aws.replace('/', "%2F"));

    // Token missing, wrong, a prefix of the right one, or in another header: 403.
    for headers in [
        vec![],
        vec![("X-Aws-Parameters-Secrets-Token", "wrong")],
        vec![("X-Aws-Parameters-Secrets-Token", &TOKEN[..TOKEN.len() - 1])],
        vec![("Authorization", TOKEN)],
    ] {
        let answer = http(&address, "GET", &path, &headers)?;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (403, "Bad Token"),
            "{headers:?}"
        );
    }

    // A forwarded request is refused even with the token.
    let forwarded = http(
        &address,
        "GET",
        &path,
        &[
            ("X-Aws-Parameters-Secrets-Token", TOKEN),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    )?;
    assert_eq!(
        (forwarded.status, forwarded.body.as_str()),
        (400, "Forwarded")
    );
    let forwarded = http(
        &address,
        "GET",
        &path,
        &[("X-Seal-Token", TOKEN), ("Forwarded", "for=10.0.0.1")],
    )?;
    assert_eq!(forwarded.status, 400);

    // GET only.
    for method in ["POST", "PUT", "DELETE"] {
        let answer = http(&address, method, &path, &[("X-Seal-Token", TOKEN)])?;
        assert_eq!(answer.status, 405, "{method}");
    }

    let metrics = http(&address, "GET", "/metrics", &[])?.body;
    let count = |code: &str| {
        metric(
            &metrics,
            &format!("seal_agent_requests_total{{route=\"aws\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(
        (count("403"), count("400"), count("405")),
        (4, 2, 3),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_call_and_refresh_now_makes_another() -> Result<()> {
    let env = testenv!();
    let aws = aws_secret(env, "coalesced").await?;
    let agent = Agent::new(env);
    let config = agent.config("server: {listen: \"127.0.0.1:0\", ttl: 10m}\n");
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    let path = format!("/secretsmanager/get?secretId={}", aws.replace('/', "%2F"));
    let calls = |address: &str| {
        let text = http(address, "GET", "/metrics", &[]).unwrap().body;
        metric(
            &text,
            "seal_agent_provider_api_calls_total{provider=\"aws\",call=\"GetSecretValue\",status=\"success\"}",
        )
    };
    assert_eq!(calls(&address), 0);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (address, path, barrier) = (address.clone(), path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                get(&address, &path)
            })
        })
        .collect();
    for thread in threads {
        let answer = thread.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("coalesced"));
    }
    assert_eq!(
        calls(&address),
        1,
        "32 concurrent misses, one upstream call"
    );
    assert_eq!(get(&address, &path).status, 200);
    assert_eq!(calls(&address), 1, "a hit makes no call");
    assert_eq!(
        get(&address, &format!("{path}&refreshNow=true")).status,
        200
    );
    assert_eq!(calls(&address), 2, "refreshNow makes one");
    Ok(())
}

#[tokio::test]
async fn version_stage_and_version_id_select_a_version() -> Result<()> {
    let env = testenv!();
    let aws = aws_secret(env, "v1").await?;
    let put = env
        .secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&aws)
        .secret_string("v2")
        .send()
        .await?;
    let v2 = put
        .version_id()
        .expect("moto returns the version id")
        .to_owned();
    let agent = Agent::new(env);
    let config = agent.config("server: {listen: \"127.0.0.1:0\"}\n");
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    let id = aws.replace('/', "%2F");
    let value = |query: &str| -> serde_json::Value {
        let answer = get(
            &address,
            &format!("/secretsmanager/get?secretId={id}{query}"),
        );
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    };
    assert_eq!(value("")["SecretString"], "v2");
    assert_eq!(value("&versionStage=AWSCURRENT")["SecretString"], "v2");
    let previous = value("&versionStage=AWSPREVIOUS");
    assert_eq!(previous["SecretString"], "v1");
    assert_eq!(previous["VersionStages"][0], "AWSPREVIOUS");
    let by_id = value(&format!("&versionId={v2}"));
    assert_eq!(
        (by_id["SecretString"].as_str(), by_id["VersionId"].as_str()),
        (Some("v2"), Some(v2.as_str()))
    );
    Ok(())
}

#[tokio::test]
async fn connections_past_the_cap_get_429_and_slow_clients_are_cut_off() -> Result<()> {
    let env = testenv!();
    let agent = Agent::new(env);
    let config = agent.config(
        "server: {listen: \"127.0.0.1:0\", maxConnections: 2, headerTimeout: 1500ms, connectionTimeout: 60s}\n",
    );
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    // Two idle connections fill the cap: once the agent has accepted them, a third is answered
    // 429 (earlier probes are answered and closed, leaving the cap as it was).
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    let over = wait_for("a 429 at the cap", Duration::from_secs(1), || {
        http(&address, "GET", "/ping", &[])
            .ok()
            .filter(|a| a.status == 429)
    });
    assert_eq!(over.body, "Connection limit exceeded", "{over:?}");
    // The idle ones are closed by the header timeout (not the 60 s connection lifetime), and
    // the cap frees up.
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "an idle connection got an answer");
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "idle connections closed after {waited:?}"
    );
    wait_for("a free slot", Duration::from_secs(5), || {
        (http(&address, "GET", "/ping", &[]).ok()?.status == 200).then_some(())
    });
    // A client that sends half a request head is cut off too.
    let mut slow = TcpStream::connect(&address)?;
    slow.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(5)))?;
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!String::from_utf8_lossy(&rest).contains("healthy"));
    Ok(())
}
