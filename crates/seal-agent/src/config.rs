//! The agent's configuration: a YAML file read once at start, parsed into raw serde structs
//! that reject unknown fields, then validated into [`Config`], the "high" form every mode works
//! from. Every error names the field it is about (`files[1].mode: ...`), never a secret value.
//!
//! ```yaml
//! vault:                      # defaults for ref+vault:// references (else VAULT_ADDR, VAULT_TOKEN)
//!   address: https://vault.internal:8200
//!   auth: {method: kubernetes, role: ml-api}
//! aws: {region: eu-west-1}    # defaults for ref+awssecrets:// (else AWS_REGION; SDK default chain)
//! secrets:                    # name -> reference
//!   db_user: ref+vault://secret/data/ml/db#/user
//!   db_password: ref+vault://secret/data/ml/db#/password
//!   registry_token: ref+awssecrets://ml/registry#/token
//! files:
//!   - path: /secrets/registry-token
//!     secret: registry_token
//!   - path: /secrets/dsn
//!     template: "postgres://{{ .db_user | urlquery }}:{{ .db_password | urlquery }}@db:5432/ml"
//!     mode: "0440"
//!     owner: "1000:1000"
//! env:                        # for `exec`
//!   DB_PASSWORD: {secret: db_password}
//! refresh: {interval: 5m, jitter: 0.1}
//! onChange: {signal: SIGHUP, processName: ml-api}
//! exec: {onChange: restart, stopTimeout: 10s, cleanEnv: false}
//! server: {listen: "127.0.0.1:2773"}
//! metrics: {listen: "0.0.0.0:9102"}   # /metrics and /ping only, for a scraper outside the pod
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use seal_providers::RetryPolicy;
use seal_providers::TokenSource;
use seal_providers::reference::Reference;
use seal_providers::reference::resolve::{AwsDefaults, Defaults, VaultAuthMethod, VaultDefaults};
use seal_template::Template;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

/// The pod's ServiceAccount token, the default JWT for Vault Kubernetes auth.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The variables the endpoint token is read from when `server.tokenEnv` is not set, in order:
/// seal's own, then the AWS Secrets Manager Agent's.
pub const TOKEN_ENVS: [&str; 4] = [
    "SEAL_AGENT_TOKEN",
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// A configuration error: the field it is about and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct ConfigError {
    /// The field, as a path (`files[0].mode`), or the file for a YAML syntax error.
    pub field: String,
    /// What is wrong (never a secret value).
    pub detail: String,
}

