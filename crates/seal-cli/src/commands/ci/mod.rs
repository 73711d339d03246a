//! The deploy-time commands, `seal get`, `seal env`, `seal render` and `seal exec`: they resolve
//! vals references (`ref+vault://...`, `ref+awssecrets://...`, see `seal_providers::reference`)
//! for CI jobs and helmfile.
//!
//! This module holds what the four share: the provider flags, laid over the environment variables
//! `seal_providers::environment` reads (the same ones, with the same precedence, as seal-agent),
//! and [`Batch`], which collects every reference of one invocation, resolves them in
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

use seal_providers::environment::{self, Environment, Fallbacks};
use seal_providers::reference::resolve::{
    AwsDefaults, Defaults, ResolveError, Resolver, VaultAuthMethod, VaultDefaults,
};
use seal_providers::reference::{Backend, Found, Reference};
use seal_providers::{Error, RetryPolicy, SecretValue, TokenSource};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::failure::{Failure, Outcome};

/// Where secrets come from and how to log in, for references that do not say.
///
/// The standard variables (`VAULT_ADDR`, `VAULT_TOKEN`, `AWS_REGION`, ...) are read by
/// `seal_providers::environment`, the one place the CLI and seal-agent read them, with the CLI's
/// two fallbacks on (`~/.vault-token`, `SEAL_VAULT_JWT`); these flags overlay them. The `SEAL_*`
/// variables below are the flags' own, read by clap.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Providers")]
pub struct ProviderArgs {
    /// Vault (or OpenBao) address (default: VAULT_ADDR).
    #[arg(long, value_name = "URL")]
    vault_addr: Option<String>,

    /// Vault namespace (default: VAULT_NAMESPACE).
    #[arg(long, value_name = "NAMESPACE")]
    vault_namespace: Option<String>,

    /// PEM file of the CA certificates to trust for Vault instead of the system's (default:
    /// VAULT_CACERT).
    #[arg(long, value_name = "FILE")]
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

    /// AppRole role id (default: VAULT_ROLE_ID).
    #[arg(long, value_name = "ID")]
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
        default_value = environment::SERVICE_ACCOUNT_TOKEN
    )]
    vault_kubernetes_token_file: PathBuf,

    /// AWS region (default: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's).
    #[arg(long, value_name = "REGION")]
    aws_region: Option<String>,

    /// Endpoint for every AWS call, a local test server or a VPC endpoint (default:
    /// AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
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

/// The sources the CLI reads beyond the standard variables: `~/.vault-token` (what `vault login`
/// writes, for a person at a terminal) and `SEAL_VAULT_JWT` (a CI job's OIDC token).
const CLI_FALLBACKS: Fallbacks = Fallbacks {
    home_vault_token: true,
    seal_vault_jwt: true,
};

impl ProviderArgs {
    /// The defaults for the resolver: the flags over the process's environment.
    fn defaults(&self) -> Outcome<Defaults> {
        self.over(environment::read(&environment::process, CLI_FALLBACKS))
    }

