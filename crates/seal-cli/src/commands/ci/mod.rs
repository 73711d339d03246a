//! The deploy-time commands, `seal get`, `seal env`, `seal render` and `seal exec`: they resolve
//! vals references (`ref+vault://...`, `ref+awssecrets://...`, see `seal_providers::reference`)
//! for CI jobs and helmfile.
//!
//! This module holds what the four share: the provider flags and the environment variables they
//! default to, and [`Batch`], which collects every reference of one invocation, resolves them in
//! one go (each secret fetched once, providers concurrently, every call timed; see
//! `seal_providers::reference::resolve`) and substitutes the values back into text. Resolution is
//! all or nothing: the first failing reference is reported (by its redacted form, never a value)
//! and the command writes, prints and exports nothing.
//!
//! Exit codes: 2 for a malformed reference, a missing secret or property, a refused read or
//! missing settings; 3 when a provider cannot be reached (after retries) or a file cannot be read.
//!
//! `SEAL_DEBUG_CALLS=1` prints the provider call counter to stderr when resolution ends, as
//! `seal: calls: vault:read:success=50 aws:BatchGetSecretValue:success=3` (counts, never keys):
//! the benchmark reads it, and it answers "how much does this job cost the providers?".

pub mod env;
pub mod exec;
pub mod get;
pub mod render;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use seal_providers::reference::resolve::{
    AwsDefaults, Defaults, ResolveError, Resolver, VaultAuthMethod, VaultDefaults,
};
use seal_providers::reference::{Backend, Found, Reference};
use seal_providers::{Error, RetryPolicy, SecretValue, TokenSource};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::failure::{Failure, Outcome};

/// Where secrets come from and how to log in, for references that do not say.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Providers")]
pub struct ProviderArgs {
    /// Vault (or OpenBao) address.
    #[arg(long, env = "VAULT_ADDR", value_name = "URL")]
    vault_addr: Option<String>,

    /// Vault namespace.
    #[arg(long, env = "VAULT_NAMESPACE", value_name = "NAMESPACE")]
    vault_namespace: Option<String>,

    /// PEM file of the CA certificates to trust for Vault (instead of the system's).
    #[arg(long, env = "VAULT_CACERT", value_name = "FILE")]
    vault_cacert: Option<PathBuf>,

    /// Vault login when a reference has no auth_method: token (VAULT_TOKEN, else
    /// ~/.vault-token), approle (VAULT_ROLE_ID, VAULT_SECRET_ID), jwt (a CI OIDC token from
    /// SEAL_VAULT_JWT or --vault-jwt-file) or kubernetes (the pod's ServiceAccount token).
    #[arg(long, env = "SEAL_VAULT_AUTH_METHOD", value_name = "METHOD", value_parser = ["token", "approle", "jwt", "kubernetes"])]
    vault_auth_method: Option<String>,

    /// Vault auth mount path (default: approle, jwt or kubernetes).
    #[arg(long, env = "SEAL_VAULT_AUTH_MOUNT", value_name = "PATH")]
    vault_auth_mount: Option<String>,

    /// Vault role for jwt and kubernetes logins (a reference's role= wins).
    #[arg(long, env = "SEAL_VAULT_ROLE", value_name = "ROLE")]
    vault_role: Option<String>,

    /// File holding the Vault token (default: VAULT_TOKEN, else ~/.vault-token).
    #[arg(long, env = "SEAL_VAULT_TOKEN_FILE", value_name = "FILE")]
    vault_token_file: Option<PathBuf>,

    /// AppRole role id.
    #[arg(long, env = "VAULT_ROLE_ID", value_name = "ID")]
    vault_role_id: Option<String>,

    /// File holding the AppRole secret id (default: VAULT_SECRET_ID).
    #[arg(long, env = "SEAL_VAULT_SECRET_ID_FILE", value_name = "FILE")]
    vault_secret_id_file: Option<PathBuf>,

    /// File holding the CI's OIDC token for jwt logins (default: the token in SEAL_VAULT_JWT).
    #[arg(long, env = "SEAL_VAULT_JWT_FILE", value_name = "FILE")]
    vault_jwt_file: Option<PathBuf>,

