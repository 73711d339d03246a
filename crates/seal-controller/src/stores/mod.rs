//! SecretStore and ClusterSecretStore: keeping each store's `Ready` condition honest, and the
//! providers the ExternalSecret reconciler reads through.
//!
//! | job | home |
//! |---|---|
//! | what a store may spend: identities, endpoints, tokens, namespaces | [`trust`] |
//! | building and caching one provider per store (one login, renewed) | [`providers`] |
//! | the store reconciler: validate, probe, `Ready` | this module |
//!
//! The store reconciler validates the configuration ([`SecretStore::validate`]), reads the
//! credential Secrets, builds the provider and makes one cheap call with it (AWS: a ListSecrets
//! for a name prefix no secret has; Vault: a read of a key no secret has, which logs in first).
//! The outcome is the `Ready` condition (`Valid`, `InvalidProviderConfig`, `ValidationFailed`),
//! written only when it changes. A store that is not Ready does not stop ExternalSecrets from
//! trying it: each reports its own failure, and recovers by itself when the store does.

pub mod providers;
pub mod trust;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use seal_api::secret_store::{SecretStoreProvider, SecretStoreStatus, StoreCapabilities, reason};
use seal_api::{ClusterSecretStore, SecretStore};
use seal_providers::{FindQuery, Provider, SecretProvider};
use tokio::sync::watch;
use tracing::warn;

use self::providers::{Providers, StoreId, kind};
use crate::protocols::contained::{Panicked, contain};
use crate::protocols::ready_condition::{self, Observed};

/// The key the store probe reads; no real secret is expected to have it.
const PROBE_KEY: &str = "seal-store-probe-does-not-exist";

/// One cheap call that proves the provider answers and accepts the credentials. A missing key is
/// the expected answer.
async fn probe(provider: &Provider) -> Result<(), seal_providers::Error> {
    let result = match provider {
        Provider::Aws(_) => provider
            .find(&FindQuery {
                path: Some(PROBE_KEY.into()),
                limit: 1,
                ..FindQuery::default()
            })
            .await
            .map(drop),
        Provider::Vault(_) => provider.get(PROBE_KEY, None).await.map(drop),
    };
    match result {
        Err(seal_providers::Error::NotFound { .. } | seal_providers::Error::TooMany { .. })
        | Ok(()) => Ok(()),
        Err(error) => Err(error),
    }
}

/// What the store reconciler shares.
struct StoreContext {
    client: Client,
    providers: Arc<Providers>,
}