fn error(field: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        detail: detail.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    vault: RawVault,
    #[serde(default)]
    aws: RawAws,
    timeout: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    env: BTreeMap<String, RawSource>,
    refresh: Option<RawRefresh>,
    on_change: Option<RawOnChange>,
    exec: Option<RawExec>,
    server: Option<RawServer>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetrics {
    listen: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVault {
    address: Option<String>,
    namespace: Option<String>,
    ca_file: Option<PathBuf>,
    auth: Option<RawVaultAuth>,
    /// Let the credentials go over plain http to a host that is not loopback.
    #[serde(default)]
    allow_http: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVaultAuth {
    method: String,
    mount: Option<String>,
    role: Option<String>,
    token_file: Option<PathBuf>,
    role_id: Option<String>,
    secret_id_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAws {
    region: Option<String>,
    endpoint: Option<String>,
    role_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    path: PathBuf,
    secret: Option<String>,
    template: Option<String>,
    template_file: Option<PathBuf>,
    mode: Option<RawMode>,
    owner: Option<RawOwner>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOwner {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    secret: Option<String>,
    template: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRefresh {
    interval: Option<String>,
    jitter: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOnChange {
    signal: Option<String>,
    pid_file: Option<PathBuf>,
    process_name: Option<String>,
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExec {
    on_change: Option<String>,
    signal: Option<String>,
    stop_timeout: Option<String>,
    #[serde(default)]
    clean_env: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawServer {
    listen: Option<String>,
    token_env: Option<String>,
    ttl: Option<String>,
    max_stale: Option<String>,
    max_connections: Option<usize>,
    max_entries: Option<usize>,
    header_timeout: Option<String>,
    connection_timeout: Option<String>,
    #[serde(default)]
    danger_allow_non_loopback: bool,
}

/// The validated configuration.
pub struct Config {
    /// Provider settings for the references (and the call timeout).
    pub defaults: Defaults,
    /// The named secrets, in name order.
    pub secrets: Vec<(String, Reference)>,
    /// The files to write.
    pub files: Vec<FileSpec>,
    /// The child's variables (`exec`).
    pub env: Vec<(String, Source)>,
    /// When to fetch again (`run`, `exec`).
    pub refresh: Refresh,
    /// What to do when a file changes (`run`).
    pub on_change: Option<OnChange>,
    /// How `exec` treats its child.
    pub exec: ExecSettings,
    /// The localhost endpoint, when enabled.
    pub server: Option<ServerSettings>,
    /// Where `/metrics` (and `/ping`) are served on their own, for a scraper outside the pod.
    pub metrics_listen: Option<SocketAddr>,
}

/// What a file or a variable is made of.
pub enum Source {
    /// One secret's value, as is.
    Secret(String),
    /// A template over the secrets.
    Template(Template),
}

/// One file to write.
pub struct FileSpec {
    /// Where.
    pub path: PathBuf,
    /// Its content.
    pub source: Source,
    /// Its permission bits (default 0400).
    pub mode: u32,
    /// Its owner and group, when they are to be set.
    pub owner: Option<(Option<u32>, Option<u32>)>,
}

/// The refresh schedule.
pub struct Refresh {
    /// The mean interval.
    pub interval: Duration,
    /// Each wait is `interval * (1 ± jitter)`, jitter in [0, 0.5].
    pub jitter: f64,
}

impl Refresh {
    /// The next wait: the interval spread by the jitter, so that many pods do not call the
    /// providers in step.
    pub fn next_wait(&self) -> Duration {
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        self.interval.mul_f64(1.0 + spread)
    }
}

/// The action after a refresh changed a file (`run`).
pub enum OnChange {
    /// Send `signal` to the processes `target` names.
    Signal {
        /// Which signal.
        signal: Signal,
        /// To whom.
        target: SignalTarget,
    },
    /// Run a command (argv, no shell) and wait for it.
    Command(Vec<String>),
}

/// Which process to signal.
pub enum SignalTarget {
    /// The PID in this file (read at each change).
    PidFile(PathBuf),
    /// Every process whose name (`comm`) or program name (argv\[0\]'s file name) is this.
    ProcessName(String),
}

/// What `exec` does when the child's variables change.
#[derive(Clone, Copy)]
pub enum ExecOnChange {
    /// Stop the child (SIGTERM, then SIGKILL after the stop timeout) and start it again.
    Restart,
    /// Send it a signal (it rereads its files itself; its environment cannot change).
    Signal(Signal),
    /// Nothing.
    Ignore,
}

/// `exec` settings.
pub struct ExecSettings {
    /// What to do on change.
    pub on_change: ExecOnChange,
    /// How long a stopping child gets before SIGKILL.
    pub stop_timeout: Duration,
    /// Start the child with only the configured variables, not the agent's environment (which
    /// may hold the agent's own credentials, such as VAULT_TOKEN).
    pub clean_env: bool,
}

/// The localhost endpoint.
pub struct ServerSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The token every secret request must carry.
    pub token: SecretString,
    /// How long a fetched value is served from the cache.
    pub ttl: Duration,
    /// How long past its TTL a value may still be served while the provider is unavailable.
    pub max_stale: Duration,
    /// Open connections beyond this are answered 429 and closed.
    pub max_connections: usize,
    /// Cache entries at most.
    pub max_entries: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// The longest a connection may stay open.
    pub connection_timeout: Duration,
    /// AWS settings for `/secretsmanager/get`.
    pub aws: AwsDefaults,
    /// The listener may be on a non-loopback address.
    pub danger_allow_non_loopback: bool,
}

/// Reads and validates the configuration file at `path`. `env` looks up environment variables
/// (the process's, or a test's).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(path.display().to_string(), format!("cannot read: {e}")))?;
    parse(&text, env).map_err(|mut e| {
        if e.field.is_empty() {
            e.field = path.display().to_string();
        }
        e
    })
}

/// Parses and validates configuration text.
#[allow(clippy::too_many_lines)] // one field after another; splitting it would scatter the order
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?
    };
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let timeout = duration_field("timeout", raw.timeout.as_deref(), Duration::from_secs(10))?;

    let mut secrets = Vec::new();
    for (name, text) in &raw.secrets {
        let field = format!("secrets.{name}");
        check_name(&field, name)?;
        let reference = seal_providers::reference::parse(text.trim())
            .map_err(|e| error(&field, format!("invalid reference: {e}")))?;
        secrets.push((name.clone(), reference));
    }
    let known: BTreeSet<&str> = raw.secrets.keys().map(String::as_str).collect();

    let mut files = Vec::new();
    let mut paths = BTreeSet::new();
    for (i, file) in raw.files.iter().enumerate() {
        let field = format!("files[{i}]");
        if file.path.as_os_str().is_empty() {
            return Err(error(format!("{field}.path"), "must not be empty"));
        }
        if file.path.file_name().is_none() {
            return Err(error(format!("{field}.path"), "must name a file"));
        }
        if !paths.insert(file.path.clone()) {
            return Err(error(
                format!("{field}.path"),
                format!("{} is written by an earlier entry too", file.path.display()),
            ));
        }
        let template = match (&file.template, &file.template_file) {
            (Some(_), Some(_)) => {
                return Err(error(
                    &field,
                    "template and templateFile exclude each other",
                ));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(p)) => Some(std::fs::read_to_string(p).map_err(|e| {
                error(
                    format!("{field}.templateFile"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?),
            (None, None) => None,
        };
        let source = source(&field, file.secret.as_deref(), template.as_deref(), &known)?;
        let mode = match &file.mode {
            None => 0o400,
            Some(mode) => parse_mode(mode).map_err(|d| error(format!("{field}.mode"), d))?,
        };
        let owner = file
            .owner
            .as_ref()
            .map(|o| parse_owner(o).map_err(|d| error(format!("{field}.owner"), d)))
            .transpose()?;
        files.push(FileSpec {
            path: file.path.clone(),
            source,
            mode,
            owner,
        });
    }

    let mut vars = Vec::new();
    for (name, entry) in &raw.env {
        let field = format!("env.{name}");
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(error(
                &field,
                "not a variable name (letters, digits and _, not starting with a digit)",
            ));
        }
        vars.push((
            name.clone(),
            source(
                &field,
                entry.secret.as_deref(),
                entry.template.as_deref(),
                &known,
            )?,
        ));
    }

    let refresh = match &raw.refresh {
        None => Refresh {
            interval: Duration::from_secs(300),
            jitter: 0.1,
        },
        Some(r) => {
            let interval = duration_field(
                "refresh.interval",
                r.interval.as_deref(),
                Duration::from_secs(300),
            )?;
            if interval < Duration::from_millis(100) {
                return Err(error("refresh.interval", "must be at least 100ms"));
            }
            let jitter = r.jitter.unwrap_or(0.1);
            if !(0.0..=0.5).contains(&jitter) {
                return Err(error("refresh.jitter", "must be between 0 and 0.5"));
            }
            Refresh { interval, jitter }
        }
    };

    let on_change = raw.on_change.as_ref().map(on_change).transpose()?;
    let exec = exec_settings(raw.exec.as_ref())?;
    let metrics_listen = raw
        .metrics
        .as_ref()
        .map(|m| {
            m.listen.parse::<SocketAddr>().map_err(|_| {
                error(
                    "metrics.listen",
                    format!("{:?} is not IP:PORT (such as 0.0.0.0:9102)", m.listen),
                )
            })
        })
        .transpose()?;
    let server = raw
        .server
        .as_ref()
        .map(|s| server(s, &raw.aws, &env))
        .transpose()?;

    let defaults = Defaults {
        vault: vault_defaults(&raw.vault, &env)?,
        aws: aws_defaults(&raw.aws, &env),
        retry: RetryPolicy {
            timeout,
            ..RetryPolicy::default()
        },
    };
    Ok(Config {
        defaults,
        secrets,
        files,
        env: vars,
        refresh,
        on_change,
        exec,
        server,
        metrics_listen,
    })
}

/// A serde_yaml error as a field error: its message names the field (`files[0]: unknown field
/// ...`) and the position.
fn yaml_error(e: &serde_yaml::Error) -> ConfigError {
    let message = e.to_string();
    // serde_yaml writes "PATH: DETAIL at line L column C" when it knows the path.
    match message.split_once(": ") {
        Some((path, detail))
            if !path.contains(' ') && !path.is_empty() && !path.starts_with("invalid") =>
        {
            error(path, detail)
        }
        _ => error("", message),
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(error(field, "a secret name is letters, digits, _, - and ."))
    }
}

fn source(
    field: &str,
    secret: Option<&str>,
    template: Option<&str>,
    known: &BTreeSet<&str>,
) -> Result<Source, ConfigError> {
    match (secret, template) {
        (Some(_), Some(_)) => Err(error(field, "secret and a template exclude each other")),
        (None, None) => Err(error(field, "needs a secret or a template")),
        (Some(name), None) => {
            if known.contains(name) {
                Ok(Source::Secret(name.to_owned()))
            } else {
                Err(error(
                    format!("{field}.secret"),
                    format!("{name:?} is not in secrets"),
                ))
            }
        }
        (None, Some(text)) => {
            let template = Template::parse(text)
                .map_err(|e| error(format!("{field}.template"), e.to_string()))?;
            for name in template.value_names() {
                if !known.contains(name) {
                    return Err(error(
                        format!("{field}.template"),
                        format!("uses {name:?}, which is not in secrets"),
                    ));
                }
            }
            Ok(Source::Template(template))
        }
    }
}

/// A mode as octal digits: `"0400"`, `"440"`, or a YAML number whose digits are read as octal
/// (YAML 1.2 reads `0400` as the decimal 400).
fn parse_mode(mode: &RawMode) -> Result<u32, String> {
    let digits = match mode {
        RawMode::Number(n) => n.to_string(),
        RawMode::Text(t) => t.trim().trim_start_matches("0o").to_owned(),
    };
    let mode = u32::from_str_radix(&digits, 8)
        .map_err(|_| format!("{digits:?} is not an octal mode such as \"0400\""))?;
    if mode > 0o777 {
        return Err(format!(
            "{digits:?}: only permission bits (at most 0777) may be set"
        ));
    }
    if mode & 0o400 == 0 {
        return Err("the owner must be able to read the file (0400 at least)".into());
    }
    Ok(mode)
}

/// `UID`, `UID:GID` or `:GID`, numeric (the agent's image has no user database).
fn parse_owner(owner: &RawOwner) -> Result<(Option<u32>, Option<u32>), String> {
    let text = match owner {
        RawOwner::Number(n) => n.to_string(),
        RawOwner::Text(t) => t.trim().to_owned(),
    };
    let id = |s: &str| -> Result<Option<u32>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("{text:?} is not UID, UID:GID or :GID (numbers)"))
        }
    };
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (id(u)?, id(g)?),
        None => (id(&text)?, None),
    };
    if uid.is_none() && gid.is_none() {
        return Err("empty".into());
    }
    Ok((uid, gid))
}

fn signal_field(field: &str, name: &str) -> Result<Signal, ConfigError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| {
        error(
            field,
            format!("{name:?} is not a signal name such as SIGHUP"),
        )
    })
}

fn on_change(raw: &RawOnChange) -> Result<OnChange, ConfigError> {
    let targets = usize::from(raw.pid_file.is_some()) + usize::from(raw.process_name.is_some());
    match (&raw.command, targets) {
        (Some(_), 0) if raw.signal.is_none() => {}
        (Some(_), _) => {
            return Err(error(
                "onChange",
                "command excludes signal, pidFile and processName",
            ));
        }
        (None, 1) => {}
        (None, 0) => {
            return Err(error(
                "onChange",
                "needs pidFile or processName (with signal), or command",
            ));
        }
        (None, _) => {
            return Err(error(
                "onChange",
                "pidFile and processName exclude each other",
            ));
        }
    }
    if let Some(command) = &raw.command {
        if command.is_empty() || command[0].is_empty() {
            return Err(error("onChange.command", "must name a program"));
        }
        return Ok(OnChange::Command(command.clone()));
    }
    let signal = signal_field("onChange.signal", raw.signal.as_deref().unwrap_or("SIGHUP"))?;
    let target = match (&raw.pid_file, &raw.process_name) {
        (Some(p), _) => SignalTarget::PidFile(p.clone()),
        (None, Some(n)) if !n.trim().is_empty() => SignalTarget::ProcessName(n.trim().to_owned()),
        _ => return Err(error("onChange.processName", "must not be empty")),
    };
    Ok(OnChange::Signal { signal, target })
}

fn exec_settings(raw: Option<&RawExec>) -> Result<ExecSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ExecSettings {
            on_change: ExecOnChange::Restart,
            stop_timeout: Duration::from_secs(10),
            clean_env: false,
        });
    };
    let on_change = match raw.on_change.as_deref().unwrap_or("restart") {
        "restart" => {
            if raw.signal.is_some() {
                return Err(error("exec.signal", "only with onChange: signal"));
            }
            ExecOnChange::Restart
        }
        "signal" => ExecOnChange::Signal(signal_field(
            "exec.signal",
            raw.signal.as_deref().unwrap_or("SIGHUP"),
        )?),
        "none" => ExecOnChange::Ignore,
        other => {
            return Err(error(
                "exec.onChange",
                format!("{other:?}: expected restart, signal or none"),
            ));
        }
    };
    Ok(ExecSettings {
        on_change,
        stop_timeout: duration_field(
            "exec.stopTimeout",
            raw.stop_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        clean_env: raw.clean_env,
    })
}

