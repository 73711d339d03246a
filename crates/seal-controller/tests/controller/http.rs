//! The certificate API and the metrics endpoint of a running controller: the newest certificate,
//! the list, verify (200/409, either flavour, JSON or YAML), rotate (to the newest key, under the
//! SealedSecret's own scope whatever its template says), bad bodies, the rate limit, health, and
//! metrics that count requests without ever carrying a value.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use seal_api::bitnami::to_bitnami;
use seal_api::manifest::{self, Format, Object};
use seal_api::unsealing::{KeyRing, unseal_items};

use seal_api::names::{CLUSTER_WIDE_ANNOTATION, KEY_ACTIVE, SEALING_KEY_LABEL};
use seal_core::{Certificate, KeySize, PrivateKey, Scope};
use seal_testenv::{eventually, testenv};
use serde_json::Value;

use crate::support::{ControllerProcess, first_key, get, metric, post, sealed};

const MARKER: &str = "http-marker-0b7e";

fn yaml<T: serde::Serialize>(object: &T) -> Result<String> {
    Ok(manifest::write(
        &[serde_json::to_value(object)?],
        Format::Yaml,
    )?)
}

fn json<T: serde::Serialize>(object: &T) -> Result<String> {
    Ok(serde_json::to_string(object)?)
}

#[tokio::test]
async fn the_certificate_api_serves_verifies_rotates_and_limits() -> Result<()> {
    let env = testenv!();
    let keys_ns = env.namespace("http-keys").await?;
    let controller = ControllerProcess::start(
        env,
        keys_ns.name(),
        &[
            "--namespaces",
            "none",
            "--rate-limit",
            "1",
            "--rate-limit-burst",
            "50",
        ],
    )
    .await?;
    let first = first_key(&keys_ns).await?;
    eventually("ready", Duration::from_secs(30), || {
        let url = format!("{}/readyz", controller.api);
        async move { Ok((get(&url)?.0 == 200).then_some(())) }
    })
    .await?;
    assert_eq!(get(&format!("{}/healthz", controller.api))?.0, 200);

    let (code, pem) = get(&format!("{}/v1/cert.pem", controller.api))?;
    assert_eq!(code, 200);
    assert_eq!(
        Certificate::from_pem(pem.as_bytes())?.fingerprint(),
        first.fingerprint()
    );

    // verify: 200 for an object that opens (JSON as kubeseal posts it, YAML, Bitnami's flavour),
    // 409 for one sealed elsewhere, naming the item and not the value.
    let ours = sealed(&first, "team-a", "db", &[("password", MARKER)])?;
    let verify = format!("{}/v1/verify", controller.api);
    assert_eq!(post(&verify, &json(&ours)?)?.0, 200);
    assert_eq!(post(&verify, &yaml(&ours)?)?.0, 200);
    assert_eq!(post(&verify, &json(&to_bitnami(&ours))?)?.0, 200);
    let stranger = PrivateKey::generate(KeySize::Rsa2048)?;
    let stranger_cert =
        Certificate::self_signed(&stranger, SystemTime::now(), Duration::from_secs(3600))?;
    let theirs = sealed(&stranger_cert, "team-a", "db", &[("password", MARKER)])?;
    let (code, _, body) = post(&verify, &json(&theirs)?)?;
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("password") && !body.contains(MARKER),
        "{body}"
    );
    let (code, _, body) = post(&verify, "kind: [not closed")?;
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = post(
        &verify,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )?;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("expected a SealedSecret"), "{body}");

    // A key added at runtime with a later start becomes the newest; rotate moves objects to it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = PrivateKey::generate(KeySize::Rsa2048)?;
    let second_cert =
        Certificate::self_signed(&second, SystemTime::now(), Duration::from_secs(86_400))?;
    keys_ns
        .api::<Secret>()
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("byo-key".into()),
                    labels: Some(BTreeMap::from([(
                        SEALING_KEY_LABEL.into(),
                        KEY_ACTIVE.into(),
                    )])),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(BTreeMap::from([
                    (
                        "tls.crt".into(),
                        ByteString(second_cert.to_pem().into_bytes()),
                    ),
                    (
                        "tls.key".into(),
                        ByteString(second.to_pkcs1_pem().as_bytes().to_vec()),
                    ),
                ])),
                ..Secret::default()
            },
        )
        .await?;
    let certs: Value = eventually("both keys listed", Duration::from_secs(30), || {
        let url = format!("{}/v1/certs", controller.api);
        async move {
            let (_, body) = get(&url)?;
            let certs: Value = serde_json::from_str(&body)?;
            Ok((certs["certificates"].as_array().map(Vec::len) == Some(2)).then_some(certs))
        }
    })
    .await?;
    let listed = certs["certificates"].as_array().context("a list")?;
    assert_eq!(listed[0]["fingerprint"], first.fingerprint().to_string());
    assert_eq!(listed[0]["newest"], false);
    assert_eq!(
        listed[1]["fingerprint"],
        second_cert.fingerprint().to_string()
    );
    assert_eq!(listed[1]["newest"], true);
    assert_eq!(listed[1]["secret"], "byo-key");
    assert!(
        listed[1]["notAfter"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let (_, pem) = get(&format!("{}/v1/cert.pem", controller.api))?;
    assert_eq!(
        Certificate::from_pem(pem.as_bytes())?.fingerprint(),
        second_cert.fingerprint()
    );

    // Rotate a Bitnami object whose template claims cluster-wide: the answer is Bitnami's
    // flavour, YAML as posted, sealed to the newest key under the object's own (strict) scope.
    let mut bitnami = to_bitnami(&ours);
    bitnami
        .spec
        .template
        .get_or_insert_default()
        .metadata
        .get_or_insert_default()
        .annotations
        .get_or_insert_default()
        .insert(CLUSTER_WIDE_ANNOTATION.into(), "true".into());
    let (code, _, body) = post(&format!("{}/v1/rotate", controller.api), &yaml(&bitnami)?)?;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("apiVersion: bitnami.com/v1alpha1"),
        "{body}"
    );
    let Some(Object::Bitnami(rotated)) = manifest::parse(&body)?.pop().map(|l| l.object) else {
        panic!("rotate did not answer with one Bitnami SealedSecret: {body}");
    };
    let rotated = seal_api::bitnami::from_bitnami(&rotated)?;
    assert_eq!(rotated.scope(), Scope::Strict);
    assert_eq!(rotated.fingerprint(), Some(second_cert.fingerprint()));
    let opened = unseal_items(&rotated, &KeyRing::new([second]))?;
    assert_eq!(opened["password"].expose(), MARKER.as_bytes());
    let (code, _, body) = post(&format!("{}/v1/rotate", controller.api), &json(&theirs)?)?;
    assert_eq!(code, 409, "{body}");
    assert!(!body.contains(MARKER));

    // The limit: 1 per second sustained after a burst of 50 per client.
    let mut refused = None;
    for _ in 0..60 {
        let (code, retry_after, _) = post(&verify, &json(&ours)?)?;
        if code == 429 {
            refused = Some(retry_after);
            break;
        }
        assert_eq!(code, 200);
    }
    assert_eq!(
        refused,
        Some(Some("1".to_owned())),
        "no 429 after the burst"
    );

    let scrape = controller.scrape()?;
    assert_eq!(
        metric(&scrape, "seal_controller_keys"),
        Some(2.0),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"seal_controller_http_requests_total{handler="verify",code="429"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"handler="rotate",code="200""#),
        "{scrape}"
    );
    assert!(!scrape.contains(MARKER));
    assert!(!controller.log().contains(MARKER));
    Ok(())
}

