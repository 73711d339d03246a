//! Running a program as a pod would run it, without a pod: a peer controller that only knows
//! in-cluster configuration (Bitnami's) reads its ServiceAccount's token, the API server's CA and
//! its namespace from `/var/run/secrets/kubernetes.io/serviceaccount`, and the API server's
//! address from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
//!
//! The files are written into a directory of the test's own, and the program runs in a mount
//! namespace of its own (`unshare --mount`, private propagation), where a tmpfs over `/var/run`
//! and a bind mount put that directory at the in-cluster path. Nothing on the host changes: the
//! mounts exist for that process only and go with it, and the directory goes when the
//! [`InCluster`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::{TestEnv, TestNamespace, unique_name};

/// Where client-go and kube-rs look for a pod's ServiceAccount.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Mounts the credentials at [`SERVICE_ACCOUNT_DIR`] in the new mount namespace, then becomes the
/// program: `sh -c SCRIPT sh DIR PROGRAM ARGS...`.
const SCRIPT: &str = r#"set -e
mount -t tmpfs -o mode=0755 seal-testenv /var/run
mkdir -p /var/run/secrets/kubernetes.io/serviceaccount
mount --bind "$1" /var/run/secrets/kubernetes.io/serviceaccount
shift
exec "$@""#;

/// The in-cluster identity of a ServiceAccount, ready to run programs as.
#[derive(Debug)]
pub struct InCluster {
    dir: PathBuf,
    host: String,
    port: String,
}

impl TestEnv {
    /// Creates ServiceAccount `account` in `namespace`, binds it to ClusterRole `cluster_role`,
    /// and writes its token (valid for two hours), the API server's CA and the namespace into a
    /// directory of its own.
    ///
    /// # Errors
    /// The API server refused an object or the token, or the directory cannot be written.
    pub async fn in_cluster(
        &self,
        namespace: &TestNamespace,
        account: &str,
        cluster_role: &str,
    ) -> Result<InCluster> {
        let client = self.kube_client().await?;
        let accounts = namespace.api::<ServiceAccount>();
        let service_account: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": account}}))?;
        accounts
            .create(&PostParams::default(), &service_account)
            .await
            .with_context(|| format!("cannot create ServiceAccount {account}"))?;
        let binding_name = format!("{account}-{}", namespace.name());
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": binding_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace.name()}],
        }))?;
        Api::<ClusterRoleBinding>::all(client)
            .patch(
                &binding_name,
                &PatchParams::apply("seal-testenv").force(),
                &Patch::Apply(&binding),
            )
            .await
            .with_context(|| format!("cannot bind {account} to {cluster_role}"))?;
        let request: TokenRequest =
            serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 7200}}))?;
        let answered: TokenRequest = accounts
            .create_subresource("token", account, &PostParams::default(), &request)
            .await
            .with_context(|| format!("cannot request a token of {account}"))?;
        let token = answered
            .status
            .and_then(|status| status.token)
            .context("the TokenRequest has no token")?;
        let server = self.kube_config().await?.cluster_url;
        let in_cluster = InCluster {
            dir: std::env::temp_dir().join(unique_name("seal-in-cluster")),
            host: server
                .host()
                .context("the API server has no host")?
                .to_owned(),
            port: server
                .port_u16()
                .context("the API server has no port")?
                .to_string(),
        };
        // From here on, dropping `in_cluster` removes whatever was written.
        std::fs::create_dir_all(&in_cluster.dir)?;
        std::fs::write(in_cluster.dir.join("token"), token)?;
        std::fs::copy(
            Path::new(self.var("SEAL_TESTENV_DIR")).join("ca.crt"),
            in_cluster.dir.join("ca.crt"),
        )
        .context("cannot copy the API server's CA")?;
        std::fs::write(in_cluster.dir.join("namespace"), namespace.name())?;
        Ok(in_cluster)
    }
}

impl InCluster {
    /// `program`, to run in a mount namespace of its own with these credentials at
    /// [`SERVICE_ACCOUNT_DIR`] and the API server's address in its environment. Arguments added
    /// to the command go to `program`; the process is `program` itself (no shell or `unshare`
    /// stays between), so signals reach it.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(SCRIPT)
            .arg("sh")
            .arg(&self.dir)
            .arg(program)
            .env("KUBERNETES_SERVICE_HOST", &self.host)
            .env("KUBERNETES_SERVICE_PORT", &self.port);
        command
    }
}

impl Drop for InCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
