//! `seal unseal`: offline recovery of Secrets from SealedSecrets (seal's or Bitnami's) with private
//! keys, for disaster recovery and migration. Keys come from PEM files or from a backup of the
//! controller's key Secrets; the key whose fingerprint the SealedSecret records is tried first.

use std::path::PathBuf;

use seal_api::unsealing::{self, KeyRing};

use crate::OutputFormat;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::{Doc, SealedFile, render};

/// `seal unseal` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Private key: PEM (PKCS#1 or PKCS#8) or kubernetes.io/tls Secrets (YAML/JSON, a List).
    /// Repeat, or separate with commas.
    #[arg(
        long = "key",
        alias = "recovery-private-key",
        value_name = "FILE",
        required = true,
        value_delimiter = ','
    )]
    pub keys: Vec<PathBuf>,

    /// SealedSecret manifests; stdin if none or `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(
        short = 'o',
        long = "format",
        alias = "output",
        value_enum,
        default_value_t
    )]
    pub format: OutputFormat,

    /// Write the Secrets to FILE (atomically, mode 0600) instead of stdout.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
}

/// Runs `seal unseal`.
pub fn run(args: &Args) -> Outcome {
    let ring = load_key_ring(&args.keys)?;
    let inputs = io::read_inputs(&args.files)?;
    let mut secrets = Vec::new();
    for input in &inputs {
        let file = SealedFile::parse(input)?;
        for doc in &file.docs {
            let Doc::Sealed { line, sealed, .. } = doc else {
                continue;
            };
            let place = format!("{}:{line}", input.name);
            let secret = unsealing::unseal_to_secret(sealed, &ring).map_err(|e| {
                let hint = if matches!(e, unsealing::UnsealError::Template { .. }) {
                    "template.data follows the template language of the README"
                } else {
                    "is this the right key for that cluster?"
                };
                Failure::input(e).at(&place).hint(hint)
            })?;
            secrets.push(serde_json::to_value(&secret).expect("invariant: a Secret serializes"));
        }
    }
    if secrets.is_empty() {
        return Err(Failure::input("no SealedSecret found in the input"));
    }
    let text = zeroize::Zeroizing::new(render(&secrets, args.format.into()));
    match &args.write {
        Some(path) => io::write_private(path, text.as_bytes()),
        None => io::print(&text),
    }
}

/// Reads every key file into one ring. Errors name the file.
pub fn load_key_ring(paths: &[PathBuf]) -> Outcome<KeyRing> {
    let mut ring = KeyRing::default();
    for path in paths {
        let bytes = zeroize::Zeroizing::new(io::read_bytes(path)?);
        let keys = seal_core::keys::read_private_keys(&bytes)
            .map_err(|e| Failure::input(e).at(path.display()))?;
        for key in keys {
            ring.add(key);
        }
    }
    Ok(ring)
}
