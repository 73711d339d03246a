//! Where the sealing certificate comes from: `--cert FILE|URL`, or `--env NAME` looked up in the
//! repository's `.seal.yaml`.
//!
//! `.seal.yaml` maps environment names to certificates so that nobody has to remember which file
//! seals for prod; it is found by walking up from the working directory (or named by `SEAL_CONFIG`),
//! and relative paths in it are relative to the file itself. An entry may pin the certificate's
//! fingerprint, which turns "fetched over the network" into "fetched and checked":
//!
//! ```yaml
//! environments:
//!   dev:
//!     cert: deploy/certs/dev.pem
//!   prod:
//!     cert: https://seal.prod.example.com/v1/cert.pem
//!     fingerprint: 5e6264b79f61bd4504183f548076a5c5bd72ab07a00d1332fb85e7b4ec1f9dcc
//! ```
//!
//! Every certificate is refused once expired, as kubeseal does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use seal_core::{Certificate, Fingerprint};
use seal_providers::endpoint::Transport;
use serde::Deserialize;

use crate::cluster::{Controller, ControllerArgs};
use crate::failure::{Failure, Outcome};
use crate::io::read_bytes;

/// The repository-level configuration file's name.
pub const CONFIG_FILE: &str = ".seal.yaml";
/// Largest certificate response accepted from a URL.
const MAX_CERT_BYTES: u64 = 1024 * 1024;

/// `.seal.yaml`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Config {
    environments: BTreeMap<String, Environment>,
}

/// One environment of `.seal.yaml`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Environment {
    /// Certificate file (relative to `.seal.yaml`) or http(s) URL.
    cert: String,
    /// Optional pin: the certificate must have this fingerprint.
    fingerprint: Option<String>,
}

/// How to find the certificate.
#[derive(Debug, Clone)]
pub struct CertSource {
    /// `--cert` or `SEAL_CERT`.
    pub cert: Option<String>,
    /// `--env` or `SEAL_ENV`.
    pub env: Option<String>,
    /// `--controller`: fetch it from the controller.
    pub controller: Option<ControllerArgs>,
    /// `--request-timeout`.
    pub timeout: Duration,
}

/// A certificate and a description of where it came from, for messages.
pub struct Loaded {
    /// The certificate.
    pub certificate: Certificate,
    /// `--cert FILE`, `env prod (FILE)` and the like.
    pub origin: String,
}

/// Finds, reads and checks the certificate.
pub fn load(source: &CertSource) -> Outcome<Loaded> {
    if let Some(controller) = &source.controller {
        let bytes = fetch_from_controller(controller, source.timeout)?;
        let origin = controller.describe();
        let certificate =
            Certificate::from_pem(&bytes).map_err(|e| Failure::input(format!("{origin}: {e}")))?;
        certificate
            .check_valid_at(SystemTime::now())
            .map_err(|e| Failure::input(format!("{origin}: {e}")))?;
        return Ok(Loaded {
            certificate,
            origin,
        });
    }
    let (location, base, pin, origin) = match (source.cert.as_deref(), source.env.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(Failure::input("--cert and --env both given; pass one"));
        }
        (Some(cert), None) => (cert.to_owned(), None, None, cert.to_owned()),
        (None, Some(env)) => {
            let (config_path, config) = find_config()?;
            let entry = config.environments.get(env).ok_or_else(|| {
                let known: Vec<_> = config.environments.keys().map(String::as_str).collect();
                Failure::input(format!(
                    "environment {env:?} is not in {} (known: {})",
                    config_path.display(),
                    known.join(", ")
                ))
            })?;
            let pin = entry
                .fingerprint
                .as_deref()
                .map(|f| {
                    f.parse::<Fingerprint>().map_err(|e| {
                        Failure::input(format!("{}: environment {env}: {e}", config_path.display()))
                    })
                })
                .transpose()?;
            let base = config_path.parent().map(Path::to_owned);
            (
                entry.cert.clone(),
                base,
                pin,
                format!("environment {env} ({})", entry.cert),
            )
        }
        (None, None) => {
            return Err(Failure::input("no certificate to seal with").hint(
                "pass --cert FILE|URL, set SEAL_CERT, or pass --env NAME with a .seal.yaml",
            ));
        }
    };
    let location = match &base {
        Some(base) if !is_url(&location) && Path::new(&location).is_relative() => {
            base.join(&location).display().to_string()
        }
        _ => location,
    };
    check_transport(&location, pin.is_some(), &origin)?;
    let bytes = read_location(&location, source.timeout)?;
    let certificate =
        Certificate::from_pem(&bytes).map_err(|e| Failure::input(format!("{origin}: {e}")))?;
    certificate.check_valid_at(SystemTime::now()).map_err(|e| {
        Failure::input(format!("{origin}: {e}")).hint("fetch the cluster's current certificate")
    })?;
    if let Some(pin) = pin
        && certificate.fingerprint() != pin
    {
        return Err(Failure::input(format!(
            "{origin}: certificate fingerprint {} does not match the pinned {}",
            certificate.fingerprint(),
            pin
        )));
    }
    Ok(Loaded {
        certificate,
        origin,
    })
}

