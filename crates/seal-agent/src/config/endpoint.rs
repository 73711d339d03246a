//! The listeners' settings: the `server` section (the localhost endpoint: where it listens, its
//! token, cache TTLs and connection limits) and `metrics.listen` (the metrics-only listener).
//!
//! The endpoint hands out secrets, so two rules are enforced here rather than left to the
//! deployment: it listens on loopback unless `dangerAllowNonLoopback` says otherwise, and it never
//! runs without a token. The token comes from the variable `tokenEnv` names, else the first of
//! [`TOKEN_ENVS`] that is set (seal's own, then the AWS Secrets Manager Agent's), and may be
//! `file://PATH` to read it from a file.

use std::net::SocketAddr;
use std::time::Duration;

use seal_providers::reference::resolve::AwsDefaults;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::duration::duration_field;
use super::raw::{RawMetrics, RawServer};
use super::{ConfigError, error};

/// The variables the endpoint token is read from when `server.tokenEnv` is not set, in order:
/// seal's own, then the AWS Secrets Manager Agent's.
pub const TOKEN_ENVS: [&str; 4] = [
    "SEAL_AGENT_TOKEN",
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

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

/// `metrics.listen` validated: where `/metrics` and `/ping` are served on their own.
pub(super) fn metrics_listen(raw: Option<&RawMetrics>) -> Result<Option<SocketAddr>, ConfigError> {
    raw.map(|m| {
        m.listen.parse::<SocketAddr>().map_err(|_| {
            error(
                "metrics.listen",
                format!("{:?} is not IP:PORT (such as 0.0.0.0:9102)", m.listen),
            )
        })
    })
    .transpose()
}

/// The `server` section validated; `aws` is the AWS settings `/secretsmanager/get` uses (the
/// `aws` section over the environment), `env` the lookup the token is read through.
pub(super) fn server(
    raw: &RawServer,
    aws: AwsDefaults,
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
        aws,
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

#[cfg(test)]
mod tests {
    use crate::config::parse;

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
}
