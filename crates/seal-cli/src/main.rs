//! `seal`: seal Kubernetes Secrets with a cluster's certificate so they can live in git, and recover,
//! verify, re-encrypt, convert and guard them, all offline.
//!
//! This file holds the command line (clap derive) and the dispatch; each command lives in
//! `commands/`. Flags are named as kubeseal names them where a kubeseal user would look for them.
//! Exit codes are a contract, documented in `failure.rs` and the README.

mod certsource;
mod cluster;
mod commands;
mod failure;
mod io;
mod manifests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::certsource::CertSource;
use crate::failure::Failure;

const AFTER_HELP: &str = "\
Examples:
  # Seal a Secret for staging (certificate from .seal.yaml) into a file
  seal --env staging -w ml-api-db.sealed.yaml secret.yaml

  # Seal it for several environments at once, one file each ({env} is the name), all or none
  seal --env dev,staging,prod -w 'deploy/{env}/ml-api.sealed.yaml' secret.yaml
  seal --env all -w 'deploy/{env}/ml-api.sealed.yaml' secret.yaml

  # Seal with a certificate file, from stdin, as JSON
  kubectl create secret generic db --from-literal=password=s3cret --dry-run=client -o yaml \\
    | seal --cert keys.example/tls.crt -n ml-prod -o json

  # Add one item to an existing SealedSecret, keeping the others
  kubectl create secret generic x --from-literal=api-key=abc --dry-run=client -o yaml \\
    | seal --cert prod.crt --merge-into ml-api.sealed.yaml

.seal.yaml (found by walking up from the working directory):
  environments:
    staging: {cert: deploy/certs/staging.pem}
    prod:    {cert: https://seal.example.com/v1/cert.pem, fingerprint: <sha256>}

Exit codes: 0 ok, 1 a check found something, 2 bad usage or input, 3 I/O or network error.";

/// Seal Kubernetes Secrets for git, and recover, verify, re-encrypt and convert them.
#[derive(Parser, Debug)]
#[command(
    name = "seal",
    version,
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    seal: SealArgs,
}

/// Where the certificate comes from.
#[derive(Args, Debug, Clone)]
struct CertArgs {
    /// Certificate file or http(s) URL to seal with [env: SEAL_CERT].
    #[arg(long, value_name = "FILE|URL", conflicts_with_all = ["env", "controller"])]
    cert: Option<String>,

    /// Fetch the certificate from the controller through the API server (kubeconfig), as
    /// kubeseal does; see --controller-namespace, --controller-name, --controller-url.
    #[arg(long, conflicts_with = "env")]
    controller: bool,

    #[command(flatten)]
    controller_args: cluster::ControllerArgs,

    /// Environment whose certificate to use, as named in .seal.yaml [env: SEAL_ENV]. `seal` and
    /// `seal verify` take several, `dev,prod` or `all`, with `{env}` in -w or FILE.
    #[arg(long, value_name = "NAME")]
    env: Option<String>,

    /// Timeout for fetching a certificate URL (e.g. 10s, 500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = seal_core::parse_duration)]
    request_timeout: Duration,
}

impl CertArgs {
    /// Flags win over the environment: `--cert` or `--env` if given, else `SEAL_CERT`, else
    /// `SEAL_ENV`. (clap's own `env` would make `SEAL_ENV=prod seal --cert x.crt` a conflict.)
    fn source(&self) -> CertSource {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (cert, env) = match (&self.cert, &self.env) {
            (None, None) if self.controller => (None, None),
            (None, None) => match from_env("SEAL_CERT") {
                Some(cert) => (Some(cert), None),
                None => (None, from_env("SEAL_ENV")),
            },
            (cert, env) => (cert.clone(), env.clone()),
        };
        CertSource {
            cert,
            env,
            controller: self.controller.then(|| self.controller_args.clone()),
            timeout: self.request_timeout,
        }
    }
}