/// Finding 5: what a client can make the certificate API spend. An oversized body and too many
/// items are refused before any decryption, a client's RSA budget runs out with a 429 that says
/// when to come back while another client is still served, a half-sent request is closed, and the
/// controller still answers afterwards.
#[tokio::test]
async fn a_client_cannot_make_the_certificate_api_spend_without_bound() -> Result<()> {
    use std::io::{Read as _, Write as _};

    let env = testenv!();
    let keys_ns = env.namespace("http-cost-keys").await?;
    let controller = ControllerProcess::start(
        env,
        keys_ns.name(),
        &[
            "--leader-elect=false",
            "--namespaces",
            keys_ns.name(),
            "--rate-limit",
            "1000",
            "--rate-limit-burst",
            "1000",
        ],
    )
    .await?;
    let certificate = first_key(&keys_ns).await?;
    let verify = format!("{}/v1/verify", controller.api);

    // 2 MiB and more: 413, whatever it holds.
    let huge = "x".repeat(seal_controller::certificate_api::MAX_BODY + 1);
    let (code, _, _) = post(&verify, &huge)?;
    assert_eq!(code, 413);

    // More items than allowed: 413 naming the limit.
    let many: Vec<(String, String)> = (0..=seal_controller::certificate_api::MAX_ITEMS)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let too_many = sealed(&certificate, keys_ns.name(), "many", &pairs)?;
    let (code, _, body) = post(&verify, &json(&too_many)?)?;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("at most"), "{body}");

    // The RSA budget: a SealedSecret of the most items allowed, posted until this client's budget
    // is spent; then 429 with Retry-After, before any work.
    let most = &pairs[..seal_controller::certificate_api::MAX_ITEMS];
    let largest = json(&sealed(&certificate, keys_ns.name(), "largest", most)?)?;
    let mut answers = Vec::new();
    for _ in 0..8 {
        let (code, retry_after, _) = post(&verify, &largest)?;
        answers.push((code, retry_after));
        if code == 429 {
            break;
        }
    }
    let (code, retry_after) = answers.last().cloned().context("no answer")?;
    assert_eq!(code, 429, "{answers:?}");
    let seconds: u64 = retry_after.context("no Retry-After")?.parse()?;
    assert!(seconds >= 1, "{seconds}");
    assert!(answers[0].0 == 200, "{answers:?}");
    // Another client address (127.0.0.2 is loopback too) pays from its own budget.
    let other = post_from([127, 0, 0, 2], &controller.api, "/v1/verify", &largest).await?;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");

    // A request whose headers never finish is closed by the controller.
    let address = controller.api.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&address)?;
    slow.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the half-sent request was not closed: {closed:?}"
    );

    // Still serving.
    let (code, _) = get(&format!("{}/v1/cert.pem", controller.api))?;
    assert_eq!(code, 200);
    Ok(())
}

/// POST `body` to `path` of `api` from the local address `from`: the response's status line.
async fn post_from(from: [u8; 4], api: &str, path: &str, body: &str) -> Result<String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

    let address: std::net::SocketAddr = api.trim_start_matches("http://").parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(from), 0).into())?;
    let mut stream = socket.connect(address).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut status = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut status)
        .await?;
    Ok(status.trim_end().to_owned())
}
