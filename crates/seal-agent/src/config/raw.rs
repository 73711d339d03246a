//! The YAML file's shape, as serde reads it: every section and field, nothing checked yet but
//! the types. Every struct rejects unknown fields, so a misspelt key (`fiels`, `mdoe`) is an error
//! naming it instead of a setting silently ignored. The other files of this module validate these
//! structs into [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) vault: RawVault,
    #[serde(default)]
    pub(super) aws: RawAws,
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) files: Vec<RawFile>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, RawSource>,
    pub(super) refresh: Option<RawRefresh>,
    pub(super) on_change: Option<RawOnChange>,
    pub(super) exec: Option<RawExec>,
    pub(super) server: Option<RawServer>,
    pub(super) metrics: Option<RawMetrics>,
}

/// `metrics`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetrics {
    pub(super) listen: String,
}

/// `vault`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawVault {
    pub(super) address: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) auth: Option<RawVaultAuth>,
    /// Let the credentials go over plain http to a host that is not loopback.
    #[serde(default)]
    pub(super) allow_http: bool,
}

/// `vault.auth`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawVaultAuth {
    pub(super) method: String,
    pub(super) mount: Option<String>,
    pub(super) role: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) role_id: Option<String>,
    pub(super) secret_id_file: Option<PathBuf>,
}

/// `aws`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAws {
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) role_arn: Option<String>,
}

/// One entry of `files`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawFile {
    pub(super) path: PathBuf,
    pub(super) secret: Option<String>,
    pub(super) template: Option<String>,
    pub(super) template_file: Option<PathBuf>,
    pub(super) mode: Option<RawMode>,
    pub(super) owner: Option<RawOwner>,
}

/// `files[].mode`: a YAML number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawMode {
    Number(u64),
    Text(String),
}

/// `files[].owner`: a YAML number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawOwner {
    Number(u64),
    Text(String),
}

/// One entry of `env`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSource {
    pub(super) secret: Option<String>,
    pub(super) template: Option<String>,
}

/// `refresh`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRefresh {
    pub(super) interval: Option<String>,
    pub(super) jitter: Option<f64>,
}

/// `onChange`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawOnChange {
    pub(super) signal: Option<String>,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) process_name: Option<String>,
    pub(super) command: Option<Vec<String>>,
}

/// `exec`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawExec {
    pub(super) on_change: Option<String>,
    pub(super) signal: Option<String>,
    pub(super) stop_timeout: Option<String>,
    #[serde(default)]
    pub(super) clean_env: bool,
}

/// `server`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) ttl: Option<String>,
    pub(super) max_stale: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_entries: Option<usize>,
    pub(super) header_timeout: Option<String>,
    pub(super) connection_timeout: Option<String>,
    #[serde(default)]
    pub(super) danger_allow_non_loopback: bool,
}
