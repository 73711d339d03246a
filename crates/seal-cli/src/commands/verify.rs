//! `seal verify`: offline checks that each SealedSecret is well-formed and was sealed with the given
//! certificate, which catches "sealed for the wrong environment" before a deploy does. With private
//! keys it also proves that every item opens with the certificate's key, printing no values.
//!
//! With `--env a,b` (or `all`) each environment's files are checked with its own certificate:
//! `{env}` in a FILE stands for the environment's name, as in `seal -w` (`seal verify --env all
//! 'deploy/{env}/ml-api.sealed.yaml'` checks what `seal --env all -w` of the same pattern wrote).
//!
//! With `--online` the controller itself answers (`POST /v1/verify`): every item opens with one of
//! the keys the cluster holds. No certificate or key is needed on the workstation, and nothing is
//! ever decrypted outside the cluster.

use std::fmt::Write as _;
use std::path::PathBuf;

use seal_api::SealedSecret;
use seal_api::unsealing;
use seal_core::{Certificate, PrivateKey, envelope};

use crate::CertArgs;
use crate::certsource::{self, ENV_PLACEHOLDER, Selection};
use crate::cluster::Controller;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::{Doc, SealedFile};

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

    /// SealedSecret manifests to check; with --env, `{env}` in FILE is each environment's name.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `seal verify`.
pub fn run(args: &Args) -> Outcome {
    if args.online {
        return run_online(args);
    }
    let source = args.cert.source();
    let selection = certsource::selection(&source)?;
    let plan = files_per_environment(&args.files, selection.as_ref().map(Selection::names))?;
    let certs = match &selection {
        Some(selection) => selection.load_all(source.timeout)?,
        None => vec![certsource::load(&source)?],
    };
    // With keys, only the certificate's own key may open the items: that proves both "sealed with
    // this certificate" and "opens", where any key of the ring would prove only the latter.
    let ring = if args.keys.is_empty() {
        None
    } else {
        Some(super::unseal::load_key_ring(&args.keys)?)
    };
    let mut tally = Tally::default();
    for (loaded, files) in certs.iter().zip(&plan) {
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
        tally.each_sealed(files, |tally, place, sealed| {
            tally.offline(place, sealed, &loaded.certificate, key);
            Ok(())
        })?;
    }
    tally.finish()
}

/// The files to check with each certificate, in order: with `--env`, `{env}` in a FILE is replaced
/// by each environment's name, and with several environments every FILE needs it (a file can be
/// sealed for one environment only, so checking it against all of them would always fail).
fn files_per_environment(files: &[PathBuf], envs: Option<&[String]>) -> Outcome<Vec<Vec<PathBuf>>> {
    let pattern = files.iter().find(|f| certsource::has_placeholder(f));
    let plain = files.iter().find(|f| !certsource::has_placeholder(f));
    match (envs, pattern, plain) {
        (None, Some(pattern), _) => Err(Failure::input(format!(
            "{}: {ENV_PLACEHOLDER} needs --env",
            pattern.display()
        ))),
        (None, None, _) => Ok(vec![files.to_vec()]),
        (Some(names @ [_, _, ..]), _, Some(plain)) => Err(Failure::input(format!(
            "{}: --env selects {} environments ({}), so each FILE needs {ENV_PLACEHOLDER}",
            plain.display(),
            names.len(),
            names.join(", ")
        ))
        .hint(format!(
            "for example: seal verify --env all 'deploy/{ENV_PLACEHOLDER}/NAME.sealed.yaml'"
        ))),
        (Some(names), _, _) => names
            .iter()
            .map(|name| {
                files
                    .iter()
                    .map(|file| {
                        if certsource::has_placeholder(file) {
                            certsource::expand(file, name)
                        } else {
                            Ok(file.clone())
                        }
                    })
                    .collect()
            })
            .collect(),
    }
}

/// What the offline checks found so far: the report lines and the counts.
#[derive(Default)]
struct Tally {
    report: String,
    checked: usize,
    failed: usize,
}

