//! `seal` against a running controller, end to end: the certificate fetched through the API
//! server's service proxy (and from a URL), `seal --controller`, `seal verify --online`,
//! `seal keys renew`, `seal re-encrypt --online`, kubeseal v0.40.0 sealing with the served
//! certificate and `seal convert`, and disaster recovery: the keys wiped, restored from the
//! `--backup-cert` backup with `seal keys restore`, and the old SealedSecrets unsealing again.
//!
//! The service proxy needs the controller on an address the API server accepts as a pod's (not
//! loopback), so this test binds it to the machine's own non-loopback address and registers a Pod,
//! Service and EndpointSlice for it, as a kubelet and the EndpointSlice controller would.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use seal_api::SealedSecret;
use seal_api::manifest::{self, Object};

use seal_api::names::{BACKUP_CONFIGMAP, SEALING_KEY_LABEL};
use seal_core::{Certificate, KeySize, PrivateKey};
use seal_testenv::{TestNamespace, eventually, testenv};
use serde_json::json;

use crate::support::{
    ControllerProcess, Ran, first_key, install_crds, item, kubeseal, run, seal_binary,
};

const MARKER: &str = "online-marker-c41d";
const LIMIT: Duration = Duration::from_secs(60);

/// The first non-loopback IPv4 address of this machine.
fn own_address() -> Result<IpAddr> {
    nix::ifaddrs::getifaddrs()?
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())))
        .find(|ip| !ip.is_loopback())
        .context("this machine has no non-loopback IPv4 address for the service proxy")
}

/// Registers the controller listening at `address:port` as Service `seal-controller` (port `http`)
/// in `ns`: a Pod whose status carries the address, and an EndpointSlice pointing at the Pod.
async fn expose(ns: &TestNamespace, address: IpAddr, port: u16) -> Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "seal-controller-0"},
        // Gated, so the node's scheduler and kubelet leave this stand-in Pod alone.
        "spec": {
            "containers": [{"name": "controller", "image": "seal-controller"}],
            "schedulingGates": [{"name": "seal.dev/not-a-real-pod"}]
        }
    }))?;
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await?;
    let status =
        json!({"status": {"podIP": address.to_string(), "podIPs": [{"ip": address.to_string()}]}});
    pods.patch_status(
        "seal-controller-0",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "seal-controller"},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": port}]}
    }))?;
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "seal-controller-1", "labels": {"kubernetes.io/service-name": "seal-controller"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{
            "addresses": [address.to_string()],
            "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": "seal-controller-0", "namespace": ns.name()}
        }]
    }))?;
    ns.api::<EndpointSlice>()
        .create(&PostParams::default(), &slice)
        .await?;
    Ok(())
}

fn expect(ran: &Ran, code: i32, what: &str) -> Result<()> {
    ensure!(
        ran.code == code,
        "{what}: exit {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
        ran.code,
        ran.stdout,
        ran.stderr
    );
    Ok(())
}

async fn apply_file(ns: &TestNamespace, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    for located in manifest::parse(&text)? {
        let Object::SealedSecret(sealed) = located.object else {
            bail!(
                "{} holds something else than a SealedSecret",
                path.display()
            );
        };
        let name = sealed.metadata.name.clone().context("a name")?;
        let mut sealed = *sealed;
        sealed.metadata.namespace = None;
        ns.api::<SealedSecret>()
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&sealed),
            )
            .await?;
    }
    Ok(())
}

async fn secret_value(ns: &TestNamespace, name: &str, key: &str) -> Result<Vec<u8>> {
    let api = ns.api::<Secret>();
    let name = name.to_owned();
    let key = key.to_owned();
    eventually("the Secret is unsealed", LIMIT, move || {
        let api = api.clone();
        let name = name.clone();
        let key = key.clone();
        async move { Ok(api.get_opt(&name).await?.and_then(|s| item(&s, &key))) }
    })
    .await
}

