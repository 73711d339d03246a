//! One controller process, a replica: what it does ([`Role`]), how it starts, serves, takes part
//! in the election ([`election`]), leads, and stops ([`signals`]).
//!
//! - Every replica serves HTTP ([`serving`]): an unsealer the certificate API
//!   ([`crate::certificate_api`]), a syncer its probes, both the metrics.
//! - An unsealer loads the keys before it serves and follows every change of the key Secrets
//!   ([`crate::keys::upkeep`]), so every replica serves the current certificate.
//! - With leader election (the default) only the holder of the role's Lease reconciles: the
//!   leader makes a key if none is due yet, keeps renewing and backing up keys, and runs the
//!   reconcilers of its role ([`crate::sealed_secrets`]; [`crate::external_secrets`] with
//!   [`crate::stores`]).
//! - A [`Role`] decides what a process may touch: the unsealer holds the keys, serves the
//!   certificate API and reconciles SealedSecrets; the syncer reconciles ExternalSecrets and
//!   SecretStores under its own Lease (`<name>-syncer`), never loads a key and never reads the key
//!   namespace; `all` does both in one process. Run apart, the process that calls addresses
//!   tenants choose has none of the rights that guard the keys.

pub mod election;
pub mod serving;
pub mod signals;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use kube::Client;
use kube::runtime::events::Reporter;
use seal_api::produced::ProducedPolicy;
use tokio::sync::watch;
use tracing::info;

pub use self::election::LeaderElection;
use crate::certificate_api::{self, ApiState};
use crate::keys::{CurrentKeys, KeySet, KeyStore, RenewalPolicy, upkeep};
use crate::metrics::Metrics;
use crate::protocols::events::Events;
use crate::stores::trust::StoreTrust;

/// What one controller process does. The unsealer holds the sealing keys; the syncer talks to
/// the providers that stores name. Run apart (the chart's default), each has only its own
/// ServiceAccount's rights, so a tenant's store that reaches a hostile address never reaches a
/// process that can read the keys, and a cluster that only unseals runs no syncer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Both jobs in one process, under one Lease (a single-process install, development).
    All,
    /// SealedSecrets, the sealing keys and the certificate API.
    Unsealer,
    /// ExternalSecrets and SecretStores; never reads the key namespace.
    Syncer,
}

impl Role {
    /// Whether this process holds the keys and unseals.
    pub fn unseals(self) -> bool {
        matches!(self, Role::All | Role::Unsealer)
    }

    /// Whether this process syncs ExternalSecrets.
    pub fn syncs(self) -> bool {
        matches!(self, Role::All | Role::Syncer)
    }

    /// The Lease the replicas of this role elect a leader on, from the configured base name: a
    /// syncer elects apart from the unsealers, so that each role has one leader.
    pub fn lease_name(self, base: &str) -> String {
        match self {
            Role::All | Role::Unsealer => base.to_owned(),
            Role::Syncer => format!("{base}-syncer"),
        }
    }
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What this process does.
    pub role: Role,
    /// The controller's own namespace, where the key Secrets and the leader Lease live.
    pub key_namespace: String,
    /// Namespaces whose SealedSecrets and ExternalSecrets are reconciled; empty means all.
    pub watch_namespaces: Vec<String>,
    /// When to make new keys.
    pub renewal: RenewalPolicy,
    /// Whether Bitnami's key Secrets (in `key_namespace`) decrypt too.
    pub import_bitnami_keys: bool,
    /// Whether the newest imported Bitnami key also seals (needs `import_bitnami_keys`).
    pub seal_with_bitnami_key: bool,
    /// Whether `bitnami.com/v1alpha1` SealedSecrets are reconciled too.
    pub bitnami_sealed_secrets: bool,
    /// How many objects of one kind are reconciled at once.
    pub concurrency: u16,
    /// Address of the certificate API.
    pub listen_addr: SocketAddr,
    /// Address of the metrics endpoint.
    pub metrics_addr: SocketAddr,
    /// Sustained `verify`/`rotate` requests per second per client.
    pub rate_limit: f64,
    /// `verify`/`rotate` requests a client may make at once.
    pub rate_limit_burst: u32,
    /// Leader election; `None` runs as the only replica.
    pub leader_election: Option<LeaderElection>,
    /// The offline recovery certificate every key is backed up to (`--backup-cert`).
    pub backup_certificate: Option<seal_core::Certificate>,
    /// What stores may do beyond the defaults ([`crate::stores::trust`]).
    pub store_trust: StoreTrust,
    /// What produced Secrets may carry (`--deny-secret-types`).
    pub produced_policy: ProducedPolicy,
}

