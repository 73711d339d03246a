//! `seal-controller`: a thin `main` over the library; see [`seal_controller::replica`].

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use seal_api::produced::ProducedPolicy;
use seal_controller::keys::RenewalPolicy;
use seal_controller::replica::{LeaderElection, Role, Settings, run};
use seal_controller::stores::trust::StoreTrust;
use seal_core::KeySize;

/// Unseals SealedSecrets (seal.dev/v1alpha1) into Secrets and manages the sealing keys; syncs
/// ExternalSecrets from Vault and AWS Secrets Manager.
///
/// Runs in the cluster with its ServiceAccount, or anywhere with a kubeconfig (KUBECONFIG or
/// ~/.kube/config).
///
/// Examples:
///   seal-controller --key-namespace seal-system
///   seal-controller --namespaces ml-api,ml-batch --key-renew-period 720h
///   seal-controller --import-bitnami-keys --key-cutoff-time 2026-12-01T00:00:00Z
///   seal-controller --import-bitnami-keys --bitnami-sealed-secrets   # in place of Bitnami's
///   seal-controller --leader-elect=false --listen-addr 127.0.0.1:8080
///   seal-controller --allow-controller-identity   # ClusterSecretStores may use IRSA / own token
///   seal-controller --role unsealer               # keys and SealedSecrets only, no ExternalSecrets
///   seal-controller --role syncer                 # ExternalSecrets only, under its own account
///
/// HTTP (every unsealer replica): GET /v1/cert.pem, GET /v1/certs, POST /v1/verify, POST /v1/rotate,
/// GET /healthz, GET /readyz; GET /metrics on --listen-metrics-addr.
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Namespace of the key Secrets (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "seal-system")]
    key_namespace: String,
    /// Only unseal SealedSecrets in these namespaces (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Make a new key when the newest is this old (s, m, h or d units; 0 disables renewal).
    #[arg(long, default_value = "720h", value_parser = seal_core::parse_duration)]
    key_renew_period: Duration,
    /// Make a new key at start if the newest was made before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    key_cutoff_time: Option<SystemTime>,
    /// Size in bits of new keys: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 4096, value_parser = parse_key_size)]
    key_size: u32,
    /// Also decrypt with Bitnami's keys (sealedsecrets.bitnami.com/sealed-secrets-key) in the key
    /// namespace.
    #[arg(long)]
    import_bitnami_keys: bool,
    /// Also unseal Bitnami's SealedSecrets (bitnami.com/v1alpha1) in place of Bitnami's controller:
    /// Bitnami's Secret shape and Synced status, so the two never rewrite each other. Needs
    /// Bitnami's CRD; without it the controller says so and unseals the rest.
    #[arg(long)]
    bitnami_sealed_secrets: bool,
    /// Seal with the newest imported Bitnami key too: /v1/cert.pem serves its certificate, so
    /// `kubeseal --fetch-cert` users keep one certificate during the move. seal's own keys are
    /// still made and renewed on schedule (they decrypt); the certificate becomes seal's newest
    /// when this flag is removed. Needs --import-bitnami-keys.
    #[arg(long, requires = "import_bitnami_keys")]
    seal_with_bitnami_key: bool,
    /// How many SealedSecrets are unsealed at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Address of the certificate API (`:8080` means every interface).
    #[arg(long, default_value = ":8080", value_parser = parse_addr)]
    listen_addr: SocketAddr,
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, default_value = ":8081", value_parser = parse_addr)]
    listen_metrics_addr: SocketAddr,
    /// Sustained /v1/verify and /v1/rotate requests per second per client.
    #[arg(long, default_value_t = 2.0)]
    rate_limit: f64,
    /// /v1/verify and /v1/rotate requests a client may make at once.
    #[arg(long, default_value_t = 2)]
    rate_limit_burst: u32,
    /// Elect a leader on a Lease in the key namespace; only the leader unseals and makes keys.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    leader_elect: bool,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "seal-controller")]
    leader_elect_lease_name: String,
    /// How long the leader's Lease lasts unrenewed: the longest a dead leader goes unreplaced.
    #[arg(long, default_value = "15s", value_parser = seal_core::parse_duration)]
    leader_elect_lease_duration: Duration,
    /// Back up every key, sealed to this offline recovery certificate (PEM), into the ConfigMap
    /// seal-key-backup in the key namespace; `seal keys restore` reads it.
    #[arg(long, value_name = "FILE")]
    backup_cert: Option<std::path::PathBuf>,
    /// Let ClusterSecretStores authenticate as the controller itself: its ServiceAccount token
    /// (Vault Kubernetes auth without serviceAccountRef or secretRef) or its AWS credential chain
    /// (aws without auth). A namespaced SecretStore never may.
    #[arg(long)]
    allow_controller_identity: bool,
    /// Let stores use plain http provider endpoints off loopback (vault.server, aws.endpointURL).
    #[arg(long)]
    allow_http_endpoints: bool,
    /// Secret types no SealedSecret or ExternalSecret may produce (comma-separated; an empty
    /// value denies none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kubernetes.io/service-account-token,bootstrap.kubernetes.io/token"
    )]
    deny_secret_types: Vec<String>,
    /// What this process does: `unsealer` (SealedSecrets, keys, certificate API), `syncer`
    /// (ExternalSecrets and SecretStores; never reads the key namespace) or `all` (both, one
    /// process). Run the two roles apart, each with its own ServiceAccount, wherever tenants
    /// write stores.
    #[arg(long, default_value = "all", value_parser = ["all", "unsealer", "syncer"])]
    role: String,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Decryption runs on the blocking pool and is all CPU: threads beyond the cores only add
    // stacks and allocator arenas (tokio's default allows 512).
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores)
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(seal_providers::DEFAULT_LOG_FILTER));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API server")?;
    let backup_certificate = match &args.backup_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --backup-cert {}", path.display()))?;
            Some(
                seal_core::Certificate::from_pem(&pem)
                    .with_context(|| format!("--backup-cert {}", path.display()))?,
            )
        }
        None => None,
    };
    let size = KeySize::from_bits(args.key_size).expect("invariant: validated by the parser");
    let role = match args.role.as_str() {
        "unsealer" => Role::Unsealer,
        "syncer" => Role::Syncer,
        _ => Role::All,
    };
    let settings = Settings {
        role,
        key_namespace: args.key_namespace.clone(),
        watch_namespaces: args.namespaces,
        renewal: RenewalPolicy {
            period: (!args.key_renew_period.is_zero()).then_some(args.key_renew_period),
            cutoff: args.key_cutoff_time,
            size,
            ..RenewalPolicy::default()
        },
        import_bitnami_keys: args.import_bitnami_keys,
        bitnami_sealed_secrets: args.bitnami_sealed_secrets,
        seal_with_bitnami_key: args.seal_with_bitnami_key,
        concurrency: args.concurrency,
        listen_addr: args.listen_addr,
        metrics_addr: args.listen_metrics_addr,
        rate_limit: args.rate_limit,
        rate_limit_burst: args.rate_limit_burst,
        backup_certificate,
        store_trust: StoreTrust {
            controller_identity: args.allow_controller_identity,
            http_endpoints: args.allow_http_endpoints,
            api_audiences: Vec::new(),
            key_namespace: args.key_namespace,
        },
        produced_policy: ProducedPolicy {
            denied_types: args
                .deny_secret_types
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
        },
        leader_election: args.leader_elect.then(|| LeaderElection {
            lease_name: args.leader_elect_lease_name,
            identity: identity(),
            lease_duration: args.leader_elect_lease_duration,
        }),
    };
    run(client, settings).await
}

/// This replica's name in the Lease: the pod's name, else `HOSTNAME-PID`.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or_else(|_| "seal-controller".into(), |h| h.trim().to_owned());
            format!("{host}-{}", std::process::id())
        })
}

/// `:8080` (every interface), `127.0.0.1:8080` or `[::1]:8080`.
fn parse_addr(text: &str) -> Result<SocketAddr> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .with_context(|| format!("{text:?} is not an address such as :8080 or 127.0.0.1:8080"))
}

fn parse_time(text: &str) -> Result<SystemTime> {
    let timestamp: k8s_openapi::jiff::Timestamp = text
        .parse()
        .context("expected an RFC 3339 time such as 2026-12-01T00:00:00Z")?;
    Ok(SystemTime::from(timestamp))
}

fn parse_key_size(text: &str) -> Result<u32> {
    let bits: u32 = text.parse().context("expected 2048, 3072 or 4096")?;
    KeySize::from_bits(bits).context("expected 2048, 3072 or 4096")?;
    Ok(bits)
}