    /// ServiceAccount token file for kubernetes logins.
    #[arg(
        long,
        env = "SEAL_VAULT_KUBERNETES_TOKEN_FILE",
        value_name = "FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    vault_kubernetes_token_file: PathBuf,

    /// AWS region (default: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's).
    #[arg(long, value_name = "REGION")]
    aws_region: Option<String>,

    /// Endpoint for every AWS call (a local test server, a VPC endpoint).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    aws_endpoint_url: Option<String>,

    /// Role to assume for references without role_arn= (credentials: the SDK's default chain,
    /// web identity with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE included).
    #[arg(long, env = "SEAL_AWS_ROLE_ARN", value_name = "ARN")]
    aws_role_arn: Option<String>,

    /// Let a reference's ?address= send the Vault credentials to another server than
    /// --vault-addr / VAULT_ADDR (by default such a reference is refused: a values file a pull
    /// request can change must not send the CI's token elsewhere).
    #[arg(long)]
    allow_reference_address: bool,

    /// Let Vault credentials go over plain http to a host that is not loopback.
    #[arg(long)]
    allow_http_vault: bool,

    /// Timeout of every provider call (each is retried up to 3 times when transient).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = seal_core::parse_duration)]
    timeout: Duration,
}

impl ProviderArgs {
    /// The defaults for the resolver: flags, then the environment.
    fn defaults(&self) -> Outcome<Defaults> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let secret_env = |name: &str| env(name).map(SecretString::from);
        let token = match &self.vault_token_file {
            Some(file) => Some(TokenSource::File(file.clone())),
            None => secret_env("VAULT_TOKEN")
                .map(TokenSource::Value)
                .or_else(|| {
                    let file = PathBuf::from(env("HOME")?).join(".vault-token");
                    file.is_file().then_some(TokenSource::File(file))
                }),
        };
        let secret_id = match &self.vault_secret_id_file {
            Some(file) => Some(read_secret(file)?),
            None => secret_env("VAULT_SECRET_ID"),
        };
        let ca_bundle = match &self.vault_cacert {
            Some(file) => Some(
                String::from_utf8(crate::io::read_bytes(file)?)
                    .map_err(|_| Failure::input(format!("{}: not PEM text", file.display())))?,
            ),
            None => None,
        };
        let jwt = match &self.vault_jwt_file {
            Some(file) => Some(TokenSource::File(file.clone())),
            None => secret_env("SEAL_VAULT_JWT").map(TokenSource::Value),
        };
        Ok(Defaults {
            vault: VaultDefaults {
                address: self.vault_addr.clone(),
                namespace: self.vault_namespace.clone(),
                ca_bundle,
                auth_method: self
                    .vault_auth_method
                    .as_deref()
                    .map(|m| m.parse::<VaultAuthMethod>().map_err(Failure::input))
                    .transpose()?,
                auth_mount: self.vault_auth_mount.clone(),
                token,
                role: self.vault_role.clone(),
                role_id: self.vault_role_id.clone(),
                secret_id,
                jwt,
                kubernetes_token: Some(TokenSource::File(self.vault_kubernetes_token_file.clone())),
                allow_reference_address: self.allow_reference_address,
                allow_http: self.allow_http_vault,
            },
            aws: AwsDefaults {
                region: self
                    .aws_region
                    .clone()
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION")),
                endpoint: self.aws_endpoint_url.clone(),
                role_arn: self.aws_role_arn.clone(),
            },
            retry: RetryPolicy {
                timeout: self.timeout,
                ..RetryPolicy::default()
            },
        })
    }
}

/// A secret read from a file, surrounding whitespace dropped.
fn read_secret(file: &std::path::Path) -> Outcome<SecretString> {
    let bytes = Zeroizing::new(crate::io::read_bytes(file)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Failure::input(format!("{}: not UTF-8 text", file.display())))?;
    Ok(SecretString::from(text.trim()))
}

/// Runs `future` on a single-threaded Tokio runtime: provider calls wait on the network, and
/// one thread drives all of them concurrently.
pub fn block_on<T>(future: impl Future<Output = Outcome<T>>) -> Outcome<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io(format!("cannot start the async runtime: {e}")))?
        .block_on(future)
}