/// Runs until the process is told to stop (SIGTERM or Ctrl-C), or until it loses the leader Lease
/// (an error, so that the process exits and is restarted into the election).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(signals::stop_on_signal(stop.clone()));

    info!(role = ?settings.role, "starting");
    let store = KeyStore::new(
        client.clone(),
        &settings.key_namespace,
        settings.import_bitnami_keys,
    )
    .sealing_with_bitnami_key(settings.seal_with_bitnami_key);
    // A syncer never reads the key namespace: it starts, and stays, with no keys.
    let keys = if settings.role.unseals() {
        let keys = store.load().await?;
        upkeep::report(&keys);
        keys
    } else {
        KeySet::empty()
    };
    let keys = CurrentKeys::new(keys);
    let metrics = Arc::new(Metrics::new());
    let api = ApiState::new(
        keys.clone(),
        Arc::clone(&metrics),
        settings.rate_limit,
        settings.rate_limit_burst,
    );
    let (what, router) = if settings.role.unseals() {
        (
            "certificate API",
            certificate_api::api_router(Arc::clone(&api)),
        )
    } else {
        ("probes", serving::probes_router())
    };
    serving::bind_and_serve(what, settings.listen_addr, router, stopped.clone()).await?;
    serving::bind_and_serve(
        "metrics",
        settings.metrics_addr,
        certificate_api::metrics_router(api),
        stopped.clone(),
    )
    .await?;
    if settings.role.unseals() {
        tokio::spawn(upkeep::follow_key_secrets(
            client.clone(),
            store.clone(),
            settings.key_namespace.clone(),
            settings.import_bitnami_keys,
            keys.clone(),
        ));
    }
    let leader = Leader {
        client: client.clone(),
        settings: &settings,
        store,
        keys,
        metrics: Arc::clone(&metrics),
        stopped,
    };
    let Some(election) = settings.leader_election.clone() else {
        metrics.set_leader(true);
        return leader.lead().await;
    };
    let lease_name = settings.role.lease_name(&election.lease_name);
    let led = election::lead_while_elected(
        client,
        &settings.key_namespace,
        &lease_name,
        &election,
        &stop,
        || metrics.set_leader(true),
        || leader.lead(),
    )
    .await;
    metrics.set_leader(false);
    if !led? {
        info!("stopped");
    }
    Ok(())
}

/// What the leader works with.
struct Leader<'a> {
    client: Client,
    settings: &'a Settings,
    store: KeyStore,
    keys: CurrentKeys,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
}

impl Leader<'_> {
    /// The leader's work: make a key if one is due, keep renewing and backing up, and run this
    /// role's reconcilers until `stopped`.
    async fn lead(self) -> anyhow::Result<()> {
        let settings = self.settings;
        let mut background = Vec::new();
        if settings.role.unseals() {
            let (keys, created) = self
                .store
                .ensure(&settings.renewal, SystemTime::now())
                .await?;
            if let Some(created) = created {
                info!(secret = %created.secret_name, fingerprint = %created.fingerprint, "created a sealing key");
                upkeep::report(&keys);
            }
            self.keys.publish(keys);
            background.push(tokio::spawn(upkeep::renew(
                self.store.clone(),
                settings.renewal,
                self.keys.follow(),
            )));
            if let Some(recovery) = settings.backup_certificate.clone() {
                background.push(tokio::spawn(upkeep::back_up(
                    self.client.clone(),
                    settings.key_namespace.clone(),
                    recovery,
                    self.keys.follow(),
                )));
            }
        }
        let reporter = Reporter {
            controller: "seal-controller".into(),
            instance: std::env::var("POD_NAME")
                .ok()
                .filter(|name| !name.is_empty()),
        };
        let events = Events::new(self.client.clone(), reporter);
        let unsealing = async {
            if settings.role.unseals() {
                let config = crate::sealed_secrets::Config {
                    namespaces: settings.watch_namespaces.clone(),
                    concurrency: settings.concurrency,
                    produced_policy: settings.produced_policy.clone(),
                    bitnami: settings.bitnami_sealed_secrets,
                };
                crate::sealed_secrets::run(
                    self.client.clone(),
                    &config,
                    self.keys.clone(),
                    Arc::clone(&self.metrics),
                    events.clone(),
                    self.stopped.clone(),
                )
                .await;
            }
        };
        let syncing = async {
            if settings.role.syncs() {
                let config = crate::external_secrets::Config {
                    namespaces: settings.watch_namespaces.clone(),
                    concurrency: settings.concurrency,
                    produced_policy: settings.produced_policy.clone(),
                    store_trust: settings.store_trust.clone(),
                };
                crate::external_secrets::run(
                    self.client.clone(),
                    &config,
                    Arc::clone(&self.metrics),
                    events.clone(),
                    self.stopped.clone(),
                )
                .await;
            }
        };
        futures::future::join(unsealing, syncing).await;
        for task in background {
            task.abort();
        }
        info!("stopped reconciling");
        Ok(())
    }
}
