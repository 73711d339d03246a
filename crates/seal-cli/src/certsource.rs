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
//! `--env` may select several environments (`dev,staging,prod`, or `all` for every one of the
//! file, sorted by name). [`select`] resolves the names before any certificate is read;
//! [`Selection::load_all`] then reads each environment's own certificate, and [`expand`] turns
//! `{env}` in a path into each name. Commands that work with one certificate go through [`load`],
//! which refuses a selection of several.
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
    /// `--env` or `SEAL_ENV`: a name, a comma-separated list, or `all` (see [`EnvSpec`]).
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

/// Finds, reads and checks the one certificate a command seals or checks with. An `--env` that
/// selects several environments is refused here: `seal` and `seal verify` take several, through
/// [`selection`].
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
    match (source.cert.as_deref(), source.env.as_deref()) {
        (Some(_), Some(_)) => Err(Failure::input("--cert and --env both given; pass one")),
        (Some(cert), None) => read_checked(cert, None, cert.to_owned(), source.timeout),
        (None, Some(spec)) => {
            let selection = select(spec)?;
            let [name] = selection.names() else {
                return Err(Failure::input(format!(
                    "--env {spec} selects {} environments ({}); this command takes one",
                    selection.names().len(),
                    selection.names().join(", ")
                ))
                .hint("seal and seal verify take several, with {env} in -w or FILE"));
            };
            selection.load(name, source.timeout)
        }
        (None, None) => Err(Failure::input("no certificate to seal with")
            .hint("pass --cert FILE|URL, set SEAL_CERT, or pass --env NAME with a .seal.yaml")),
    }
}

/// What `--env` asks for: every environment of `.seal.yaml`, or these names in this order.
#[derive(Debug, PartialEq, Eq)]
enum EnvSpec {
    /// `all`.
    All,
    /// `dev` or `dev,staging,prod`.
    Names(Vec<String>),
}

/// The word that selects every environment.
const ALL: &str = "all";

impl EnvSpec {
    /// Parses `--env`: one name, a comma-separated list (spaces around names are ignored), or
    /// `all`. An empty name, `all` mixed with names, and a name listed twice are refused: a repeated
    /// name is most likely a typo for another environment, which deduplicating would silently skip.
    fn parse(spec: &str) -> Outcome<Self> {
        let names: Vec<&str> = spec.split(',').map(str::trim).collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(
                Failure::input(format!("--env {spec:?}: an environment name is empty"))
                    .hint("separate names with commas: --env dev,staging,prod"),
            );
        }
        if names == [ALL] {
            return Ok(Self::All);
        }
        if names.contains(&ALL) {
            return Err(Failure::input(format!(
                "--env {spec}: `{ALL}` selects every environment and takes no other names"
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Failure::input(format!(
                    "--env {spec}: environment {name} is listed twice"
                )));
            }
        }
        Ok(Self::Names(names.into_iter().map(str::to_owned).collect()))
    }
}

impl Config {
    /// The environment names `spec` selects, checked against this file (`path`, for messages):
    /// listed names in their order, or for `all` every environment sorted by name (the file's
    /// order is not kept by the parser, and sorted is stable however the file is edited).
    fn resolve(&self, spec: &EnvSpec, path: &Path) -> Outcome<Vec<String>> {
        let known = || {
            let names: Vec<_> = self.environments.keys().map(String::as_str).collect();
            names.join(", ")
        };
        match spec {
            EnvSpec::All if self.environments.contains_key(ALL) => Err(Failure::input(format!(
                "{}: an environment is named {ALL:?}, which --env {ALL} cannot select alone",
                path.display()
            ))
            .hint("rename that environment")),
            EnvSpec::All if self.environments.is_empty() => Err(Failure::input(format!(
                "{}: no environments defined",
                path.display()
            ))),
            EnvSpec::All => Ok(self.environments.keys().cloned().collect()),
            EnvSpec::Names(names) => {
                let unknown: Vec<_> = names
                    .iter()
                    .filter(|n| !self.environments.contains_key(*n))
                    .map(|n| format!("{n:?}"))
                    .collect();
                match unknown.as_slice() {
                    [] => Ok(names.clone()),
                    [one] => Err(Failure::input(format!(
                        "environment {one} is not in {} (known: {})",
                        path.display(),
                        known()
                    ))),
                    several => Err(Failure::input(format!(
                        "environments {} are not in {} (known: {})",
                        several.join(", "),
                        path.display(),
                        known()
                    ))),
                }
            }
        }
    }
}