/// Every reference of one invocation, each once, and then their values.
#[derive(Default)]
pub struct Batch {
    refs: Vec<Reference>,
    index: HashMap<Reference, usize>,
}

/// The values of a resolved [`Batch`].
pub struct Resolved {
    index: HashMap<Reference, usize>,
    values: Vec<SecretValue>,
}

impl Batch {
    /// Adds references (repeats are kept once).
    pub fn add<'a>(&mut self, found: impl IntoIterator<Item = &'a Reference>) {
        for reference in found {
            if !self.index.contains_key(reference) {
                self.index.insert(reference.clone(), self.refs.len());
                self.refs.push(reference.clone());
            }
        }
    }

    /// Resolves every reference, or fails naming the first that cannot be.
    pub async fn resolve(self, args: &ProviderArgs) -> Outcome<Resolved> {
        let resolver = Resolver::new(args.defaults()?);
        let result = resolver.resolve(&self.refs).await;
        if std::env::var("SEAL_DEBUG_CALLS").is_ok_and(|v| !v.is_empty() && v != "0") {
            let mut line = String::from("seal: calls:");
            for count in resolver.calls().snapshot() {
                let _ = write!(
                    line,
                    " {}:{}:{}={}",
                    count.provider,
                    count.call.as_str(),
                    count.status.as_str(),
                    count.count
                );
            }
            eprintln!("{line}");
        }
        let values = result.map_err(|e| failure(&e, &self.refs))?;
        Ok(Resolved {
            index: self.index,
            values,
        })
    }
}

impl Resolved {
    /// The value of a reference of the batch.
    pub fn value(&self, reference: &Reference) -> &SecretValue {
        &self.values[self.index[reference]]
    }

    /// `text` with every reference of `found` (its own, in order) replaced by its value, those
    /// `keep` selects left as they are. Errors name the reference whose value is not text.
    pub fn substitute(
        &self,
        text: &str,
        found: &[Found],
        keep: impl Fn(&Found) -> bool,
    ) -> Outcome<Zeroizing<String>> {
        let mut out = Zeroizing::new(String::with_capacity(text.len()));
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.span.start]);
            if keep(f) {
                out.push_str(&text[f.span.clone()]);
            } else {
                out.push_str(self.text(&f.reference)?);
            }
            at = f.span.end;
        }
        out.push_str(&text[at..]);
        Ok(out)
    }

    /// The value of a reference as text. Errors when it is binary and not UTF-8.
    pub fn text(&self, reference: &Reference) -> Outcome<&str> {
        self.value(reference).expose_str().ok_or_else(|| {
            Failure::input(format!(
                "{reference}: the value is binary (not UTF-8) and cannot be placed in text"
            ))
        })
    }
}

/// The failure for a resolution error: exit 3 when a provider was unreachable, else 2.
fn failure(e: &ResolveError, refs: &[Reference]) -> Failure {
    let mut message = e.to_string();
    if e.others > 0 {
        let _ = write!(message, " (and {} more reference(s) failed)", e.others);
    }
    let vault_v1_path = refs.iter().any(|r| {
        r.to_string() == e.reference
            && r.backend() == Backend::Vault
            && !r.path().contains("/data/")
    });
    let failure = match &e.cause {
        Error::Unavailable { .. } => Failure::io(message),
        _ => Failure::input(message),
    };
    match &e.cause {
        Error::NotFound { .. } if vault_v1_path => failure.hint(
            "on a KV v2 mount the path includes /data/ after the mount: ref+vault://secret/data/PATH#/key",
        ),
        Error::InvalidConfig { detail, .. } if detail.contains("no Vault token") => {
            failure.hint("or choose another login with --vault-auth-method or ?auth_method=")
        }
        _ => failure,
    }
}

/// The references of `text`, the error placed at `place` (a file, argument or key).
pub fn find(text: &str, place: &str) -> Outcome<Vec<Found>> {
    seal_providers::reference::find(text).map_err(|e| Failure::input(e).at(place))
}
