//! `seal re-encrypt`: offline bulk re-encryption for key renewal and cluster migration. Each item is
//! opened with the old keys and sealed again for the new certificate under the same scope, name and
//! namespace. Every file is processed in memory first; files are rewritten (atomically, one by one)
//! only when all of them succeeded. Files already sealed with the new certificate are left alone, so
//! git shows only what changed.
//!
//! With `--online` no key leaves the cluster: each SealedSecret is sent to the controller
//! (`POST /v1/rotate`), which re-seals it with its newest key under the object's own scope.

use std::path::PathBuf;

use seal_api::SealedSecret;
use seal_api::sealing;
use seal_api::unsealing::KeyRing;
use seal_core::Certificate;

use crate::cluster::Controller;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::SealedFile;
use crate::{CertArgs, certsource};

/// `seal re-encrypt` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Old private key(s) (PEM or TLS Secrets); repeat or separate with commas.
    #[arg(
        long = "key",
        value_name = "FILE",
        required_unless_present = "online",
        value_delimiter = ','
    )]
    pub keys: Vec<PathBuf>,

    /// Let the controller re-seal with its newest key (POST /v1/rotate through the API server;
    /// see --controller-namespace, --controller-url); no key or certificate needed here.
    #[arg(long, conflicts_with_all = ["keys", "cert", "env"])]
    pub online: bool,

    #[command(flatten)]
    pub cert: CertArgs,

    /// SealedSecret manifests to rewrite in place.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `seal re-encrypt`.
pub fn run(args: &Args) -> Outcome {
    let resealer = if args.online {
        let controller = Controller::new(&args.cert.controller_args, args.cert.request_timeout)?;
        let pem = certsource::fetch_from_controller(
            &args.cert.controller_args,
            args.cert.request_timeout,
        )?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| Failure::input(format!("{}: {e}", controller.describe())))?;
        certificate
            .check_valid_at(std::time::SystemTime::now())
            .map_err(|e| Failure::input(format!("{}: {e}", controller.describe())))?;
        Resealer::Online {
            controller: Box::new(controller),
            certificate,
        }
    } else {
        Resealer::Offline {
            ring: super::unseal::load_key_ring(&args.keys)?,
            loaded: certsource::load(&args.cert.source())?,
        }
    };
    let certificate = resealer.certificate();
    let new_fingerprint = certificate.fingerprint().to_string();
    let mut rewrites = Vec::new();
    let (mut changed, mut unchanged) = (0usize, 0usize);
    for path in &args.files {
        let input = io::read_input(path)?;
        let mut file = SealedFile::parse(&input)?;
        let mut file_changed = false;
        let mut any = false;
        for (line, sealed) in file.sealed_mut() {
            any = true;
            if sealed.spec.certificate_fingerprint.as_deref() == Some(new_fingerprint.as_str()) {
                unchanged += 1;
                continue;
            }
            let place = format!("{}:{line}", input.name);
            *sealed = resealer.reseal(sealed, &place)?;
            changed += 1;
            file_changed = true;
        }
        if !any {
            return Err(Failure::input(format!(
                "{}: no SealedSecret in this file",
                input.name
            )));
        }
        if file_changed {
            rewrites.push((path.clone(), file.render()));
        }
    }
    for (path, text) in &rewrites {
        io::write_atomic(path, text.as_bytes())?;
    }
    eprintln!(
        "re-encrypted {changed} SealedSecret(s) in {} file(s) for {} ({}); {unchanged} already sealed with it",
        rewrites.len(),
        resealer.origin(),
        certificate.fingerprint().short()
    );
    Ok(())
}

/// Who re-seals: this process with the old keys, or the controller with its own.
enum Resealer {
    Offline {
        ring: KeyRing,
        loaded: certsource::Loaded,
    },
    Online {
        controller: Box<Controller>,
        certificate: Certificate,
    },
}

impl Resealer {
    /// The certificate the result is sealed to.
    fn certificate(&self) -> &Certificate {
        match self {
            Self::Offline { loaded, .. } => &loaded.certificate,
            Self::Online { certificate, .. } => certificate,
        }
    }

    fn origin(&self) -> String {
        match self {
            Self::Offline { loaded, .. } => loaded.origin.clone(),
            Self::Online { controller, .. } => controller.describe(),
        }
    }