/// The environments `--env` selected from `.seal.yaml`, before any certificate is read.
pub struct Selection {
    path: PathBuf,
    config: Config,
    names: Vec<String>,
}

/// Parses `--env` and resolves it against the nearest `.seal.yaml`; reads no certificate, so a bad
/// name or a bad combination of flags is refused before anything reaches the network.
fn select(spec: &str) -> Outcome<Selection> {
    let parsed = EnvSpec::parse(spec)?;
    let (path, config) = find_config()?;
    let names = config.resolve(&parsed, &path)?;
    Ok(Selection {
        path,
        config,
        names,
    })
}

impl Selection {
    /// The selected environment names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Reads and checks every selected environment's certificate, in order; the first failure
    /// (unreachable, pin mismatch, expired) stops, so a caller has all of them or none.
    pub fn load_all(&self, timeout: Duration) -> Outcome<Vec<Loaded>> {
        self.names
            .iter()
            .map(|name| self.load(name, timeout))
            .collect()
    }

    /// Reads and checks one selected environment's certificate (fetched, pinned, unexpired).
    fn load(&self, name: &str, timeout: Duration) -> Outcome<Loaded> {
        let path = &self.path;
        let entry = self
            .config
            .environments
            .get(name)
            .expect("invariant: selected names are in the config");
        let pin = entry
            .fingerprint
            .as_deref()
            .map(|f| {
                f.parse::<Fingerprint>().map_err(|e| {
                    Failure::input(format!("{}: environment {name}: {e}", path.display()))
                })
            })
            .transpose()?;
        let location = match path.parent() {
            Some(base) if !is_url(&entry.cert) && Path::new(&entry.cert).is_relative() => {
                base.join(&entry.cert).display().to_string()
            }
            _ => entry.cert.clone(),
        };
        let origin = format!("environment {name} ({})", entry.cert);
        read_checked(&location, pin, origin, timeout)
    }
}

/// The environments `--env` selects, unless `--cert` or `--controller` names the certificate
/// instead (then `None`, and [`load`] reads it).
pub fn selection(source: &CertSource) -> Outcome<Option<Selection>> {
    match &source.env {
        Some(spec) if source.cert.is_none() && source.controller.is_none() => {
            select(spec).map(Some)
        }
        _ => Ok(None),
    }
}

/// What `{env}` in a path (`-w`, a `seal verify` FILE) is replaced with: the environment's name.
pub const ENV_PLACEHOLDER: &str = "{env}";

/// Whether `path` contains `{env}`.
pub fn has_placeholder(path: &Path) -> bool {
    path.to_string_lossy().contains(ENV_PLACEHOLDER)
}

/// `pattern` with every `{env}` replaced by `env`, which must be usable as one path component (a
/// `.seal.yaml` name such as `../x` must not reach outside the intended directory).
pub fn expand(pattern: &Path, env: &str) -> Outcome<PathBuf> {
    if env.is_empty() || env == "." || env == ".." || env.contains(['/', '\0']) {
        return Err(Failure::input(format!(
            "environment name {env:?} cannot stand for {ENV_PLACEHOLDER} in a path: it is not a plain file name"
        )));
    }
    let text = pattern.to_str().ok_or_else(|| {
        Failure::input(format!(
            "{}: not UTF-8, so {ENV_PLACEHOLDER} cannot be replaced in it",
            pattern.display()
        ))
    })?;
    Ok(PathBuf::from(text.replace(ENV_PLACEHOLDER, env)))
}