    /// The flags over `environment`: a flag given wins over its variable, which wins over the
    /// built-in default.
    fn over(&self, environment: Environment) -> Outcome<Defaults> {
        let Environment {
            vault: vault_env,
            aws: aws_env,
            vault_cacert,
        } = environment;
        let token = match &self.vault_token_file {
            Some(file) => Some(TokenSource::File(file.clone())),
            None => vault_env.token,
        };
        let secret_id = match &self.vault_secret_id_file {
            Some(file) => Some(read_secret(file)?),
            None => vault_env.secret_id,
        };
        let ca_bundle = match self.vault_cacert.as_ref().or(vault_cacert.as_ref()) {
            Some(file) => Some(
                String::from_utf8(crate::io::read_bytes(file)?)
                    .map_err(|_| Failure::input(format!("{}: not PEM text", file.display())))?,
            ),
            None => None,
        };
        let jwt = match &self.vault_jwt_file {
            Some(file) => Some(TokenSource::File(file.clone())),
            None => vault_env.jwt,
        };
        Ok(Defaults {
            vault: VaultDefaults {
                address: self.vault_addr.clone().or(vault_env.address),
                namespace: self.vault_namespace.clone().or(vault_env.namespace),
                ca_bundle,
                auth_method: self
                    .vault_auth_method
                    .as_deref()
                    .map(|m| m.parse::<VaultAuthMethod>().map_err(Failure::input))
                    .transpose()?,
                auth_mount: self.vault_auth_mount.clone(),
                token,
                role: self.vault_role.clone(),
                role_id: self.vault_role_id.clone().or(vault_env.role_id),
                secret_id,
                jwt,
                kubernetes_token: Some(TokenSource::File(self.vault_kubernetes_token_file.clone())),
                allow_reference_address: self.allow_reference_address,
                allow_http: self.allow_http_vault,
            },
            aws: AwsDefaults {
                region: self.aws_region.clone().or(aws_env.region),
                endpoint: self.aws_endpoint_url.clone().or(aws_env.endpoint),
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
    let vault_whole_secret = refs.iter().any(|r| {
        r.to_string() == e.reference && r.backend() == Backend::Vault && r.property().is_none()
    });
    let failure = match &e.cause {
        Error::Unavailable { .. } => Failure::io(message),
        _ => Failure::input(message),
    };
    match &e.cause {
        Error::NotFound { .. } if vault_whole_secret => failure.hint(
            "without #/ the path's last segment is the key, as in vals: ref+vault://secret/ml/db/password \
             reads the key password of secret/ml/db",
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

#[cfg(test)]
mod tests {
    //! Precedence: a flag > its environment variable > the built-in default, one case per
    //! setting. The standard variables are a test's (`environment::read` over a fixed map), not
    //! the process's; flags are parsed by clap, as `seal` parses them.

    use std::collections::HashMap;

    use clap::Parser as _;
    use secrecy::ExposeSecret as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        providers: ProviderArgs,
    }

    /// The defaults `flags` give over exactly `vars`.
    fn defaults(flags: &[&str], vars: &[(&str, &str)]) -> Defaults {
        let args = Cli::try_parse_from(std::iter::once("seal").chain(flags.iter().copied()))
            .unwrap()
            .providers;
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let environment = environment::read(&|name| vars.get(name).cloned(), CLI_FALLBACKS);
        args.over(environment).unwrap()
    }

    fn shown(source: Option<&TokenSource>) -> Option<String> {
        match source? {
            TokenSource::Value(v) => Some(v.expose_secret().to_owned()),
            TokenSource::File(p) => Some(format!("file:{}", p.display())),
            TokenSource::Fetched(_) => Some("fetched".into()),
        }
    }

    #[test]
    fn the_vault_address_namespace_and_role_id() {
        let env = [
            ("VAULT_ADDR", "https://env:8200"),
            ("VAULT_NAMESPACE", "env-ns"),
            ("VAULT_ROLE_ID", "rid.env"),
        ];
        let flags = [
            "--vault-addr=https://flag:8200",
            "--vault-namespace=flag-ns",
            "--vault-role-id=rid.flag",
        ];
        let d = defaults(&flags, &env);
        assert_eq!(d.vault.address.as_deref(), Some("https://flag:8200"));
        assert_eq!(d.vault.namespace.as_deref(), Some("flag-ns"));
        assert_eq!(d.vault.role_id.as_deref(), Some("rid.flag"));
        let d = defaults(&[], &env);
        assert_eq!(d.vault.address.as_deref(), Some("https://env:8200"));
        assert_eq!(d.vault.namespace.as_deref(), Some("env-ns"));
        assert_eq!(d.vault.role_id.as_deref(), Some("rid.env"));
        let d = defaults(&[], &[]);
        assert_eq!(d.vault.address, None);
        assert_eq!(d.vault.namespace, None);
        assert_eq!(d.vault.role_id, None);
    }

    #[test]
    fn the_vault_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (flag_ca, env_ca) = (dir.path().join("flag.pem"), dir.path().join("env.pem"));
        std::fs::write(&flag_ca, "FLAG CA").unwrap();
        std::fs::write(&env_ca, "ENV CA").unwrap();
        let flag = format!("--vault-cacert={}", flag_ca.display());
        let env_var = env_ca.to_str().unwrap();

        let d = defaults(&[&flag], &[("VAULT_CACERT", env_var)]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("FLAG CA"));
        // The flag replaces VAULT_CACERT, which is then not read at all.
        let d = defaults(&[&flag], &[("VAULT_CACERT", "/nonexistent/ca.pem")]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("FLAG CA"));
        let d = defaults(&[], &[("VAULT_CACERT", env_var)]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("ENV CA"));
        assert_eq!(defaults(&[], &[]).vault.ca_bundle, None);
    }

    #[test]
    fn the_vault_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".vault-token"), "from-home").unwrap();
        let home = dir.path().to_str().unwrap();
        let home_file = format!("file:{}", dir.path().join(".vault-token").display());
        let env = [("VAULT_TOKEN", "hvs.env"), ("HOME", home)];

        let d = defaults(&["--vault-token-file=/run/token"], &env);
        assert_eq!(
            shown(d.vault.token.as_ref()).as_deref(),
            Some("file:/run/token")
        );
        let d = defaults(&[], &env);
        assert_eq!(shown(d.vault.token.as_ref()).as_deref(), Some("hvs.env"));
        let d = defaults(&[], &[("HOME", home)]);
        assert_eq!(shown(d.vault.token.as_ref()), Some(home_file.clone()));
        let d = defaults(&[], &[("VAULT_TOKEN", ""), ("HOME", home)]);
        assert_eq!(shown(d.vault.token.as_ref()), Some(home_file));
        assert!(defaults(&[], &[]).vault.token.is_none());
    }

    #[test]
    fn the_approle_secret_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret-id");
        std::fs::write(&file, "sid.file\n").unwrap();
        let flag = format!("--vault-secret-id-file={}", file.display());
        let env = [("VAULT_SECRET_ID", "sid.env")];
        let secret_id = |d: &Defaults| {
            d.vault
                .secret_id
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
        };

        assert_eq!(
            secret_id(&defaults(&[&flag], &env)).as_deref(),
            Some("sid.file")
        );
        assert_eq!(secret_id(&defaults(&[], &env)).as_deref(), Some("sid.env"));
        assert_eq!(secret_id(&defaults(&[], &[])), None);
    }

    #[test]
    fn the_jwts() {
        let env = [("SEAL_VAULT_JWT", "eyJ.env")];
        let d = defaults(&["--vault-jwt-file=/run/oidc"], &env);
        assert_eq!(
            shown(d.vault.jwt.as_ref()).as_deref(),
            Some("file:/run/oidc")
        );
        let d = defaults(&[], &env);
        assert_eq!(shown(d.vault.jwt.as_ref()).as_deref(), Some("eyJ.env"));
        assert!(defaults(&[], &[]).vault.jwt.is_none());

        let d = defaults(&["--vault-kubernetes-token-file=/run/sa"], &[]);
        assert_eq!(
            shown(d.vault.kubernetes_token.as_ref()).as_deref(),
            Some("file:/run/sa")
        );
        let sa = format!("file:{}", environment::SERVICE_ACCOUNT_TOKEN);
        let d = defaults(&[], &[]);
        assert_eq!(shown(d.vault.kubernetes_token.as_ref()), Some(sa));
    }

    #[test]
    fn the_aws_region_and_endpoint() {
        let env = [
            ("AWS_REGION", "env-1"),
            ("AWS_DEFAULT_REGION", "env-2"),
            ("AWS_ENDPOINT_URL", "http://env:5000"),
        ];
        let flags = ["--aws-region=flag-1", "--aws-endpoint-url=http://flag:5000"];
        let d = defaults(&flags, &env);
        assert_eq!(d.aws.region.as_deref(), Some("flag-1"));
        assert_eq!(d.aws.endpoint.as_deref(), Some("http://flag:5000"));
        let d = defaults(&[], &env);
        assert_eq!(d.aws.region.as_deref(), Some("env-1"));
        assert_eq!(d.aws.endpoint.as_deref(), Some("http://env:5000"));
        let d = defaults(&[], &[("AWS_DEFAULT_REGION", "env-2")]);
        assert_eq!(d.aws.region.as_deref(), Some("env-2"));
        let d = defaults(&[], &[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "env-2")]);
        assert_eq!(d.aws.region.as_deref(), Some("env-2"));
        let d = defaults(&[], &[]);
        assert_eq!((d.aws.region, d.aws.endpoint), (None, None));
    }

    #[test]
    fn empty_standard_variables_count_as_unset() {
        let env = [
            ("VAULT_ADDR", ""),
            ("VAULT_NAMESPACE", ""),
            ("VAULT_CACERT", ""),
            ("VAULT_ROLE_ID", ""),
            ("AWS_ENDPOINT_URL", ""),
        ];
        let d = defaults(&[], &env);
        assert_eq!(d.vault.address, None);
        assert_eq!(d.vault.namespace, None);
        assert_eq!(d.vault.ca_bundle, None);
        assert_eq!(d.vault.role_id, None);
        assert_eq!(d.aws.endpoint, None);
    }
}