/// Where a value may be unsealed, and for which object.
#[derive(Args, Debug, Clone)]
struct TargetArgs {
    /// strict: this name in this namespace; namespace-wide: any name in the namespace;
    /// cluster-wide: anywhere. Default: the input's annotations, else strict.
    #[arg(long, value_enum, value_name = "SCOPE")]
    scope: Option<ScopeArg>,

    /// Namespace to seal for (an error if the input names another).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,

    /// Name to seal for (an error if the input names another).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Output format of manifests.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
enum OutputFormat {
    /// YAML documents separated by `---`.
    #[default]
    Yaml,
    /// JSON (several objects become a v1 List).
    Json,
}

impl From<OutputFormat> for seal_api::manifest::Format {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Yaml => seal_api::manifest::Format::Yaml,
            OutputFormat::Json => seal_api::manifest::Format::Json,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeArg {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl From<ScopeArg> for seal_core::Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Strict => seal_core::Scope::Strict,
            ScopeArg::NamespaceWide => seal_core::Scope::NamespaceWide,
            ScopeArg::ClusterWide => seal_core::Scope::ClusterWide,
        }
    }
}

/// Sealing Secrets (the command with no subcommand).
#[derive(Args, Debug)]
struct SealArgs {
    /// Secret manifests to seal (YAML, multi-document YAML, JSON or a v1 List); stdin if none or `-`.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Input file, as kubeseal's -f (same as a FILE argument).
    #[arg(
        short = 'f',
        long = "secret-file",
        value_name = "FILE",
        hide_short_help = true
    )]
    secret_file: Vec<PathBuf>,

    #[command(flatten)]
    cert: CertArgs,

    #[command(flatten)]
    target: TargetArgs,

    /// Output format.
    #[arg(
        short = 'o',
        long = "format",
        alias = "output",
        value_enum,
        default_value_t
    )]
    format: OutputFormat,

    /// Emit bitnami.com/v1alpha1 SealedSecrets, for clusters still running Bitnami's controller.
    #[arg(long)]
    bitnami: bool,

    /// Write the output to FILE atomically instead of stdout (kubeseal: --sealed-secret-file);
    /// `{env}` in FILE is the --env name, one file per environment.
    #[arg(
        short = 'w',
        long = "write",
        alias = "sealed-secret-file",
        value_name = "FILE"
    )]
    write: Option<PathBuf>,

    /// Seal the input's items into this existing SealedSecret file, keeping its other items and its
    /// format; the file is updated in place. Its scope, name and namespace are used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["write", "bitnami", "scope", "namespace", "name"])]
    merge_into: Option<PathBuf>,

    /// Seal a Secret that has no items instead of refusing it.
    #[arg(long)]
    allow_empty_data: bool,

    /// As kubeseal --raw: seal one value from --from-file (see `seal raw`).
    #[arg(long, hide_short_help = true)]
    raw: bool,

    /// With --raw: the file holding the value.
    #[arg(long, value_name = "FILE", requires = "raw", hide_short_help = true)]
    from_file: Option<PathBuf>,

    /// kubeseal's --recovery-unseal: in seal this is `seal unseal --key FILE`.
    #[arg(long, hide = true)]
    recovery_unseal: bool,

    /// kubeseal's --recovery-private-key: in seal this is `seal unseal --key FILE`.
    #[arg(long, hide = true, value_name = "FILE")]
    recovery_private_key: Vec<String>,

    /// kubeseal's --re-encrypt: in seal this is `seal re-encrypt`.
    #[arg(long, hide = true)]
    re_encrypt: bool,

    /// kubeseal's --validate: in seal this is `seal verify`.
    #[arg(long, hide = true)]
    validate: bool,

    /// kubeseal's --fetch-cert: in seal this is `seal cert fetch`.
    #[arg(long, hide = true)]
    fetch_cert: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Seal one value (stdin or --from-file) and print it as base64, for encryptedData by hand.
    #[command(after_help = "\