/// Reads a certificate file or URL and checks it: transport, PEM, validity, pin.
fn read_checked(
    location: &str,
    pin: Option<Fingerprint>,
    origin: String,
    timeout: Duration,
) -> Outcome<Loaded> {
    check_transport(location, pin.is_some(), &origin)?;
    let bytes = read_location(location, timeout)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> EnvSpec {
        EnvSpec::Names(list.iter().map(|n| (*n).to_owned()).collect())
    }

    fn config(names: &[&str]) -> Config {
        let environments = names
            .iter()
            .map(|n| {
                let entry = Environment {
                    cert: format!("{n}.pem"),
                    fingerprint: None,
                };
                ((*n).to_owned(), entry)
            })
            .collect();
        Config { environments }
    }

    #[test]
    fn env_lists_parse_in_order_with_spaces_trimmed() {
        assert_eq!(EnvSpec::parse("prod").unwrap(), names(&["prod"]));
        assert_eq!(
            EnvSpec::parse("prod, dev ,staging").unwrap(),
            names(&["prod", "dev", "staging"])
        );
        assert_eq!(EnvSpec::parse("all").unwrap(), EnvSpec::All);
        assert_eq!(EnvSpec::parse(" all ").unwrap(), EnvSpec::All);
    }

    #[test]
    fn env_lists_refuse_empty_names_duplicates_and_all_with_names() {
        for (spec, expected) in [
            ("", "an environment name is empty"),
            ("dev,", "an environment name is empty"),
            ("dev,,prod", "an environment name is empty"),
            ("dev,prod,dev", "environment dev is listed twice"),
            ("dev, dev", "environment dev is listed twice"),
            (
                "all,dev",
                "`all` selects every environment and takes no other names",
            ),
        ] {
            let got = EnvSpec::parse(spec).unwrap_err().to_string();
            assert!(got.contains(expected), "{spec:?}: {got}");
        }
    }

    #[test]
    fn all_resolves_to_every_environment_sorted_and_names_keep_their_order() {
        let path = Path::new("/repo/.seal.yaml");
        let config = config(&["staging", "prod", "dev"]);
        assert_eq!(
            config.resolve(&EnvSpec::All, path).unwrap(),
            ["dev", "prod", "staging"]
        );
        assert_eq!(
            config.resolve(&names(&["prod", "dev"]), path).unwrap(),
            ["prod", "dev"]
        );
    }

    #[test]
    fn unknown_environments_are_named_with_the_known_ones() {
        let path = Path::new("/repo/.seal.yaml");
        let config = config(&["dev", "prod"]);
        let one = config
            .resolve(&names(&["dev", "qa"]), path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            one,
            "environment \"qa\" is not in /repo/.seal.yaml (known: dev, prod)"
        );
        let two = config
            .resolve(&names(&["qa", "dev", "uat"]), path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            two,
            "environments \"qa\", \"uat\" are not in /repo/.seal.yaml (known: dev, prod)"
        );
    }

    #[test]
    fn all_is_refused_when_ambiguous_or_empty() {
        let path = Path::new("/repo/.seal.yaml");
        let got = config(&["all", "dev"])
            .resolve(&EnvSpec::All, path)
            .unwrap_err()
            .to_string();
        assert!(got.contains("an environment is named \"all\""), "{got}");
        let got = config(&[])
            .resolve(&EnvSpec::All, path)
            .unwrap_err()
            .to_string();
        assert!(got.contains("no environments defined"), "{got}");
    }

    #[test]
    fn environment_names_that_are_not_file_names_are_refused_in_paths() {
        let pattern = Path::new("deploy/{env}/x.yaml");
        for bad in ["..", ".", "a/b", "../../etc", "a\0b"] {
            let got = expand(pattern, bad).unwrap_err().to_string();
            assert!(got.contains("is not a plain file name"), "{bad:?}: {got}");
        }
        assert_eq!(
            expand(pattern, "prod-eu.1").unwrap(),
            PathBuf::from("deploy/prod-eu.1/x.yaml")
        );
    }
}
