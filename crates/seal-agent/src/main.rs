//! `seal-agent`: the sidecar that delivers Vault and AWS Secrets Manager values to a workload
//! without a Kubernetes Secret: as files in a memory volume (`init`, `run`), as the environment
//! of a supervised child (`exec`), or through an opt-in localhost endpoint compatible with the
//! AWS Secrets Manager Agent.
//!
//! The modules: [`config`] (the YAML file, validated), [`output`] (fetch, render, atomic
//! writes), [`modes`] (init, run, exec), [`endpoint`] (the localhost endpoint and its cache),
//! [`metrics`]. `config` and `endpoint` are folders with one file per job, each listed in its
//! `mod.rs`.
//! Providers and references come from `seal-providers`, templates from `seal-template`.
//!
//! Exit codes: 0 success; 1 a secret could not be fetched, rendered or written, or the agent
//! could not start; 2 an invalid configuration or invalid arguments. `exec` exits with the
//! child's code, or 128 + the signal that ended it.

mod config;
mod endpoint;
mod metrics;
mod modes;
mod output;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  # Init container: fetch once, write the files, exit
  seal-agent init -c /etc/seal-agent/config.yaml

  # Sidecar: keep the files fresh, signal the app on change, serve localhost:2773
  SEAL_AGENT_TOKEN=file:///var/run/seal/token seal-agent run -c /etc/seal-agent/config.yaml

  # Supervise the app with the values in its environment
  seal-agent exec -c /etc/seal-agent/config.yaml -- ml-api --port 8080

Exit codes: 0 success, 1 fetch/render/write failure, 2 invalid configuration or arguments;
exec exits with the child's code.";

/// The sidecar that delivers Vault and AWS Secrets Manager values without a Kubernetes Secret.
#[derive(Parser)]
#[command(name = "seal-agent", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr (levels from SEAL_AGENT_LOG, e.g. `debug`; default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SEAL_AGENT_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file (YAML).
    #[arg(short, long, env = "SEAL_AGENT_CONFIG", value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch every secret once, write the files atomically, exit 0 (an init container).
    ///
    /// Any failure (a secret missing, a provider unreachable, a template error, a directory
    /// missing) exits 1 before the first file is written.
    #[command(after_help = "\
Example:
  seal-agent init -c /etc/seal-agent/config.yaml

  # config.yaml
  secrets:
    db_password: ref+vault://secret/ml/db#/password
  files:
    - {path: /secrets/db-password, secret: db_password}   # mode 0400 by default")]
    Init(ConfigArg),

    /// The sidecar: refresh on an interval with jitter, rewrite changed files atomically,
    /// signal the app or run a command on change, and serve the endpoint when configured.
    ///
    /// SIGTERM or SIGINT stops it (exit 0). A failed refresh keeps the current files.
    #[command(after_help = "\
Example:
  seal-agent run -c /etc/seal-agent/config.yaml

  # config.yaml
  secrets:
    token: ref+awssecrets://ml/registry#/token
  files:
    - {path: /secrets/registry-token, secret: token}
  refresh: {interval: 5m, jitter: 0.1}
  onChange: {signal: SIGHUP, processName: ml-api}   # or pidFile: /run/app.pid, or command: [...]
  server: {listen: \"127.0.0.1:2773\"}                 # token from SEAL_AGENT_TOKEN or AWS_TOKEN

  curl -H \"X-Aws-Parameters-Secrets-Token: $TOKEN\" \\
    'http://127.0.0.1:2773/secretsmanager/get?secretId=ml/registry'")]
    Run(ConfigArg),

    /// Run CMD with the configured variables in its environment; restart it (or signal it)
    /// when they change, forward signals, and exit with its code.
    #[command(after_help = "\
Example:
  seal-agent exec -c /etc/seal-agent/config.yaml -- ml-api --port 8080

  # config.yaml
  secrets:
    db_password: ref+vault://secret/ml/db#/password
  env:
    DB_PASSWORD: {secret: db_password}
  exec: {onChange: restart, stopTimeout: 10s}   # or onChange: signal, signal: SIGHUP")]
    Exec {
        #[command(flatten)]
        config: ConfigArg,

        /// The command and its arguments, after `--`.
        #[arg(value_name = "CMD", required = true, last = true)]
        command: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // One thread runs everything: the endpoint, the refresh loop, the child's supervision. A
    // sidecar gets a fraction of a core, so worker threads would only contend for it; and on
    // one thread a request needs no cross-thread wake-up. `cargo xtask bench agent` measured 17
    // us of CPU per cached request this way against 18.5 us with two workers, and a lower p99.
    // File writes at a refresh are synchronous on this thread; on the memory volume the agent
    // writes to they take microseconds.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Init(args) => modes::init(&args.config).await,
            Command::Run(args) => modes::run(&args.config).await,
            Command::Exec { config, command } => modes::exec(&config.config, command).await,
        }
    });
    // Do not wait for the endpoint's connections or a provider's background renewal.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEAL_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(seal_providers::DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
