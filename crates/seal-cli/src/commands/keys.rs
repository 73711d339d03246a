//! `seal keys`: the controller's sealing keys, through the user's own kubeconfig.
//!
//! - `renew` asks the controller for a new key now by annotating the newest active key Secret
//!   `seal.dev/renew-requested-at: <now>`. The request is an ordinary Kubernetes write, so RBAC on
//!   the key namespace (`patch` on Secrets there) decides who may renew, the audit log records
//!   who did, and no extra endpoint has to be exposed or authenticated. The leader makes the key
//!   and the command waits until it appears.
//! - `restore` recreates key Secrets from the controller's backup (`--backup-cert`): the
//!   `seal-key-backup` ConfigMap, or SealedSecret files of key Secrets, opened with the offline
//!   recovery key. Keys already present are left alone.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use seal_api::SealedSecret;
use seal_api::manifest::{self, Object};
use seal_api::names::{BACKUP_LABEL, RENEW_REQUEST_ANNOTATION, SEALING_KEY_LABEL};
use seal_api::unsealing::unseal_to_secret;
use seal_core::Certificate;

use crate::cluster::{Cluster, ControllerArgs};
use crate::failure::{Failure, Outcome};
use crate::io;

/// `seal keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Ask the controller for a new sealing key now, and wait for it.
    #[command(after_help = "\
Examples:
  seal keys renew
  seal keys renew --context prod --controller-namespace seal-system --wait 2m

Needs `patch` on Secrets in the controller's namespace: the request is an annotation on the
newest key Secret, made with your kubeconfig, so RBAC decides who may renew.")]
    Renew {
        #[command(flatten)]
        controller: ControllerArgs,

        /// How long to wait for the new key (0 to not wait).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = seal_core::parse_duration)]
        wait: Duration,
    },

    /// Recreate key Secrets from a backup, opened with the offline recovery key.
    #[command(after_help = "\
Examples:
  kubectl get configmap seal-key-backup -n seal-system -o yaml > keys-backup.yaml   # commit it
  seal keys restore --key recovery.key keys-backup.yaml                              # new cluster
  seal keys restore --key recovery.key --yes keys-backup.yaml                        # in a script

The backup is written by a controller started with --backup-cert recovery.crt. Every key is checked
(its certificate belongs to its private key and is not dated in the future) and listed with its
fingerprint and validity before anything is written; then you confirm (or pass --yes).")]
    Restore {
        /// The recovery private key (PEM), or a file of TLS Secrets holding it.
        #[arg(
            long = "key",
            value_name = "FILE",
            required = true,
            value_delimiter = ','
        )]
        keys: Vec<PathBuf>,

        /// Backups: the seal-key-backup ConfigMap, or SealedSecret files of key Secrets.
        #[arg(value_name = "BACKUP", required = true)]
        files: Vec<PathBuf>,

        /// Write without asking (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,

        #[command(flatten)]
        controller: ControllerArgs,
    },
}

/// Runs `seal keys ...`.
pub fn run(command: &Command) -> Outcome {
    let (Command::Renew { controller, .. } | Command::Restore { controller, .. }) = command;
    if controller.controller_url.is_some() {
        return Err(Failure::input(
            "seal keys works on the key Secrets through the API server; --controller-url does not apply",
        )
        .hint("use --kubeconfig/--context and --controller-namespace"));
    }
    match command {
        Command::Renew { controller, wait } => renew(controller, *wait),
        Command::Restore {
            keys,
            files,
            controller,
            yes,
        } => restore(keys, files, controller, *yes),
    }
}