    fn reseal(&self, sealed: &SealedSecret, place: &str) -> Outcome<SealedSecret> {
        match self {
            Self::Offline { ring, loaded } => sealing::reseal(sealed, ring, &loaded.certificate)
                .map_err(|e| match e {
                    sealing::ResealError::Open(e) => Failure::input(e)
                        .at(place)
                        .hint("pass the key(s) the file was sealed with via --key"),
                    other => Failure::input(other).at(place),
                }),
            Self::Online {
                controller,
                certificate,
            } => {
                let body = serde_json::to_vec(sealed).map_err(|e| Failure::input(e).at(place))?;
                let answer =
                    super::verify::post_within_rate_limit(controller, "/v1/rotate", &body)?;
                if answer.status != 200 {
                    let failure = format!(
                        "the controller refused ({}): {}",
                        answer.status,
                        answer.text()
                    );
                    return Err(if answer.status == 409 || answer.status == 400 {
                        Failure::input(failure).at(place)
                    } else {
                        Failure::io(failure).at(place)
                    });
                }
                let rotated: SealedSecret = serde_json::from_slice(&answer.body).map_err(|e| {
                    Failure::io(format!(
                        "the controller's answer is not a SealedSecret: {e}"
                    ))
                    .at(place)
                })?;
                check_rotated(sealed, &rotated, certificate).map_err(|problem| {
                    Failure::io(format!(
                        "the controller's answer is not this SealedSecret re-sealed: {problem}; nothing written"
                    ))
                    .at(place)
                })?;
                Ok(rotated)
            }
        }
    }
}

/// Whether `rotated`, the controller's answer, is `original` re-sealed to `certificate` (the one
/// the controller served, and so what the file will say it is sealed to) and nothing else: the
/// same object and scope, the same template, the same item names, every item well-formed. The
/// answer is written into the user's files, so it is not trusted further than that.
fn check_rotated(
    original: &SealedSecret,
    rotated: &SealedSecret,
    certificate: &Certificate,
) -> Result<(), String> {
    if rotated.metadata.name != original.metadata.name
        || rotated.metadata.namespace != original.metadata.namespace
    {
        return Err("another name or namespace".into());
    }
    if rotated.spec.scope != original.spec.scope {
        return Err("another scope".into());
    }
    if serde_json::to_value(&rotated.spec.template).ok()
        != serde_json::to_value(&original.spec.template).ok()
    {
        return Err("another template".into());
    }
    if !rotated
        .spec
        .encrypted_data
        .keys()
        .eq(original.spec.encrypted_data.keys())
    {
        return Err("other items".into());
    }
    let fingerprint = certificate.fingerprint().to_string();
    if rotated.spec.certificate_fingerprint.as_deref() != Some(fingerprint.as_str()) {
        return Err(format!(
            "sealed to another certificate than the one the controller serves ({})",
            certificate.fingerprint().short()
        ));
    }
    if let Some((item, _)) = seal_api::unsealing::malformed_items(rotated).first() {
        return Err(format!("item {item:?} is malformed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_api::sealing::{SealOptions, seal_secret};
    use seal_core::{KeySize, PrivateKey};

    fn sealed_to(certificate: &Certificate, items: &[(&str, &str)]) -> SealedSecret {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db", "namespace": "ml"},
                "stringData": items.iter().copied().collect::<std::collections::BTreeMap<_, _>>(),
            }))
            .unwrap();
        seal_secret(
            &secret,
            &SealOptions {
                certificate,
                scope: None,
                namespace: None,
                name: None,
                allow_empty_data: false,
            },
        )
        .unwrap()
    }

    #[test]
    fn only_the_same_object_resealed_to_the_served_certificate_is_accepted() {
        let now = std::time::SystemTime::now();
        let year = std::time::Duration::from_secs(365 * 86_400);
        let old_key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let new_key = PrivateKey::generate(KeySize::Rsa2048).unwrap();
        let old = Certificate::self_signed(&old_key, now, year).unwrap();
        let served = Certificate::self_signed(&new_key, now, year).unwrap();
        let original = sealed_to(&old, &[("a", "1"), ("b", "2")]);
        let good = sealed_to(&served, &[("a", "x"), ("b", "y")]);
        assert_eq!(check_rotated(&original, &good, &served), Ok(()));

        let to_old = sealed_to(&old, &[("a", "x"), ("b", "y")]);
        assert!(
            check_rotated(&original, &to_old, &served)
                .unwrap_err()
                .contains("another certificate")
        );
        let fewer = sealed_to(&served, &[("a", "x")]);
        assert_eq!(
            check_rotated(&original, &fewer, &served),
            Err("other items".into())
        );
        let mut renamed = good.clone();
        renamed.metadata.name = Some("other".into());
        assert!(check_rotated(&original, &renamed, &served).is_err());
        let mut templated = good.clone();
        templated.spec.template = serde_json::from_value(
            serde_json::json!({"metadata": {"labels": {"seal.dev/sealing-key": "active"}}}),
        )
        .unwrap();
        assert_eq!(
            check_rotated(&original, &templated, &served),
            Err("another template".into())
        );
        let mut broken = good.clone();
        broken
            .spec
            .encrypted_data
            .insert("a".into(), "not-base64!".into());
        assert!(
            check_rotated(&original, &broken, &served)
                .unwrap_err()
                .contains("malformed")
        );
    }
}