Examples:
  printf '%s' 's3cret' | seal raw --cert keys.example/tls.crt -n ml-prod --name ml-api-db
  seal raw --env prod --scope namespace-wide -n ml-prod --from-file token.txt")]
    Raw(commands::raw::Args),

    /// Recover Secrets from SealedSecrets (seal's or Bitnami's) with private keys, offline.
    #[command(after_help = "\
Examples:
  seal unseal --key backup/tls.key ml-api.sealed.yaml
  kubectl get secret -n seal-system -l seal.dev/sealing-key -o yaml > keys.yaml
  seal unseal --key keys.yaml -o json < sealed.yaml")]
    Unseal(commands::unseal::Args),

    /// Generate a key pair and a self-signed certificate (tls.key mode 0600, tls.crt).
    #[command(after_help = "\
Examples:
  seal keygen --out keys/
  seal keygen --out keys/ --bits 2048 --validity-days 365")]
    Keygen(commands::keygen::Args),

    /// Inspect certificates, or fetch the controller's.
    #[command(subcommand)]
    Cert(commands::cert::Command),

    /// Renew the controller's key now, or restore keys from a backup.
    #[command(subcommand)]
    Keys(commands::keys::Command),

    /// Check offline that SealedSecrets are well-formed and sealed with a certificate; with keys,
    /// prove every item opens (printing no values).
    #[command(after_help = "\
