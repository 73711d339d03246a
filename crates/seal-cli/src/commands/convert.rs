//! `seal convert`: manifests between seal's `seal.dev/v1alpha1` and its peers' APIs.
//!
//! - SealedSecrets between `seal.dev/v1alpha1` and Bitnami's `bitnami.com/v1alpha1`; ciphertext
//!   is never touched.
//! - ExternalSecret, SecretStore and ClusterSecretStore between `seal.dev/v1alpha1` and the
//!   External Secrets Operator's `external-secrets.io/v1` (and `v1beta1`, read only), for the
//!   `aws` (SecretsManager) and `vault` providers; see `seal_api::eso` for what is checked.
//!
//! Each target converts what has a counterpart there (`--to seal`: Bitnami SealedSecrets and ESO
//! objects; `--to bitnami`: seal SealedSecrets; `--to eso`: seal ExternalSecrets and stores);
//! every other document passes through unchanged. A document that cannot be converted without
//! losing something (another provider, a field seal or the target lacks) is an error naming the
//! file, line, document, field and provider, and nothing is written.

use std::path::PathBuf;

use seal_api::eso::{self, Api};
use seal_api::manifest;
use serde_json::Value;

use crate::OutputFormat;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::{Doc, Flavor, SealedFile, render};

/// Target apiVersion.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// seal.dev/v1alpha1, from Bitnami SealedSecrets and ESO ExternalSecrets and stores.
    #[default]
    Seal,
    /// bitnami.com/v1alpha1, from seal SealedSecrets.
    Bitnami,
    /// external-secrets.io/v1, from seal ExternalSecrets, SecretStores and ClusterSecretStores.
    Eso,
}

/// `seal convert` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which apiVersion to convert to.
    #[arg(long, value_enum, default_value_t)]
    pub to: Target,

    /// Manifests (SealedSecrets, ExternalSecrets, SecretStores, ClusterSecretStores, anything
    /// else passes through); stdin if none or `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Rewrite each file in place (atomically) instead of printing.
    #[arg(long)]
    pub in_place: bool,

    /// Output format (default: the input's).
    #[arg(
        short = 'o',
        long = "format",
        alias = "output",
        value_enum,
        conflicts_with = "in_place"
    )]
    pub format: Option<OutputFormat>,
}

/// Runs `seal convert`.
pub fn run(args: &Args) -> Outcome {
    if args.in_place && (args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-")) {
        return Err(Failure::input("--in-place needs file arguments, not stdin"));
    }
    let inputs = io::read_inputs(&args.files)?;
    // Every document of every input is converted before anything is written.
    let mut outputs = Vec::new();
    for input in &inputs {
        let mut file = SealedFile::parse(input)?;
        // The same stream parsed again for the line of each document (SealedFile keeps lines for
        // SealedSecrets only); both list the documents in the same order.
        let lines: Vec<usize> = manifest::parse(&input.text)
            .map_err(|e| Failure::input(e).at(&input.name))?
            .iter()
            .map(|located| located.line)
            .collect();
        for (index, doc) in file.docs.iter_mut().enumerate() {
            let at = || format!("{}:{}", input.name, lines.get(index).copied().unwrap_or(1));
            convert(doc, args.to).map_err(|e| e.at(at()))?;
        }
        outputs.push((input.path.clone(), file));
    }
    if args.in_place {
        for (path, file) in &outputs {
            let path = path
                .as_ref()
                .expect("invariant: --in-place inputs are files");
            io::write_atomic(path, file.render().as_bytes())?;
        }
        return Ok(());
    }
    let format = args.format.map_or(outputs[0].1.format, Into::into);
    let values: Vec<_> = outputs.iter().flat_map(|(_, file)| file.values()).collect();
    io::print(&render(&values, format))
}

/// Converts one document in place when it has a counterpart in `target`.
fn convert(doc: &mut Doc, target: Target) -> Outcome {
    match doc {
        Doc::Sealed { flavor, sealed, .. } => match target {
            Target::Seal => *flavor = Flavor::Seal,
            Target::Bitnami => {
                if !sealed.spec.rollout_restart_targets.is_empty() {
                    let name = match (&sealed.metadata.namespace, &sealed.metadata.name) {
                        (Some(ns), Some(name)) => format!("{ns}/{name}"),
                        (_, name) => name.clone().unwrap_or_default(),
                    };
                    return Err(Failure::input(format!(
                        "SealedSecret {name}: spec.rolloutRestartTargets: seal's addition, which Bitnami's format does not have; remove it to convert"
                    )));
                }
                *flavor = Flavor::Bitnami;
            }
            Target::Eso => {}
        },
        Doc::Other(value) => {
            let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
            let converted = match (eso::classify(field("apiVersion"), field("kind")), target) {
                (Some((Api::Eso, _)), Target::Seal) => eso::from_eso(value),
                (Some((Api::Seal, _)), Target::Eso) => eso::to_eso(value),
                _ => return Ok(()),
            };
            *value = converted.map_err(|e| {
                let failure = Failure::input(&e);
                if e.field.starts_with("spec.provider.") && e.problem.contains("does not implement")
                {
                    failure.hint("keep this store with ESO, or move its secrets to AWS Secrets Manager or Vault")
                } else {
                    failure
                }
            })?;
        }
    }
    Ok(())
}