impl Tally {
    /// Runs `check` on every SealedSecret of `files`, named by file, line and object; a file with
    /// none fails.
    fn each_sealed(
        &mut self,
        files: &[PathBuf],
        mut check: impl FnMut(&mut Self, &str, &SealedSecret) -> Outcome,
    ) -> Outcome {
        for path in files {
            let input = io::read_input(path)?;
            let file = SealedFile::parse(&input)?;
            let mut found = false;
            for doc in &file.docs {
                let Doc::Sealed { line, sealed, .. } = doc else {
                    continue;
                };
                found = true;
                self.checked += 1;
                let place = format!("{}:{line} {}", input.name, object_name(sealed));
                check(self, &place, sealed)?;
            }
            if !found {
                self.fail(&input.name, "no SealedSecret in this file");
            }
        }
        Ok(())
    }

    /// Checks `sealed` against `certificate` (and `key`, if given).
    fn offline(
        &mut self,
        place: &str,
        sealed: &SealedSecret,
        certificate: &Certificate,
        key: Option<&PrivateKey>,
    ) {
        let problems = check(sealed, certificate, key);
        if problems.is_empty() {
            let _ = writeln!(
                self.report,
                "ok    {place}: {} items, certificate {}{}",
                sealed.spec.encrypted_data.len(),
                certificate.fingerprint().short(),
                if key.is_some() { ", all open" } else { "" }
            );
        }
        for problem in &problems {
            let _ = writeln!(self.report, "FAIL  {place}: {problem}");
        }
        self.failed += usize::from(!problems.is_empty());
    }

    fn fail(&mut self, place: &str, problem: &str) {
        self.failed += 1;
        let _ = writeln!(self.report, "FAIL  {place}: {problem}");
    }

    /// Prints the report; any failure is the exit status's.
    fn finish(self) -> Outcome {
        io::print(&self.report)?;
        if self.failed > 0 {
            return Err(Failure::found(format!(
                "{} of {} checks failed",
                self.failed,
                self.checked.max(self.failed)
            )));
        }
        Ok(())
    }
}

fn run_online(args: &Args) -> Outcome {
    let controller = Controller::new(&args.cert.controller_args, args.cert.request_timeout)?;
    let mut tally = Tally::default();
    tally.each_sealed(&args.files, |tally, place, sealed| {
        let body = serde_json::to_vec(sealed).map_err(|e| Failure::input(e).at(place))?;
        let answer = post_within_rate_limit(&controller, "/v1/verify", &body)?;
        match answer.status {
            200 => {
                let _ = writeln!(
                    tally.report,
                    "ok    {place}: {} items open in {}",
                    sealed.spec.encrypted_data.len(),
                    controller.describe()
                );
                Ok(())
            }
            400 | 409 => {
                tally.fail(place, &answer.text());
                Ok(())
            }
            status => Err(Failure::io(format!(
                "{}: /v1/verify answered {status}: {}",
                controller.describe(),
                answer.text()
            ))),
        }
    })?;
    tally.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn each_environment_checks_its_own_expansion_of_the_files() {
        let envs = ["dev".to_owned(), "prod".to_owned()];
        let got = files_per_environment(&paths(&["d/{env}/a.yaml", "{env}.yaml"]), Some(&envs));
        assert_eq!(
            got.unwrap(),
            [
                paths(&["d/dev/a.yaml", "dev.yaml"]),
                paths(&["d/prod/a.yaml", "prod.yaml"])
            ]
        );
        // One environment: files without {env} are checked as given.
        let one = ["prod".to_owned()];
        let got = files_per_environment(&paths(&["a.yaml", "{env}.yaml"]), Some(&one));
        assert_eq!(got.unwrap(), [paths(&["a.yaml", "prod.yaml"])]);
        let got = files_per_environment(&paths(&["a.yaml"]), None);
        assert_eq!(got.unwrap(), [paths(&["a.yaml"])]);
    }

    #[test]
    fn several_environments_need_the_placeholder_in_every_file() {
        let envs = ["dev".to_owned(), "prod".to_owned()];
        let got = files_per_environment(&paths(&["{env}.yaml", "shared.yaml"]), Some(&envs))
            .unwrap_err()
            .to_string();
        assert_eq!(
            got,
            "shared.yaml: --env selects 2 environments (dev, prod), so each FILE needs {env}"
        );
        let got = files_per_environment(&paths(&["{env}.yaml"]), None)
            .unwrap_err()
            .to_string();
        assert_eq!(got, "{env}.yaml: {env} needs --env");
    }
}