/// The newest certificate the controller serves (`GET /v1/cert.pem`).
pub fn fetch_from_controller(args: &ControllerArgs, timeout: Duration) -> Outcome<Vec<u8>> {
    let controller = Controller::new(args, timeout)?;
    let answer = controller.get("/v1/cert.pem")?;
    if answer.status != 200 {
        return Err(Failure::io(format!(
            "{}: /v1/cert.pem answered {}: {}",
            controller.describe(),
            answer.status,
            answer.text()
        )));
    }
    Ok(answer.body)
}

/// Reads a certificate file, or fetches an http(s) URL.
pub fn read_location(location: &str, timeout: Duration) -> Outcome<Vec<u8>> {
    if is_url(location) {
        fetch(location, timeout)
    } else {
        read_bytes(Path::new(location))
    }
}

/// A certificate URL over plain http to a host that is not loopback could be swapped on the way,
/// and the values would be sealed to the swapper's key: refused unless the certificate is pinned
/// by fingerprint (`.seal.yaml`'s `fingerprint`), which the swapper cannot match.
fn check_transport(location: &str, pinned: bool, origin: &str) -> Outcome<()> {
    if !is_url(location) || pinned {
        return Ok(());
    }
    match seal_providers::endpoint::transport(location).map_err(Failure::input)? {
        Transport::Https | Transport::LoopbackHttp => Ok(()),
        Transport::PlainHttp => Err(Failure::input(format!(
            "{origin}: a certificate over plain http could be replaced on the way"
        ))
        .hint("use https, a file, or a .seal.yaml environment with a fingerprint pin")),
    }
}

fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// Finds `.seal.yaml`: `SEAL_CONFIG`, else the nearest one walking up from the working directory.
fn find_config() -> Outcome<(PathBuf, Config)> {
    let path = if let Some(explicit) = std::env::var_os("SEAL_CONFIG") {
        PathBuf::from(explicit)
    } else {
        let cwd = std::env::current_dir()
            .map_err(|e| Failure::io(format!("cannot read the working directory: {e}")))?;
        cwd.ancestors()
            .map(|dir| dir.join(CONFIG_FILE))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                Failure::input(format!(
                    "--env needs a {CONFIG_FILE}, and none was found from {} upwards",
                    cwd.display()
                ))
                .hint("create one mapping environment names to certificates (see `seal --help`)")
            })?
    };
    let text = read_bytes(&path)?;
    let config: Config = serde_yaml::from_slice(&text)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    Ok((path, config))
}

/// TLS for https URLs: rustls on aws-lc-rs, trusting the platform's CA store.
pub fn tls_config() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build()
}

/// Fetches a certificate over http(s) with a timeout, trusting the platform's CA store.
fn fetch(url: &str, timeout: Duration) -> Outcome<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .tls_config(tls_config())
        .user_agent(concat!("seal/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let failed = |e: &dyn std::fmt::Display| {
        Failure::io(format!("cannot fetch certificate from {url}: {e}"))
    };
    let mut response = agent.get(url).call().map_err(|e| failed(&e))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_CERT_BYTES)
        .read_to_vec()
        .map_err(|e| failed(&e))
}