Examples:
  seal verify --env prod deploy/prod/*.sealed.yaml
  seal verify --env all 'deploy/{env}/ml-api.sealed.yaml'     # each with its own certificate
  seal verify --cert prod.crt --key backup/prod.key ml-api.sealed.yaml")]
    Verify(commands::verify::Args),

    /// Re-seal SealedSecrets in place for a new certificate, with the old keys (scope kept).
    #[command(
        name = "re-encrypt",
        after_help = "\
Examples:
  seal re-encrypt --key old/tls.key --cert new/tls.crt deploy/prod/*.sealed.yaml
  seal re-encrypt --key keys-backup.yaml --env prod $(git ls-files '*.sealed.yaml')"
    )]
    ReEncrypt(commands::reencrypt::Args),

    /// Convert manifests to seal.dev/v1alpha1 from Bitnami's SealedSecrets and ESO's
    /// ExternalSecrets and stores, and back.
    #[command(after_help = "\
Examples:
  seal convert bitnami-sealed.yaml > sealed.yaml
  seal convert --to bitnami --in-place deploy/legacy/*.yaml
  seal convert --in-place deploy/eso/*.yaml        # external-secrets.io/v1 or v1beta1 -> seal.dev
  seal convert --to eso externalsecret.yaml        # seal.dev -> external-secrets.io/v1

ESO stores convert for the aws (SecretsManager) and vault providers; another provider, or an ESO
field seal does not implement (sourceRef, templateFrom, ...), is an error naming the field, and
nothing is written.")]
    Convert(commands::convert::Args),

    /// Print the values of secret references (vals syntax), one per line.
    #[command(after_help = "\
Examples:
  seal get 'ref+vault://secret/ml/db#/password'
  seal get -o json ref+awssecrets://ml/db ref+vault://kv/ml/api/token
  VAULT_ADDR=https://vault:8200 SEAL_VAULT_AUTH_METHOD=approle \\
    VAULT_ROLE_ID=... VAULT_SECRET_ID=... seal get 'ref+vault://secret/ml/db#/user'

A reference is ref+vault://PATH[?address=&namespace=&auth_method=&role=&role_id=&secret_id=
&version=&token_file=&token_env=][#/json/path] or ref+awssecrets://NAME_OR_ARN[?region=&role_arn=
&version_stage=&version_id=&profile=][#/json/path]. The KV version comes from the mount, as in
vals: secret/ml/db reads a KV v2 secret (secret/data/ml/db works too).
Exit codes: 0 ok, 2 bad reference, missing secret or key, denied; 3 provider unreachable.")]
    Get(commands::ci::get::Args),

    /// Resolve NAME: ref+... files for shell, dotenv, JSON, GitHub Actions or GitLab.
    #[command(after_help = "\
Examples:
  # ci/secrets.yaml:  DB_PASSWORD: ref+vault://secret/ml/db#/password
  #                   REGISTRY: ref+awssecrets://ci/registry
  eval \"$(seal env -f ci/secrets.yaml --format shell)\"
  seal env -f ci/secrets.yaml --format github      # masks, then appends to $GITHUB_ENV
  seal env -f ci/secrets.yaml --format gitlab -w deploy.env   # artifacts:reports:dotenv
  seal env -f ci/secrets.yaml --flatten --format json         # {\"DB_USER\": ..., \"DB_PASSWORD\": ...}

Nothing is printed, written or exported unless every reference resolves.")]
    Env(commands::ci::env::Args),

    /// Resolve every ref+ string in YAML or JSON documents (helmfile values, manifests).
    #[command(after_help = "\
Examples:
  seal render values.secrets.yaml > values.yaml
  seal render --exclude-secret values.yaml          # keep secretref+ for review
  seal render -w /tmp/values.yaml deploy/values/*.yaml
  seal render --in-place rendered/values.yaml

Structure and key order are kept; references inside longer strings end at + or whitespace:
  url: postgres://ml:ref+vault://secret/ml/db#/password+@db:5432/ml")]
    Render(commands::ci::render::Args),

    /// Run a command with resolved references in its environment, nothing written to disk.
    #[command(after_help = "\
Examples:
  seal exec -f ci/secrets.yaml -- helmfile -e prod apply
  seal exec -f ci/migrate.yaml --clean-env -- /usr/bin/env
  seal exec -f ci/secrets.yaml --flatten -- ./migrate.sh

Exits with the command's code (128 + signal if a signal ended it); SIGINT, SIGTERM, SIGHUP and
SIGQUIT are passed on to it.")]
    Exec(commands::ci::exec::Args),

    /// Find plaintext Secret manifests (the pre-commit guard); exit 1 if any.
    #[command(after_help = "\
Examples:
  seal scan                 # the working directory, recursively
  seal scan deploy/ charts/values.yaml

A Secret that is meant to be plaintext (a test fixture) can carry the annotation
seal.dev/plaintext-allowed: \"true\".")]
    Scan(commands::scan::Args),

    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  seal completions bash > /etc/bash_completion.d/seal
  seal completions zsh > \"${fpath[1]}/_seal\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => commands::seal::run(cli.seal),
        Some(Command::Raw(args)) => commands::raw::run(&args),
        Some(Command::Unseal(args)) => commands::unseal::run(&args),
        Some(Command::Keygen(args)) => commands::keygen::run(&args),
        Some(Command::Cert(command)) => commands::cert::run(&command),
        Some(Command::Keys(command)) => commands::keys::run(&command),
        Some(Command::Verify(args)) => commands::verify::run(&args),
        Some(Command::ReEncrypt(args)) => commands::reencrypt::run(&args),
        Some(Command::Convert(args)) => commands::convert::run(&args),
        Some(Command::Scan(args)) => commands::scan::run(&args),
        Some(Command::Get(args)) => commands::ci::get::run(&args),
        Some(Command::Env(args)) => commands::ci::env::run(&args),
        Some(Command::Render(args)) => commands::ci::render::run(&args),
        Some(Command::Exec(args)) => match commands::ci::exec::run(&args) {
            Ok(code) => return code,
            Err(failure) => Err(failure),
        },
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "seal", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Turns a kubeseal-only flag into a pointer at seal's equivalent.
fn kubeseal_flag(flag: &str, instead: &str) -> Failure {
    Failure::input(format!("{flag} is kubeseal's; seal has a command for it")).hint(instead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn timeouts_take_the_one_duration_grammar() {
        // Every flag reads durations as Go writes them, plus days (seal_core::duration).
        let cli = Cli::try_parse_from(["seal", "--request-timeout", "1m30s"]);
        assert!(cli.is_ok(), "{cli:?}");
        assert!(Cli::try_parse_from(["seal", "--request-timeout", "7"]).is_err());
    }
}