#[tokio::test]
async fn seal_works_online_and_keys_survive_a_restore() -> Result<()> {
    let env = testenv!();
    install_crds(env).await?;
    let keys = env.namespace("online-keys").await?;
    let app = env.namespace("online-app").await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let seal = seal_binary()?;
    let kubeconfig = env.kubeconfig().as_os_str();
    let cluster_env = [("KUBECONFIG", kubeconfig)];

    // An offline recovery key pair; the controller backs its keys up to the certificate.
    let recovery = PrivateKey::generate(KeySize::Rsa2048)?;
    let recovery_cert =
        Certificate::self_signed(&recovery, SystemTime::now(), Duration::from_secs(86_400))?;
    std::fs::write(dir.join("recovery.crt"), recovery_cert.to_pem())?;
    std::fs::write(dir.join("recovery.key"), recovery.to_pkcs1_pem().as_bytes())?;

    let address = own_address()?;
    let listen = format!("{address}:0");
    let backup_cert = dir.join("recovery.crt");
    let mut controller = ControllerProcess::start(
        env,
        keys.name(),
        &[
            "--namespaces",
            app.name(),
            "--listen-addr",
            &listen,
            "--backup-cert",
            backup_cert.to_str().context("utf-8 path")?,
        ],
    )
    .await?;
    let port: u16 = controller
        .api
        .rsplit(':')
        .next()
        .context("a port")?
        .parse()?;
    let first = first_key(&keys).await?;
    expose(&keys, address, port).await?;
    let ns_flag = ["--controller-namespace", keys.name()];

    // The certificate, through the service proxy and from the URL.
    let fetched = run(
        &seal,
        &[&["cert", "fetch"][..], &ns_flag].concat(),
        &cluster_env,
        dir,
    )?;
    expect(&fetched, 0, "seal cert fetch")?;
    assert_eq!(
        Certificate::from_pem(fetched.stdout.as_bytes())?.fingerprint(),
        first.fingerprint()
    );
    let from_url = run(
        &seal,
        &[
            "cert",
            "fetch",
            "--controller-url",
            &controller.api,
            "-w",
            "url.pem",
        ],
        &[],
        dir,
    )?;
    expect(&from_url, 0, "seal cert fetch --controller-url")?;
    assert_eq!(
        std::fs::read_to_string(dir.join("url.pem"))?,
        fetched.stdout
    );
    let wrong = run(
        &seal,
        &["cert", "fetch", "--controller-namespace", "nowhere"],
        &cluster_env,
        dir,
    )?;
    expect(&wrong, 3, "seal cert fetch from a missing controller")?;

    // Seal with the controller's certificate, apply, unseal.
    std::fs::write(
        dir.join("secret.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {}\nstringData:\n  password: {MARKER}\n",
            app.name()
        ),
    )?;
    let sealed = run(
        &seal,
        &[
            &["--controller", "-w", "db.sealed.yaml", "secret.yaml"][..],
            &ns_flag,
        ]
        .concat(),
        &cluster_env,
        dir,
    )?;
    expect(&sealed, 0, "seal --controller")?;
    apply_file(&app, &dir.join("db.sealed.yaml")).await?;
    assert_eq!(
        secret_value(&app, "db", "password").await?,
        MARKER.as_bytes()
    );

    // verify --online: 0 for ours, 1 for one sealed to a stranger's certificate.
    let verified = run(
        &seal,
        &[&["verify", "--online", "db.sealed.yaml"][..], &ns_flag].concat(),
        &cluster_env,
        dir,
    )?;
    expect(&verified, 0, "seal verify --online")?;
    assert!(verified.stdout.starts_with("ok"), "{}", verified.stdout);
    let stranger = PrivateKey::generate(KeySize::Rsa2048)?;
    std::fs::write(
        dir.join("stranger.crt"),
        Certificate::self_signed(&stranger, SystemTime::now(), Duration::from_secs(3600))?.to_pem(),
    )?;
    expect(
        &run(
            &seal,
            &[
                "--cert",
                "stranger.crt",
                "-w",
                "stranger.sealed.yaml",
                "secret.yaml",
            ],
            &[],
            dir,
        )?,
        0,
        "seal --cert stranger.crt",
    )?;
    let refused = run(
        &seal,
        &[
            &["verify", "--online", "stranger.sealed.yaml"][..],
            &ns_flag,
        ]
        .concat(),
        &cluster_env,
        dir,
    )?;
    expect(
        &refused,
        1,
        "seal verify --online of a stranger's SealedSecret",
    )?;
    assert!(refused.stdout.contains("FAIL") && !refused.stdout.contains(MARKER));

    // kubeseal seals with the served certificate; seal convert; the controller unseals it.
    if let Some(kubeseal) = kubeseal() {
        std::fs::write(
            dir.join("api.yaml"),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: {}\nstringData:\n  token: {MARKER}\n",
                app.name()
            ),
        )?;
        let cert_url = format!("{}/v1/cert.pem", controller.api);
        let ran = run(
            &kubeseal,
            &[
                "--cert",
                &cert_url,
                "-f",
                "api.yaml",
                "-w",
                "api.bitnami.yaml",
            ],
            &[("KUBECONFIG", OsStr::new("/dev/null"))],
            dir,
        )?;
        expect(&ran, 0, "kubeseal --cert URL")?;
        let converted = run(&seal, &["convert", "api.bitnami.yaml"], &[], dir)?;
        expect(&converted, 0, "seal convert")?;
        std::fs::write(dir.join("api.sealed.yaml"), &converted.stdout)?;
        apply_file(&app, &dir.join("api.sealed.yaml")).await?;
        assert_eq!(secret_value(&app, "api", "token").await?, MARKER.as_bytes());
    }

    // keys renew: a new key through the authenticated path, served at once; old objects still open.
    let renewed = run(
        &seal,
        &[&["keys", "renew"][..], &ns_flag].concat(),
        &cluster_env,
        dir,
    )?;
    expect(&renewed, 0, "seal keys renew")?;
    let second = renewed.stdout.trim().to_owned();
    assert_ne!(second, first.fingerprint().to_string());
    let served = eventually("the new certificate is served", LIMIT, || {
        let api = controller.api.clone();
        let second = second.clone();
        async move {
            let (_, pem) = crate::support::get(&format!("{api}/v1/cert.pem"))?;
            let fingerprint = Certificate::from_pem(pem.as_bytes())?
                .fingerprint()
                .to_string();
            Ok((fingerprint == second).then_some(fingerprint))
        }
    })
    .await?;
    app.api::<Secret>()
        .delete("db", &DeleteParams::default())
        .await?;
    assert_eq!(
        secret_value(&app, "db", "password").await?,
        MARKER.as_bytes()
    );

    // re-encrypt --online moves the file to the new key; the controller still unseals it.
    let rotated = run(
        &seal,
        &[&["re-encrypt", "--online", "db.sealed.yaml"][..], &ns_flag].concat(),
        &cluster_env,
        dir,
    )?;
    expect(&rotated, 0, "seal re-encrypt --online")?;
    let text = std::fs::read_to_string(dir.join("db.sealed.yaml"))?;
    assert!(
        text.contains(&served),
        "not re-sealed with the new key:\n{text}"
    );
    apply_file(&app, &dir.join("db.sealed.yaml")).await?;

    // The backup holds both keys and is safe to commit: no key material in the clear.
    let backup = eventually("the backup holds both keys", LIMIT, || {
        let api = keys.api::<ConfigMap>();
        async move {
            let backup = api.get_opt(BACKUP_CONFIGMAP).await?;
            Ok(backup.filter(|b| b.data.as_ref().is_some_and(|d| d.len() == 2)))
        }
    })
    .await?;
    let backup_yaml = serde_yaml::to_string(&backup)?;
    assert!(!backup_yaml.contains("PRIVATE KEY") && !backup_yaml.contains(MARKER));
    std::fs::write(dir.join("keys-backup.yaml"), &backup_yaml)?;

    // Disaster: the controller and every key are gone. A new key namespace stands in for the new
    // cluster; the restore brings both keys back and the old SealedSecrets unseal again.
    controller.kill()?;
    let key_secrets = keys.api::<Secret>();
    for secret in key_secrets
        .list(&ListParams::default().labels(SEALING_KEY_LABEL))
        .await?
    {
        key_secrets
            .delete(
                &secret.metadata.name.unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await?;
    }
    let new_keys = env.namespace("online-restored").await?;
    let restore_with = |key: &str, yes: bool| {
        let mut args = vec![
            "keys",
            "restore",
            "--key",
            key,
            "--controller-namespace",
            new_keys.name(),
            "keys-backup.yaml",
        ];
        if yes {
            args.push("--yes");
        }
        run(&seal, &args, &cluster_env, dir)
    };
    let restore = |key: &str| restore_with(key, true);
    // Without --yes and without a terminal: the keys are listed with their fingerprints and
    // validity, nothing is written.
    let asked = restore_with("recovery.key", false)?;
    assert_ne!(asked.code, 0, "{}", asked.stderr);
    assert!(
        asked.stderr.contains("confirmation needed"),
        "{}",
        asked.stderr
    );
    assert!(asked.stderr.contains("fingerprint "), "{}", asked.stderr);
    assert!(
        new_keys
            .api::<Secret>()
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .iter()
            .all(|s| s.type_.as_deref() != Some("kubernetes.io/tls")),
        "a key was written without confirmation"
    );
    let restored = restore("recovery.key")?;
    expect(&restored, 0, "seal keys restore")?;
    assert!(
        restored.stderr.contains("2 key(s) restored"),
        "{}",
        restored.stderr
    );
    let again = restore("recovery.key")?;
    expect(&again, 0, "seal keys restore, twice")?;
    assert!(
        again
            .stderr
            .contains("0 key(s) restored, 2 already present"),
        "{}",
        again.stderr
    );
    let wrong_key = restore("stranger.crt")?;
    ensure!(
        wrong_key.code != 0,
        "a restore without the recovery key succeeded"
    );

    app.api::<Secret>()
        .delete("db", &DeleteParams::default())
        .await?;
    let _restarted =
        ControllerProcess::start(env, new_keys.name(), &["--namespaces", app.name()]).await?;
    assert_eq!(
        secret_value(&app, "db", "password").await?,
        MARKER.as_bytes()
    );
    let after = new_keys
        .api::<Secret>()
        .list(&ListParams::default().labels(SEALING_KEY_LABEL))
        .await?;
    let names: BTreeSet<String> = after
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "the restored controller made a key of its own: {names:?}"
    );
    Ok(())
}
