//! Test support for the real servers of the test environment: a kube-apiserver with its
//! controller-manager, an OpenBao dev server and a moto AWS server, all on loopback, started by
//! `cargo xtask test` (for one run) or `cargo xtask testenv up` (until `down`).
//!
//! Integration tests call [`TestEnv::get`] and get clients already pointed at those servers, plus
//! a fresh namespace per test ([`TestEnv::namespace`]) with a unique name, so tests run in parallel
//! without stepping on each other. Nothing is mocked.
//!
//! Where the environment comes from, in order:
//! 1. the process environment, when `SEAL_TESTENV_DIR` is set (`cargo xtask test` sets it, and so
//!    does `eval "$(cargo xtask testenv env)"`);
//! 2. the environment recorded by `cargo xtask testenv up` in `target/testenv/current` (or in
//!    `$SEAL_TESTENV_HOME/current`), so a plain `cargo test` works while one is up.
//!
//! When neither exists the test fails under `CI=true` or `SEAL_REQUIRE_TESTENV=1`; on a developer's
//! machine it prints `SKIPPED` with the command that starts the environment, and returns.

mod in_cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub use in_cluster::{InCluster, SERVICE_ACCOUNT_DIR};

/// The running environment, or `return Ok(())` from the calling test after [`TestEnv::get`] printed
/// `SKIPPED` (it panics instead under `CI=true`). For tests returning `Result<(), _>`:
///
/// ```no_run
/// # async fn a_test() -> anyhow::Result<()> {
/// let env = seal_testenv::testenv!();
/// let ns = env.namespace("my-test").await?;
/// # let _ = ns;
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! testenv {
    () => {
        match $crate::TestEnv::get() {
            Some(env) => env,
            None => return Ok(()),
        }
    };
}

/// A peer program (kubeseal, vals, ...) named by an environment variable, which `cargo xtask
/// test` sets. Missing is a failure under `CI=true` or `SEAL_REQUIRE_PEERS=1` (which `cargo
/// xtask test` sets), and a loud skip otherwise.
///
/// # Panics
///
/// When the peer is missing and required.
pub fn peer(variable: &str, what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable).map(PathBuf::from)
        && path.exists()
    {
        return Some(path);
    }
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("SEAL_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let message = format!(
        "{what} not available: set {variable}, or run the tests with `cargo xtask test`, which installs it"
    );
    assert!(!required, "{message}");
    eprintln!("SKIPPED: {message}");
    None
}

/// Label put on every namespace made for a test, so they can be found and told apart.
pub const TEST_NAMESPACE_LABEL: &str = "seal.dev/test";

/// The running test environment: the variables `cargo xtask testenv env` prints.
pub struct TestEnv {
    vars: BTreeMap<String, String>,
}

static LOADED: OnceLock<Result<TestEnv, String>> = OnceLock::new();