fn renew(args: &ControllerArgs, wait: Duration) -> Outcome {
    let cluster = Cluster::connect(args, Duration::from_secs(30))?;
    let namespace = &args.controller_namespace;
    let api: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    let selector = format!("{SEALING_KEY_LABEL}=active");
    let newest_key = |api: Api<Secret>| {
        let selector = selector.clone();
        async move {
            let list = api.list(&ListParams::default().labels(&selector)).await?;
            Ok::<_, kube::Error>(list.items.into_iter().max_by_key(start_of))
        }
    };
    let denied = |e: kube::Error| {
        Failure::io(format!("key Secrets in {namespace}: {e}"))
            .hint("renewing needs list and patch on Secrets in the controller's namespace")
    };
    let newest = cluster
        .block_on(newest_key(api.clone()))?
        .map_err(denied)?
        .ok_or_else(|| {
            Failure::input(format!(
                "no active key Secret in {namespace}: is the controller running there?"
            ))
            .hint("pass --controller-namespace")
        })?;
    let before = start_of(&newest);
    // Whole seconds, as certificates start on whole seconds.
    let clock = |e: k8s_openapi::jiff::Error| Failure::io(format!("the system clock: {e}"));
    let now = k8s_openapi::jiff::Timestamp::try_from(SystemTime::now()).map_err(clock)?;
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).map_err(clock)?;
    let patch = serde_json::json!({
        "metadata": {"annotations": {RENEW_REQUEST_ANNOTATION: now.to_string()}}
    });
    let name = newest.name_any();
    cluster
        .block_on(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))?
        .map_err(denied)?;
    eprintln!("asked for a new key ({RENEW_REQUEST_ANNOTATION}: {now} on {namespace}/{name})");
    if wait.is_zero() {
        return Ok(());
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let current = cluster.block_on(newest_key(api.clone()))?.map_err(denied)?;
        if let Some(current) = current.filter(|c| start_of(c) > before) {
            let fingerprint = certificate_of(&current)
                .map(|c| c.fingerprint().to_string())
                .unwrap_or_default();
            io::print(&format!("{fingerprint}\n"))?;
            eprintln!(
                "new key {namespace}/{}; fetch its certificate with `seal cert fetch`",
                current.name_any()
            );
            return Ok(());
        }
    }
    Err(Failure::io(format!(
        "no new key in {namespace} within {wait:?}; the request stays and the leader will act on it"
    ))
    .hint("check the controller's logs and that one replica leads"))
}

/// The certificate of a key Secret.
fn certificate_of(secret: &Secret) -> Option<Certificate> {
    let pem = secret.data.as_ref()?.get("tls.crt")?;
    Certificate::from_pem(&pem.0).ok()
}

/// When a key Secret's certificate starts (the controller's notion of newest).
fn start_of(secret: &Secret) -> Option<time::OffsetDateTime> {
    certificate_of(secret).map(|c| c.not_before())
}

fn restore(key_files: &[PathBuf], files: &[PathBuf], args: &ControllerArgs, yes: bool) -> Outcome {
    let ring = super::unseal::load_key_ring(key_files)?;
    let mut secrets = Vec::new();
    for path in files {
        let input = io::read_input(path)?;
        let mut sealed = Vec::new();
        for located in
            manifest::parse(&input.text).map_err(|e| Failure::input(e).at(&input.name))?
        {
            let place = format!("{}:{}", input.name, located.line);
            match located.object {
                Object::SealedSecret(one) => sealed.push((place, *one)),
                Object::Other { kind, value, .. }
                    if kind == "ConfigMap"
                        && value["metadata"]["labels"][BACKUP_LABEL].as_str() == Some("true") =>
                {
                    for (entry, text) in value["data"].as_object().into_iter().flatten() {
                        let text = text.as_str().unwrap_or_default();
                        for inner in manifest::parse(text)
                            .map_err(|e| Failure::input(e).at(format!("{place} {entry}")))?
                        {
                            if let Object::SealedSecret(one) = inner.object {
                                sealed.push((format!("{place} {entry}"), *one));
                            }
                        }
                    }
                }
                other => {
                    return Err(Failure::input(format!(
                        "expected a key backup, found {}",
                        other.describe()
                    ))
                    .at(&place));
                }
            }
        }
        for (place, one) in sealed {
            secrets.push((place.clone(), key_secret(&one, &ring, &place, args)?));
        }
    }
    if secrets.is_empty() {
        return Err(Failure::input("no key backup in the given files"));
    }
    // What will be written, checked and shown before anything is.
    show_restored_keys(&secrets, &args.controller_namespace)?;
    confirm(
        yes,
        &format!("create them in {}?", args.controller_namespace),
    )?;
    let cluster = Cluster::connect(args, Duration::from_secs(30))?;
    let api: Api<Secret> = Api::namespaced(cluster.client(), &args.controller_namespace);
    let (mut created, mut present) = (0usize, 0usize);
    for (place, secret) in &secrets {
        let name = secret.name_any();
        let existing = cluster
            .block_on(api.get_opt(&name))?
            .map_err(|e| Failure::io(format!("{}/{name}: {e}", args.controller_namespace)))?;
        if let Some(existing) = existing {
            if certificate_of(&existing).map(|c| c.fingerprint())
                == certificate_of(secret).map(|c| c.fingerprint())
            {
                present += 1;
                continue;
            }
            return Err(Failure::input(format!(
                "{}/{name} exists and holds another key; not overwritten",
                args.controller_namespace
            ))
            .at(place));
        }
        cluster
            .block_on(api.create(&PostParams::default(), secret))?
            .map_err(|e| {
                Failure::io(format!(
                    "creating {}/{name}: {e}",
                    args.controller_namespace
                ))
            })?;
        created += 1;
        eprintln!(
            "restored {}/{name} ({})",
            args.controller_namespace,
            certificate_of(secret)
                .map(|c| c.fingerprint().short())
                .unwrap_or_default()
        );
    }
    eprintln!("{created} key(s) restored, {present} already present");
    Ok(())
}

