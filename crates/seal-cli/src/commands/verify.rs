//! `seal verify`: offline checks that each SealedSecret is well-formed and was sealed with the given
//! certificate, which catches "sealed for the wrong environment" before a deploy does. With private
//! keys it also proves that every item opens with the certificate's key, printing no values.
//!
//! With `--online` the controller itself answers (`POST /v1/verify`): every item opens with one of
//! the keys the cluster holds. No certificate or key is needed on the workstation, and nothing is
//! ever decrypted outside the cluster.

use std::fmt::Write as _;
use std::path::PathBuf;

use seal_api::SealedSecret;
use seal_api::unsealing;
use seal_core::{Certificate, PrivateKey, envelope};

use crate::cluster::Controller;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::{Doc, SealedFile};
use crate::{CertArgs, certsource};

/// `seal verify` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub cert: CertArgs,

    /// Private key(s) to prove every item opens (PEM or TLS Secrets); repeat or separate with commas.
    #[arg(long = "key", value_name = "FILE", value_delimiter = ',')]
    pub keys: Vec<PathBuf>,

    /// Ask the controller whether every item opens with the cluster's keys (POST /v1/verify
    /// through the API server; see --controller-namespace, --controller-url).
    #[arg(long, conflicts_with_all = ["keys", "cert", "env"])]
    pub online: bool,

    /// SealedSecret manifests to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `seal verify`.
pub fn run(args: &Args) -> Outcome {
    if args.online {
        return run_online(args);
    }
    let loaded = certsource::load(&args.cert.source())?;
    // With keys, only the certificate's own key may open the items: that proves both "sealed with
    // this certificate" and "opens", where any key of the ring would prove only the latter.
    let ring = if args.keys.is_empty() {
        None
    } else {
        Some(super::unseal::load_key_ring(&args.keys)?)
    };
    let fingerprint = loaded.certificate.fingerprint();
    let key = match &ring {
        None => None,
        Some(ring) => Some(ring.get(fingerprint).ok_or_else(|| {
            Failure::input(format!(
                "none of the --key files is the private key of {} (fingerprint {})",
                loaded.origin,
                fingerprint.short()
            ))
        })?),
    };

    let mut report = String::new();
    let (mut checked, mut failed) = (0usize, 0usize);
    for path in &args.files {
        let input = io::read_input(path)?;
        let file = SealedFile::parse(&input)?;
        let mut found = false;
        for doc in &file.docs {
            let Doc::Sealed { line, sealed, .. } = doc else {
                continue;
            };
            found = true;
            checked += 1;
            let place = format!("{}:{line} {}", input.name, object_name(sealed));
            let problems = check(sealed, &loaded.certificate, key);
            if problems.is_empty() {
                let _ = writeln!(
                    report,
                    "ok    {place}: {} items, certificate {}{}",
                    sealed.spec.encrypted_data.len(),
                    loaded.certificate.fingerprint().short(),
                    if key.is_some() { ", all open" } else { "" }
                );
            } else {
                failed += 1;
                for problem in problems {
                    let _ = writeln!(report, "FAIL  {place}: {problem}");
                }
            }
        }
        if !found {
            failed += 1;
            let _ = writeln!(report, "FAIL  {}: no SealedSecret in this file", input.name);
        }
    }
    io::print(&report)?;
    if failed > 0 {
        return Err(Failure::found(format!(
            "{failed} of {} checks failed",
            checked.max(failed)
        )));
    }
    Ok(())
}

fn run_online(args: &Args) -> Outcome {
    let controller = Controller::new(&args.cert.controller_args, args.cert.request_timeout)?;
    let mut report = String::new();
    let (mut checked, mut failed) = (0usize, 0usize);
    for path in &args.files {
        let input = io::read_input(path)?;
        let file = SealedFile::parse(&input)?;
        let mut found = false;
        for doc in &file.docs {
            let Doc::Sealed { line, sealed, .. } = doc else {
                continue;
            };
            found = true;
            checked += 1;
            let place = format!("{}:{line} {}", input.name, object_name(sealed));
            let body =
                serde_json::to_vec(sealed.as_ref()).map_err(|e| Failure::input(e).at(&place))?;
            let answer = post_within_rate_limit(&controller, "/v1/verify", &body)?;
            match answer.status {
                200 => {
                    let _ = writeln!(
                        report,
                        "ok    {place}: {} items open in {}",
                        sealed.spec.encrypted_data.len(),
                        controller.describe()
                    );
                }
                400 | 409 => {
                    failed += 1;
                    let _ = writeln!(report, "FAIL  {place}: {}", answer.text());
                }
                status => {
                    return Err(Failure::io(format!(
                        "{}: /v1/verify answered {status}: {}",
                        controller.describe(),
                        answer.text()
                    )));
                }
            }
        }
        if !found {
            failed += 1;
            let _ = writeln!(report, "FAIL  {}: no SealedSecret in this file", input.name);
        }
    }
    io::print(&report)?;
    if failed > 0 {
        return Err(Failure::found(format!(
            "{failed} of {} checks failed",
            checked.max(failed)
        )));
    }
    Ok(())
}

/// POSTs to the controller, waiting out its rate limit (429 with Retry-After) for up to a minute.
pub fn post_within_rate_limit(
    controller: &Controller,
    path: &str,
    body: &[u8],
) -> Outcome<crate::cluster::Answer> {
    for _ in 0..60 {
        let answer = controller.post(path, body.to_vec())?;
        if answer.status != 429 {
            return Ok(answer);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Err(Failure::io(format!(
        "{}: still rate-limited after a minute of retries",
        controller.describe()
    )))
}

fn check(
    sealed: &SealedSecret,
    certificate: &Certificate,
    key: Option<&PrivateKey>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = sealed.label() {
        problems.push(e.to_string());
    }
    for (item, problem) in unsealing::malformed_items(sealed) {
        problems.push(format!(
            "item {item:?}: {}",
            seal_core::OpenError::from(problem)
        ));
    }
    match sealed.spec.certificate_fingerprint.as_deref() {
        Some(recorded) if recorded != certificate.fingerprint().to_string() => problems.push(format!(
            "sealed with certificate {}, not {}",
            recorded.chars().take(12).collect::<String>(),
            certificate.fingerprint().short()
        )),
        None if key.is_none() => problems.push(
            "no certificate fingerprint recorded (a converted Bitnami manifest?); pass --key to prove the items open".into(),
        ),
        Some(_) | None => {}
    }
    if let (Some(key), true) = (key, problems.is_empty())
        && let Ok(label) = sealed.label()
    {
        for (item, value) in &sealed.spec.encrypted_data {
            if let Err(e) = envelope::open_base64([key], &label, value) {
                problems.push(format!("item {item:?}: {e}"));
            }
        }
    }
    problems
}

fn object_name(sealed: &SealedSecret) -> String {
    format!(
        "{}/{}",
        sealed
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("<no namespace>"),
        sealed.metadata.name.as_deref().unwrap_or("<no name>")
    )
}