impl TestEnv {
    /// The running environment; `None` after a loud `SKIPPED` line when there is none and it is
    /// not required.
    ///
    /// # Panics
    /// When there is none and `CI=true` or `SEAL_REQUIRE_TESTENV=1`: a missing server in CI is a
    /// failure, never a skipped test.
    pub fn get() -> Option<&'static TestEnv> {
        match LOADED.get_or_init(load) {
            Ok(env) => Some(env),
            Err(why) if required() => panic!(
                "the test environment is required here (CI=true or SEAL_REQUIRE_TESTENV=1), but {why}; run the tests with `cargo xtask test`"
            ),
            Err(why) => {
                eprintln!(
                    "SKIPPED: {why}. Start one with `cargo xtask testenv up`, or run every test with `cargo xtask test`."
                );
                None
            }
        }
    }

    /// One variable of the environment, e.g. `VAULT_ADDR` or `SEAL_TESTENV_JWT_ROLE`.
    ///
    /// # Panics
    /// When the environment does not define it (an xtask older than the test).
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map_or_else(
            || panic!("the test environment does not define {name}; restart it with a current `cargo xtask testenv up`"),
            String::as_str,
        )
    }

    /// Every variable, for handing to a child process (`Command::envs`).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// A client with cluster-admin rights.
    pub async fn kube_client(&self) -> Result<Client> {
        Client::try_from(self.kube_config().await?).context("cannot build the Kubernetes client")
    }

    /// A client that acts as `user` through impersonation (the admin impersonates), e.g.
    /// `system:serviceaccount:NS:NAME`, to test what that identity may do.
    pub async fn kube_client_as(&self, user: &str) -> Result<Client> {
        let mut config = self.kube_config().await?;
        config.auth_info.impersonate = Some(user.to_owned());
        Client::try_from(config).context("cannot build the impersonating Kubernetes client")
    }

    /// Writes a kubeconfig to `path` that acts as ServiceAccount `namespace/name` (the admin
    /// impersonates it, with the groups the API server gives ServiceAccounts), for running a
    /// process with exactly that identity's rights.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        let mut kubeconfig = Kubeconfig::read_from(self.kubeconfig())
            .with_context(|| format!("cannot read {}", self.kubeconfig().display()))?;
        for user in &mut kubeconfig.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
                auth.impersonate_groups = Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ]);
            }
        }
        let text = serde_yaml::to_string(&kubeconfig).context("cannot write a kubeconfig")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    async fn kube_config(&self) -> Result<Config> {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig())
            .with_context(|| format!("cannot read {}", self.kubeconfig().display()))?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("invalid test kubeconfig")
    }

    /// Creates a namespace with a unique name starting with `prefix`, labelled
    /// [`TEST_NAMESPACE_LABEL`]. The environment is thrown away after the run, so tests need not
    /// delete it.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.kube_client().await?;
        let name = unique_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("cannot create namespace {name}"))?;
        Ok(TestNamespace { name, client })
    }

    /// Installs (server-side applies) a CRD and waits until it is Established. Idempotent, so
    /// tests running in parallel may all install the CRDs they need.
    pub async fn apply_crd(&self, crd: &CustomResourceDefinition) -> Result<()> {
        let crds = Api::<CustomResourceDefinition>::all(self.kube_client().await?);
        let name = crd.metadata.name.clone().context("the CRD has no name")?;
        crds.patch(
            &name,
            &PatchParams::apply("seal-testenv").force(),
            &Patch::Apply(crd),
        )
        .await
        .with_context(|| format!("cannot apply CRD {name}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let established = crds
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("CRD {name} is not Established after 30 s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// OpenBao's address (`VAULT_ADDR`).
    pub fn vault_addr(&self) -> &str {
        self.var("VAULT_ADDR")
    }

    /// A Vault client with `token`, or with the root token when `None`.
    pub fn vault_client(&self, token: Option<&str>) -> Result<VaultClient> {
        let settings = VaultClientSettingsBuilder::default()
            .address(self.vault_addr())
            .token(token.unwrap_or(self.var("VAULT_TOKEN")))
            .build()
            .context("invalid Vault client settings")?;
        VaultClient::new(settings).context("cannot build the Vault client")
    }

    /// AWS configuration for moto: its endpoint, the region and the static test credentials.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        let credentials = aws_sdk_secretsmanager::config::Credentials::new(
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "seal-testenv",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.var("AWS_REGION").to_owned()))
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// A Secrets Manager client talking to moto.
    pub async fn secretsmanager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.aws_config().await)
    }

    /// A compact ES256 JWT over `claims`, signed with the key OpenBao's JWT auth trusts
    /// (`SEAL_TESTENV_JWT_SIGNING_KEY`), as a CI system's OIDC token would be.
    pub fn sign_jwt(&self, claims: &serde_json::Value) -> Result<String> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let path = self.var("SEAL_TESTENV_JWT_SIGNING_KEY");
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        let der = pem::parse(text).context("the JWT signing key is not PEM")?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.contents())
            .map_err(|e| anyhow!("the JWT signing key is not a P-256 PKCS#8 key: {e}"))?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{header}.{body}");
        let signature = key
            .sign(
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
            )
            .map_err(|_| anyhow!("cannot sign the test JWT"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// A namespace made for one test.
#[derive(Clone)]
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl TestNamespace {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The namespaced API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Polls `check` every 200 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    limit: std::time::Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not after {} s", limit.as_secs());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// An Opaque Secret `namespace/name` whose `stringData` holds `items`: the usual test input.
pub fn secret_from_pairs(
    name: &str,
    namespace: &str,
    items: &[(&str, &str)],
) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `prefix-` followed by eight random lowercase hex digits: unique across parallel tests and runs
/// sharing one long-lived environment, and a valid DNS label for prefixes up to 54 characters.
///
/// # Panics
/// When the operating system's random number generator fails.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes).expect("invariant: the system RNG works");
    format!("{prefix}-{:08x}", u32::from_be_bytes(bytes))
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("SEAL_REQUIRE_TESTENV").is_ok_and(|v| v == "1")
}

fn load() -> Result<TestEnv, String> {
    // kube, the AWS SDK and vaultrs all use rustls; one process-wide provider keeps them agreeing.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::var_os("SEAL_TESTENV_DIR").is_some() {
        return Ok(TestEnv {
            vars: std::env::vars().collect(),
        });
    }
    let pointer = std::env::var_os("SEAL_TESTENV_HOME").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testenv"),
        PathBuf::from,
    );
    let pointer = pointer.join("current");
    let dir = std::fs::read_to_string(&pointer)
        .map_err(|_| "no test environment is running".to_owned())?;
    let file = Path::new(dir.trim()).join("env");
    let text = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "the test environment recorded in {} is gone or not fully up",
            pointer.display()
        )
    })?;
    let vars = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(TestEnv { vars })
}