/// Checks every key about to be restored ([`check_restored_key`]) and lists it on stderr with its
/// fingerprint and validity.
fn show_restored_keys(secrets: &[(String, Secret)], namespace: &str) -> Outcome {
    let now = SystemTime::now();
    eprintln!("{} key(s) for namespace {namespace}:", secrets.len());
    for (place, secret) in secrets {
        let certificate =
            check_restored_key(secret, now).map_err(|e| Failure::input(e).at(place))?;
        eprintln!(
            "  {}  fingerprint {}  valid {} to {}",
            secret.name_any(),
            certificate.fingerprint(),
            certificate.not_before().date(),
            certificate.not_after().date(),
        );
    }
    Ok(())
}

/// A restored key Secret's certificate, when the Secret is one the controller will trust: its
/// certificate belongs to its private key and is valid now (not dated in the future: such a key
/// would become the sealing key). An expired certificate is fine: old keys keep decrypting.
fn check_restored_key(secret: &Secret, now: SystemTime) -> Result<Certificate, String> {
    let data = secret.data.as_ref();
    let certificate = certificate_of(secret).ok_or("tls.crt is not a certificate")?;
    let key = data
        .and_then(|d| d.get("tls.key"))
        .and_then(|pem| seal_core::PrivateKey::from_pem(&pem.0).ok())
        .ok_or("tls.key is not an RSA private key")?;
    if key.fingerprint() != certificate.fingerprint() {
        return Err("tls.crt does not belong to tls.key".into());
    }
    if let Err(error @ seal_core::CertError::NotYetValid { .. }) = certificate.check_valid_at(now) {
        return Err(format!("{error}: a key from the future is refused"));
    }
    Ok(certificate)
}

/// Asks `question` on the terminal unless `yes`; without a terminal, refuses.
fn confirm(yes: bool, question: &str) -> Outcome {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::input("nothing written: confirmation needed")
            .hint("check the keys listed above, then run again with --yes"));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::io(format!("reading the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::input("nothing written: not confirmed"))
    }
}

/// The key Secret a backup entry holds, for the target namespace; only TLS key Secrets pass.
fn key_secret(
    sealed: &SealedSecret,
    ring: &seal_api::unsealing::KeyRing,
    place: &str,
    args: &ControllerArgs,
) -> Outcome<Secret> {
    let mut secret = unseal_to_secret(sealed, ring).map_err(|e| {
        Failure::input(e)
            .at(place)
            .hint("pass the recovery private key that matches the --backup-cert certificate")
    })?;
    if secret.type_.as_deref() != Some("kubernetes.io/tls") || certificate_of(&secret).is_none() {
        return Err(Failure::input("not a key Secret (kubernetes.io/tls with tls.crt)").at(place));
    }
    secret.metadata.namespace = Some(args.controller_namespace.clone());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use seal_core::{KeySize, PrivateKey};

    fn key_secret(key: &PrivateKey, certificate: &Certificate) -> Secret {
        Secret {
            data: Some(
                [
                    (
                        "tls.crt".to_owned(),
                        ByteString(certificate.to_pem().into_bytes()),
                    ),
                    (
                        "tls.key".to_owned(),
                        ByteString(key.to_pkcs1_pem().as_bytes().to_vec()),
                    ),
                ]
                .into(),
            ),
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        }
    }

    #[test]
    fn a_restored_key_must_match_its_certificate_and_not_come_from_the_future() {
        let now = SystemTime::now();
        let key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let other = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let year = Duration::from_secs(365 * 86_400);
        let current = Certificate::self_signed(&key, now, year).unwrap();
        let future =
            Certificate::self_signed(&key, now + Duration::from_secs(86_400), year).unwrap();
        let expired = Certificate::self_signed(&key, now - 2 * year, year).unwrap();

        assert!(check_restored_key(&key_secret(&key, &current), now).is_ok());
        assert!(
            check_restored_key(&key_secret(&key, &expired), now).is_ok(),
            "old keys keep decrypting"
        );
        let refused = check_restored_key(&key_secret(&key, &future), now).unwrap_err();
        assert!(refused.contains("from the future"), "{refused}");
        let refused = check_restored_key(&key_secret(&other, &current), now).unwrap_err();
        assert!(refused.contains("does not belong"), "{refused}");
    }
}