fn server(
    raw: &RawServer,
    aws: &RawAws,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServerSettings, ConfigError> {
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:2773");
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        error(
            "server.listen",
            format!("{listen_text:?} is not IP:PORT (such as 127.0.0.1:2773)"),
        )
    })?;
    if !listen.ip().is_loopback() && !raw.danger_allow_non_loopback {
        return Err(error(
            "server.listen",
            format!(
                "{listen} is not a loopback address; the endpoint hands out secrets, so it listens on loopback only unless server.dangerAllowNonLoopback is true"
            ),
        ));
    }
    let token = endpoint_token(raw.token_env.as_deref(), env)?;
    let ttl = duration_field("server.ttl", raw.ttl.as_deref(), Duration::from_secs(300))?;
    if ttl > Duration::from_secs(3600) {
        return Err(error("server.ttl", "at most 1h"));
    }
    let positive = |field: &str, n: Option<usize>, default: usize| match n {
        Some(0) => Err(error(field, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(ServerSettings {
        listen,
        token,
        ttl,
        max_stale: duration_field(
            "server.maxStale",
            raw.max_stale.as_deref(),
            Duration::from_secs(3600),
        )?,
        max_connections: positive("server.maxConnections", raw.max_connections, 800)?,
        max_entries: positive("server.maxEntries", raw.max_entries, 1000)?,
        header_timeout: duration_field(
            "server.headerTimeout",
            raw.header_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        connection_timeout: duration_field(
            "server.connectionTimeout",
            raw.connection_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        aws: aws_defaults(aws, env),
        danger_allow_non_loopback: raw.danger_allow_non_loopback,
    })
}

/// The endpoint token: the value of `token_env` (or of the first of [`TOKEN_ENVS`] that is set),
/// read from a file when it is `file://PATH`. None, or an empty one, is an error: the endpoint
/// never runs without a token.
fn endpoint_token(
    token_env: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretString, ConfigError> {
    let (name, value) = match token_env {
        Some(name) => (
            name.to_owned(),
            env(name).ok_or_else(|| {
                error(
                    "server.tokenEnv",
                    format!("{name} is not set; the endpoint needs a token"),
                )
            })?,
        ),
        None => TOKEN_ENVS
            .iter()
            .find_map(|n| env(n).map(|v| ((*n).to_owned(), v)))
            .ok_or_else(|| {
                error(
                    "server",
                    format!(
                        "no token: set one of {} (the token itself or file://PATH), or name a variable in server.tokenEnv",
                        TOKEN_ENVS.join(", ")
                    ),
                )
            })?,
    };
    let value = Zeroizing::new(value);
    let token = match value.strip_prefix("file://") {
        Some(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                error(
                    "server",
                    format!("{name}: cannot read the token file {path}: {e}"),
                )
            })?);
            SecretString::from(text.trim())
        }
        None => SecretString::from(value.trim()),
    };
    if secrecy::ExposeSecret::expose_secret(&token).is_empty() {
        return Err(error("server", format!("{name}: the token is empty")));
    }
    Ok(token)
}

fn vault_defaults(
    raw: &RawVault,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<VaultDefaults, ConfigError> {
    let ca_bundle = raw
        .ca_file
        .as_ref()
        .or(env("VAULT_CACERT").map(PathBuf::from).as_ref())
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| error("vault.caFile", format!("cannot read {}: {e}", p.display())))
        })
        .transpose()?;
    let mut defaults = VaultDefaults {
        address: raw.address.clone().or_else(|| env("VAULT_ADDR")),
        namespace: raw.namespace.clone().or_else(|| env("VAULT_NAMESPACE")),
        ca_bundle,
        token: env("VAULT_TOKEN").map(|t| TokenSource::Value(SecretString::from(t))),
        kubernetes_token: Some(TokenSource::File(SERVICE_ACCOUNT_TOKEN.into())),
        allow_http: raw.allow_http,
        ..VaultDefaults::default()
    };
    let Some(auth) = &raw.auth else {
        return Ok(defaults);
    };
    let method: VaultAuthMethod = auth
        .method
        .parse()
        .map_err(|e: String| error("vault.auth.method", e))?;
    defaults.auth_method = Some(method);
    defaults.auth_mount.clone_from(&auth.mount);
    defaults.role.clone_from(&auth.role);
    defaults.role_id.clone_from(&auth.role_id);
    if let Some(file) = &auth.token_file {
        let source = TokenSource::File(file.clone());
        match method {
            VaultAuthMethod::Kubernetes => defaults.kubernetes_token = Some(source),
            VaultAuthMethod::Jwt => defaults.jwt = Some(source),
            _ => defaults.token = Some(source),
        }
    }
    if let Some(file) = &auth.secret_id_file {
        let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
            error(
                "vault.auth.secretIdFile",
                format!("cannot read {}: {e}", file.display()),
            )
        })?);
        defaults.secret_id = Some(SecretString::from(text.trim()));
    } else {
        defaults.secret_id = env("VAULT_SECRET_ID").map(SecretString::from);
    }
    match method {
        VaultAuthMethod::Kubernetes if auth.role.is_none() => {
            Err(error("vault.auth.role", "Kubernetes auth needs a role"))
        }
        VaultAuthMethod::AppRole if defaults.role_id.is_none() => {
            Err(error("vault.auth.roleId", "AppRole auth needs a role id"))
        }
        _ => Ok(defaults),
    }
}

