//! Vault Kubernetes auth as a pod uses it: the agent logs in with a ServiceAccount token file
//! (issued by the test API server, checked by OpenBao through TokenReview), and keeps that one
//! session across refreshes instead of logging in at each.

use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use seal_testenv::testenv;
use serde_json::json;

use crate::harness::{Agent, get, http, metric, vault_kv2, vault_put, wait_for};

#[tokio::test]
async fn kubernetes_auth_logs_in_once_and_keeps_the_session_across_refreshes() -> Result<()> {
    let env = testenv!();
    let path = vault_kv2(env, &[("pw", "one")]).await?;
    let ns = env.namespace("agent-vault-k8s").await?;
    let accounts = ns.api::<ServiceAccount>();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "ml-api"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 600}}))?;
    let issued: TokenRequest = accounts
        .create_subresource("token", "ml-api", &PostParams::default(), &request)
        .await?;
    let token = issued
        .status
        .and_then(|s| s.token)
        .context("no token in the TokenRequest")?;

    let mut agent = Agent::new(env);
    agent.unset("VAULT_TOKEN");
    let token_file = agent.file("sa.token");
    std::fs::write(&token_file, token)?;
    let config = agent.config(&format!(
        r#"
vault:
  auth: {{method: kubernetes, role: {role}, tokenFile: "{token}"}}
secrets: {{pw: 'ref+vault://{path}#/pw'}}
files: [{{path: "{{dir}}/pw", secret: pw}}]
refresh: {{interval: 100ms, jitter: 0}}
server: {{listen: "127.0.0.1:0"}}
"#,
        role = env.var("SEAL_TESTENV_KUBERNETES_ROLE"),
        token = token_file.display(),
    ));
    let running = agent.spawn(&["run", "-c", &config]);
    let address = running.address();
    wait_for("the file", Duration::from_secs(30), || {
        (std::fs::read_to_string(agent.file("pw")).ok()? == "one").then_some(())
    });
    vault_put(env, &path, &[("pw", "two")]).await?;
    wait_for("the refresh", Duration::from_secs(30), || {
        (std::fs::read_to_string(agent.file("pw")).ok()? == "two").then_some(())
    });
    assert_eq!(get(&address, "/v1/secrets/pw").body, "two");
    let metrics = http(&address, "GET", "/metrics", &[])?.body;
    let series = |call: &str| {
        metric(
            &metrics,
            &format!(
                "seal_agent_provider_api_calls_total{{provider=\"vault\",call=\"{call}\",status=\"success\"}}"
            ),
        )
    };
    let refreshes = metric(&metrics, "seal_agent_refreshes_total{result=\"success\"}");
    assert!(refreshes >= 2, "{metrics}");
    assert!(series("read") >= refreshes, "{metrics}");
    assert_eq!(
        series("login"),
        1,
        "one login for {refreshes} refreshes:\n{metrics}"
    );
    Ok(())
}
