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
//!   db_user: ref+vault://secret/ml/db#/user
//!   db_password: ref+vault://secret/ml/db#/password
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
//!
//! One file per job; this one holds the [`Config`] type, [`load`] and [`parse`] (which call the
//! others in the order above), the error type and [`describe`].
//!
//! | Job | File |
//! |---|---|
//! | the YAML's shape, unknown fields rejected | `raw.rs` |
//! | `secrets`, and what a file or variable is made of ([`Source`]) | `secrets.rs` |
//! | `files`: paths, templates, mode, owner ([`FileSpec`]) | `files.rs` |
//! | `refresh`: interval and jitter ([`Refresh`]) | `refresh.rs` |
//! | `onChange`, `exec`, `env`: what is done to the app's process | `process.rs` |
//! | `server` and its token, `metrics.listen` ([`ServerSettings`]) | `endpoint.rs` |
//! | `vault`, `aws`, `timeout` over the environment (`VAULT_ADDR`, `AWS_REGION`, ...) | `providers.rs` |
//! | the one duration grammar of every duration field | `duration.rs` |

mod duration;
mod endpoint;
mod files;
mod process;
mod providers;
mod raw;
mod refresh;
mod secrets;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use seal_providers::environment::{self, Fallbacks};
use seal_providers::reference::Reference;
use seal_providers::reference::resolve::Defaults;

pub use endpoint::ServerSettings;
pub use files::FileSpec;
pub use process::{ExecOnChange, ExecSettings, OnChange, SignalTarget};
pub use refresh::Refresh;
pub use secrets::Source;

use duration::duration_field;
use raw::RawConfig;

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

/// Parses and validates configuration text. `env` looks up environment variables: the endpoint
/// token's, and the standard provider variables (read by `seal_providers::environment`, without
/// the CLI's fallbacks).
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?
    };
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    // The agent has no `~/.vault-token` or `SEAL_VAULT_JWT`: see `Fallbacks`.
    let environment = environment::read(&env, Fallbacks::default());
    let timeout = duration_field("timeout", raw.timeout.as_deref(), Duration::from_secs(10))?;

    let secrets = secrets::secrets(&raw.secrets)?;
    let known: BTreeSet<&str> = raw.secrets.keys().map(String::as_str).collect();
    let files = files::files(&raw.files, &known)?;
    let vars = process::variables(&raw.env, &known)?;
    let refresh = refresh::refresh(raw.refresh.as_ref())?;
    let on_change = raw.on_change.as_ref().map(process::on_change).transpose()?;
    let exec = process::exec_settings(raw.exec.as_ref())?;
    let metrics_listen = endpoint::metrics_listen(raw.metrics.as_ref())?;
    let server = raw
        .server
        .as_ref()
        .map(|s| endpoint::server(s, providers::aws_defaults(&raw.aws, &environment), &env))
        .transpose()?;
    let defaults = providers::defaults(&raw.vault, &raw.aws, timeout, &environment)?;

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
    use nix::sys::signal::Signal;

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
  user: ref+vault://secret/ml/db#/user
  pw: ref+vault://secret/ml/db#/password
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
}