fn aws_defaults(raw: &RawAws, env: &dyn Fn(&str) -> Option<String>) -> AwsDefaults {
    AwsDefaults {
        region: raw
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION")),
        endpoint: raw.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
        role_arn: raw.role_arn.clone(),
    }
}

fn duration_field(
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        // The one grammar of every seal duration: Go's, plus days.
        Some(text) => seal_core::parse_duration(text).map_err(|d| error(field, d.to_string())),
    }
}

/// A one-line description of the configuration for the start-up log: counts and names, never
/// values.
pub fn describe(config: &Config) -> String {
    let mut out = format!(
        "{} secret(s), {} file(s), {} variable(s)",
        config.secrets.len(),
        config.files.len(),
        config.env.len()
    );
    if let Some(server) = &config.server {
        let _ = write!(out, ", endpoint on {}", server.listen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SEAL_AGENT_TOKEN" => Some("t0ken".into()),
            _ => None,
        }
    }

    fn err(text: &str) -> String {
        match parse(text, &env) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_config_parses() {
        let config = parse(
            r#"
vault: {address: "http://127.0.0.1:8200", auth: {method: kubernetes, role: ml}}
aws: {region: eu-west-1}
timeout: 3s
secrets:
  user: ref+vault://secret/data/ml/db#/user
  pw: ref+vault://secret/data/ml/db#/password
files:
  - {path: /s/pw, secret: pw}
  - {path: /s/dsn, template: "postgres://{{ .user }}:{{ .pw }}@db", mode: "0440", owner: "1000:2000"}
  - {path: /s/x, secret: pw, mode: 600, owner: 7}
env: {PW: {secret: pw}}
refresh: {interval: 1m30s, jitter: 0.2}
onChange: {signal: SIGUSR1, processName: app}
exec: {onChange: signal, signal: HUP, stopTimeout: 2s}
server: {listen: "127.0.0.1:0", ttl: 10s}
"#,
            &env,
        )
        .unwrap();
        assert_eq!(config.secrets.len(), 2);
        assert_eq!(config.files[0].mode, 0o400);
        assert_eq!(config.files[1].mode, 0o440);
        assert_eq!(config.files[1].owner, Some((Some(1000), Some(2000))));
        assert_eq!(config.files[2].mode, 0o600);
        assert_eq!(config.files[2].owner, Some((Some(7), None)));
        assert_eq!(config.refresh.interval, Duration::from_secs(90));
        assert_eq!(config.defaults.retry.timeout, Duration::from_secs(3));
        assert!(matches!(
            config.exec.on_change,
            ExecOnChange::Signal(Signal::SIGHUP)
        ));
        assert_eq!(config.server.unwrap().ttl, Duration::from_secs(10));
    }

    #[test]
    fn unknown_fields_are_named() {
        assert!(err("secrets: {}\nfiels: []").contains("fiels"));
        let e =
            err("secrets: {a: ref+vault://s/data/a}\nfiles:\n  - {path: /a, secret: a, mdoe: 1}");
        assert!(e.starts_with("files[0]"), "{e}");
        assert!(e.contains("mdoe"), "{e}");
        assert!(err("server: {listen: '127.0.0.1:1', tokn: x}").contains("tokn"));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let base = "secrets: {a: ref+vault://s/data/a#/k}\n";
        let cases = [
            ("files: [{path: /a, secret: b}]", "files[0].secret"),
            ("files: [{path: /a}]", "files[0]: needs"),
            (
                "files: [{path: /a, secret: a, mode: '0999'}]",
                "files[0].mode",
            ),
            (
                "files: [{path: /a, secret: a, mode: '0200'}]",
                "files[0].mode",
            ),
            (
                "files: [{path: /a, secret: a, owner: 'x:y'}]",
                "files[0].owner",
            ),
            (
                "files: [{path: /a, template: '{{ .b }}'}]",
                "files[0].template",
            ),
            (
                "files: [{path: /a, template: '{{ .a '}]",
                "files[0].template",
            ),
            (
                "files: [{path: /a, secret: a}, {path: /a, secret: a}]",
                "files[1].path",
            ),
            ("env: {1X: {secret: a}}", "env.1X"),
            ("refresh: {interval: soon}", "refresh.interval"),
            ("refresh: {jitter: 2}", "refresh.jitter"),
            (
                "onChange: {signal: SIGNOPE, pidFile: /p}",
                "onChange.signal",
            ),
            ("onChange: {signal: HUP}", "onChange"),
            ("exec: {onChange: reboot}", "exec.onChange"),
            ("server: {listen: '0.0.0.0:2773'}", "server.listen"),
            ("server: {listen: 'localhost'}", "server.listen"),
            ("server: {ttl: 2h}", "server.ttl"),
            ("server: {tokenEnv: NOPE}", "server.tokenEnv"),
            ("vault: {auth: {method: magic}}", "vault.auth.method"),
            ("vault: {auth: {method: kubernetes}}", "vault.auth.role"),
        ];
        for (text, field) in cases {
            let e = err(&format!("{base}{text}"));
            assert!(e.starts_with(field), "{text}: {e}");
        }
        assert!(err("secrets: {a: ref+nope://x}").starts_with("secrets.a"));
        assert!(err("secrets: {'a b': ref+vault://s/data/a}").starts_with("secrets.a b"));
    }

    #[test]
    fn the_endpoint_needs_a_token() {
        let e = match parse("server: {}", &|_| None) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started without a token"),
        };
        assert!(e.contains("no token"), "{e}");
        let empty = |n: &str| (n == "AWS_TOKEN").then(|| "   ".to_owned());
        assert!(parse("server: {}", &empty).is_err());
    }

    #[test]
    fn the_token_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let value = format!("file://{}", file.display());
        let env = move |n: &str| (n == "AWS_TOKEN").then(|| value.clone());
        let config = parse("server: {}", &env).unwrap();
        let token = config.server.unwrap().token;
        assert_eq!(secrecy::ExposeSecret::expose_secret(&token), "from-file");
    }

    #[test]
    fn duration_fields_take_the_one_duration_grammar() {
        let default = Duration::from_secs(1);
        let field = |text| duration_field("refresh.interval", Some(text), default);
        assert_eq!(field("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(field("1h2m3s").unwrap(), Duration::from_secs(3723));
        assert_eq!(field("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(duration_field("x", None, default).unwrap(), default);
        for bad in ["5", "m", ""] {
            let message = field(bad).unwrap_err().to_string();
            assert!(message.contains("refresh.interval"), "{message}");
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let refresh = Refresh {
            interval: Duration::from_secs(100),
            jitter: 0.1,
        };
        for _ in 0..1000 {
            let wait = refresh.next_wait();
            assert!(wait >= Duration::from_secs(90) && wait <= Duration::from_secs(110));
        }
    }
}