/// Runs the SecretStore (in `watched` namespaces, or all when empty) and ClusterSecretStore reconcilers
/// until `stopped`.
pub async fn run(
    client: Client,
    watched: &[String],
    providers: Arc<Providers>,
    stopped: watch::Receiver<bool>,
) {
    let context = Arc::new(StoreContext {
        client: client.clone(),
        providers,
    });
    let scopes: Vec<Api<SecretStore>> = if watched.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        watched
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let namespaced = scopes.into_iter().map(|api| {
        let mut stopped = stopped.clone();
        Controller::new(api, watcher::Config::default())
            .graceful_shutdown_on(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .run(
                |store, ctx| contain(reconcile_store(store, ctx)),
                retry_later,
                Arc::clone(&context),
            )
            .for_each(|_| async {})
    });
    let mut stopped_cluster = stopped.clone();
    let cluster = Controller::new(
        Api::<ClusterSecretStore>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(async move {
        let _ = stopped_cluster.wait_for(|stop| *stop).await;
    })
    .run(
        |store, ctx| contain(reconcile_cluster_store(store, ctx)),
        retry_later,
        Arc::clone(&context),
    )
    .for_each(|_| async {});
    futures::future::join(futures::future::join_all(namespaced), cluster).await;
}

/// Why a store reconcile must be retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The status could not be written.
    #[error("cannot write the store status: {0}")]
    Write(#[source] kube::Error),
    /// The reconcile panicked ([`crate::protocols::contained`]).
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

fn retry_later<K>(_: Arc<K>, error: &StatusError, _: Arc<StoreContext>) -> Action {
    match error {
        // The same input panics again: do not spin on it.
        StatusError::Panicked(_) => Action::requeue(Duration::from_secs(300)),
        StatusError::Write(_) => Action::requeue(Duration::from_secs(10)),
    }
}

async fn reconcile_store(
    store: Arc<SecretStore>,
    ctx: Arc<StoreContext>,
) -> Result<Action, StatusError> {
    let namespace = store.namespace().unwrap_or_default();
    let id = StoreId {
        cluster: false,
        namespace: namespace.clone(),
        name: store.name_any(),
        credentials_namespace: String::new(),
    };
    let outcome = match store.validate() {
        Err(error) => (
            reason::INVALID_PROVIDER_CONFIG,
            format!("invalid configuration: {error}"),
        ),
        Ok(()) => check(&ctx, &id, store.metadata.generation, &store.spec.provider).await,
    };
    let api: Api<SecretStore> = Api::namespaced(ctx.client.clone(), &namespace);
    write_store_status(
        &api,
        &store.name_any(),
        store.metadata.generation,
        store.status.as_ref(),
        outcome,
    )
    .await
}

async fn reconcile_cluster_store(
    store: Arc<ClusterSecretStore>,
    ctx: Arc<StoreContext>,
) -> Result<Action, StatusError> {
    let id = StoreId {
        cluster: true,
        namespace: String::new(),
        name: store.name_any(),
        credentials_namespace: String::new(),
    };
    let needs_namespace = store
        .spec
        .provider
        .reference_namespaces("spec.provider")
        .len()
        < credential_count(&store.spec.provider);
    let outcome = match store.validate() {
        Err(error) => (
            reason::INVALID_PROVIDER_CONFIG,
            format!("invalid configuration: {error}"),
        ),
        // Credentials read in each ExternalSecret's namespace cannot be checked here.
        Ok(()) if needs_namespace => (
            reason::VALID,
            "configuration is valid; credentials are read in each ExternalSecret's namespace"
                .to_owned(),
        ),
        Ok(()) => check(&ctx, &id, store.metadata.generation, &store.spec.provider).await,
    };
    let api: Api<ClusterSecretStore> = Api::all(ctx.client.clone());
    write_store_status(
        &api,
        &store.name_any(),
        store.metadata.generation,
        store.status.as_ref(),
        outcome,
    )
    .await
}

/// How many credential references (Secrets and ServiceAccounts) the provider has.
fn credential_count(provider: &SecretStoreProvider) -> usize {
    let mut probe = provider.clone();
    // Count references by giving each a namespace and asking which name one.
    let set = |ns: &mut Option<String>| *ns = Some(String::new());
    if let Some(auth) = probe.aws.as_mut().and_then(|a| a.auth.as_mut()) {
        if let Some(refs) = auth.secret_ref.as_mut() {
            set(&mut refs.access_key_id_secret_ref.namespace);
            set(&mut refs.secret_access_key_secret_ref.namespace);
            if let Some(token) = refs.session_token_secret_ref.as_mut() {
                set(&mut token.namespace);
            }
        }
        if let Some(jwt) = auth.jwt.as_mut() {
            set(&mut jwt.service_account_ref.namespace);
        }
    }
    if let Some(auth) = probe.vault.as_mut().map(|v| &mut v.auth) {
        if let Some(token) = auth.token_secret_ref.as_mut() {
            set(&mut token.namespace);
        }
        if let Some(app_role) = auth.app_role.as_mut() {
            set(&mut app_role.secret_ref.namespace);
        }
        if let Some(kubernetes) = auth.kubernetes.as_mut() {
            if let Some(account) = kubernetes.service_account_ref.as_mut() {
                set(&mut account.namespace);
            }
            if let Some(secret) = kubernetes.secret_ref.as_mut() {
                set(&mut secret.namespace);
            }
        }
        if let Some(jwt) = auth.jwt.as_mut() {
            if let Some(secret) = jwt.secret_ref.as_mut() {
                set(&mut secret.namespace);
            }
            if let Some(token) = jwt.kubernetes_service_account_token.as_mut() {
                set(&mut token.service_account_ref.namespace);
            }
        }
    }
    probe.reference_namespaces("spec.provider").len()
}

/// Builds (or reuses) the store's provider and probes it: the condition's reason and message.
async fn check(
    ctx: &StoreContext,
    id: &StoreId,
    generation: Option<i64>,
    provider: &SecretStoreProvider,
) -> (&'static str, String) {
    match ctx.providers.get(id, generation, provider).await {
        Err(error) => (error.reason(), error.to_string()),
        Ok(built) => match probe(&built).await {
            Ok(()) => (
                reason::VALID,
                "the provider accepted the credentials".into(),
            ),
            Err(error) => {
                warn!(kind = kind(id), namespace = %id.namespace, name = %id.name, %error, "store validation failed");
                (
                    reason::VALIDATION_FAILED,
                    format!("the provider refused or did not answer: {error}"),
                )
            }
        },
    }
}

/// Writes the store's `Ready` condition and `observedGeneration` when they differ from `status`.
async fn write_store_status<K>(
    api: &Api<K>,
    name: &str,
    generation: Option<i64>,
    status: Option<&SecretStoreStatus>,
    (reason_now, message): (&'static str, String),
) -> Result<Action, StatusError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let observed = Observed {
        ready: reason_now == reason::VALID,
        reason: reason_now,
        message: &message,
        generation,
    };
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    if !ready_condition::says(
        conditions,
        status.and_then(|s| s.observed_generation),
        &observed,
    ) {
        let status = SecretStoreStatus {
            observed_generation: generation,
            conditions: vec![ready_condition::condition(
                conditions,
                &observed,
                Timestamp::now(),
            )],
            capabilities: Some(StoreCapabilities::ReadOnly),
        };
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .map_err(StatusError::Write)?;
    }
    Ok(if reason_now == reason::VALID {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(60))
    })
}
