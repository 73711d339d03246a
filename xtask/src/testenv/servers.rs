//! Starting and stopping the test environment: etcd, kube-apiserver and kube-controller-manager,
//! an OpenBao dev server and a moto server on loopback with free ports, and by default a node that
//! runs real pods ([`super::node`]; the API server then listens on the node's address), each in its
//! own process group, with logs and state in one temporary directory. The directory of the running environment
//! is recorded in `target/testenv/current` (or `$SEAL_TESTENV_HOME/current`), so `down`, `status`
//! and `env` find it from any shell.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::binaries::Binaries;
use super::host;
use super::node::{self, NodePaths};
use super::pki::Pki;
use crate::peers::workspace_root;

/// The controllers a cluster with pods needs, besides those every environment runs: Deployments
/// and ReplicaSets, Jobs and CronJobs, EndpointSlices for Services, the node's lifecycle (which
/// lifts the `not-ready` taint), `kube-root-ca.crt` in every namespace, and pod garbage collection.
const NODE_CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,\
    serviceaccount-controller,serviceaccount-token-controller,deployment-controller,\
    replicaset-controller,job-controller,cronjob-controller,ttl-after-finished-controller,\
    endpointslice-controller,endpoints-controller,node-lifecycle-controller,\
    root-ca-certificate-publisher-controller,pod-garbage-collector-controller,\
    clusterrole-aggregation-controller,disruption-controller";

/// Root token of the OpenBao dev server.
const VAULT_TOKEN: &str = "root";
/// Region and static credentials the tests use against moto.
const AWS_REGION: &str = "us-east-1";

/// A running environment, as recorded on disk.
pub struct Environment {
    dir: PathBuf,
}

/// What to start.
#[derive(Clone, Copy)]
pub struct Options {
    /// A node that runs pods (containerd, kubelet, kube-scheduler, kube-proxy).
    pub node: bool,
}

impl Options {
    /// The node unless `SEAL_TESTENV_NODE=0` asks for a faster environment without pods.
    pub fn from_env() -> Self {
        Self {
            node: std::env::var("SEAL_TESTENV_NODE").map_or(true, |v| v != "0"),
        }
    }
}

/// The file holding the host's state from before the node started.
const HOST_BEFORE: &str = "host-before.json";

/// The file naming the running environment's directory.
fn pointer() -> PathBuf {
    std::env::var_os("SEAL_TESTENV_HOME")
        .map_or_else(|| workspace_root().join("target/testenv"), PathBuf::from)
        .join("current")
}

impl Environment {
    /// The run's directory (its servers' logs, configuration and state).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The running environment, if any.
    pub fn current() -> Option<Self> {
        let dir = PathBuf::from(std::fs::read_to_string(pointer()).ok()?.trim());
        dir.is_dir().then_some(Self { dir })
    }

    /// Imports an image archive into the node's containerd.
    pub fn import_image(&self, archive: &std::path::Path) -> Result<()> {
        if !self.dir.join(HOST_BEFORE).exists() {
            bail!(
                "the running test environment has no node (it was started with SEAL_TESTENV_NODE=0)"
            );
        }
        node::import_image(&NodePaths::new(&self.dir), archive)
    }

    /// Whether every server of this environment is still running.
    pub fn is_running(&self) -> bool {
        let pids = self.pids();
        !pids.is_empty() && pids.iter().all(|(_, group)| group.alive()) && self.vars().is_ok()
    }

    /// Starts everything; on any failure stops what was started and removes the directory. A
    /// recorded environment whose servers died (a killed run, a reboot) is cleaned up first.
    pub fn up(binaries: &Binaries, options: Options) -> Result<Self> {
        if let Some(recorded) = Self::current() {
            if recorded.is_running() {
                bail!(
                    "a test environment is already running in {}; `cargo xtask testenv down` first",
                    recorded.dir.display()
                );
            }
            eprintln!(
                "==> removing a test environment that is no longer running: {}",
                recorded.dir.display()
            );
            recorded.down()?;
        }
        let dir = tempfile::Builder::new()
            .prefix("seal-testenv-")
            .tempdir()?
            .keep();
        let env = Self { dir };
        std::fs::create_dir_all(pointer().parent().expect("invariant: pointer has a parent"))?;
        std::fs::write(pointer(), env.dir.display().to_string())?;
        if let Err(e) = env.start(binaries, options) {
            let _ = env.down();
            return Err(e);
        }
        Ok(env)
    }

    fn start(&self, b: &Binaries, options: Options) -> Result<()> {
        let started = Instant::now();
        if options.node {
            self.prepare_node()?;
        }
        let pki = Pki::generate(&self.dir)?;
        let ports = free_ports()?;
        let [
            etcd_client,
            etcd_peer,
            apiserver,
            bao_port,
            moto_port,
            kubelet,
            proxy_healthz,
            proxy_metrics,
            dns_ready,
            bao_tls,
            moto_tls,
        ] = ports;
        let host = if options.node {
            node::NODE_IP.to_string()
        } else {
            "127.0.0.1".to_owned()
        };

        self.start_etcd(b, etcd_client, etcd_peer)?;

        eprintln!("==> kube-apiserver on https://{host}:{apiserver}");
        let apiserver_args = apiserver_args(&pki, &host, etcd_client, apiserver, options);
        self.spawn(
            "kube-apiserver",
            Command::new(&b.kube_apiserver).args(&apiserver_args),
        )?;
        let server = format!("https://{host}:{apiserver}");
        let admin = self.kubeconfig(
            "kubeconfig",
            &server,
            &pki.ca_cert,
            &pki.admin_cert,
            &pki.admin_key,
        )?;
        let kubectl = |args: &[&str]| -> Result<String> {
            let output = Command::new(&b.kubectl)
                .arg("--kubeconfig")
                .arg(&admin)
                .args(args)
                .output()?;
            if !output.status.success() {
                bail!(
                    "kubectl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        self.wait("kube-apiserver", Duration::from_secs(90), || {
            kubectl(&["get", "--raw", "/readyz"]).is_ok_and(|b| b.trim() == "ok")
                && kubectl(&["get", "namespace", "default"]).is_ok()
        })?;

        self.start_controller_manager(b, &pki, &server, options, &kubectl)?;
        let bao = self.start_openbao(b, bao_port)?;
        let vault_vars = Self::configure_openbao(b, &bao, &pki, &server, &kubectl)?;
        let moto = self.start_moto(b, moto_port)?;
        let mut vars = vault_vars;
        if options.node {
            let pause = self.start_node(
                b,
                &pki,
                &server,
                [kubelet, proxy_healthz, proxy_metrics, dns_ready],
                &kubectl,
            )?;
            vars.push(("SEAL_TESTENV_NODE", node::NODE_NAME.to_owned()));
            vars.push(("SEAL_TESTENV_PAUSE_IMAGE", pause.reference));
            vars.extend(self.serve_in_cluster(
                &pki,
                [(bao_port, bao_tls), (moto_port, moto_tls)],
                &kubectl,
            )?);
            vars.push(("SEAL_TESTENV_NODE_IP", node::NODE_IP.to_string()));
        }
        vars.push(("SEAL_TESTENV_PORTS", ports.map(|p| p.to_string()).join(",")));
        vars.push(("SEAL_TESTENV_KUBECTL", b.kubectl.display().to_string()));
        self.write_vars(&admin, &bao, &moto, &vars)?;
        eprintln!(
            "==> test environment up in {:.0?}: {}",
            started.elapsed(),
            self.dir.display()
        );
        Ok(())
    }

    fn start_controller_manager(
        &self,
        b: &Binaries,
        pki: &Pki,
        server: &str,
        options: Options,
        kubectl: &dyn Fn(&[&str]) -> Result<String>,
    ) -> Result<()> {
        eprintln!("==> kube-controller-manager");
        let cm = self.kubeconfig(
            "controller-manager.kubeconfig",
            server,
            &pki.ca_cert,
            &pki.controller_manager_cert,
            &pki.controller_manager_key,
        )?;
        self.spawn(
            "kube-controller-manager",
            Command::new(&b.kube_controller_manager).args([
                "--kubeconfig",
                &cm,
                "--controllers",
                if options.node {
                    NODE_CONTROLLERS
                } else {
                    "garbagecollector,namespace,serviceaccount,serviceaccount-token"
                },
                "--service-account-private-key-file",
                &pki.sa_private,
                "--root-ca-file",
                &pki.ca_cert,
                "--leader-elect=false",
                // Each controller acts as its own ServiceAccount with its own bootstrap role, as in a
                // real cluster; the controller-manager's user alone may not empty a namespace.
                "--use-service-account-credentials=true",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "0",
            ]),
        )?;
        // The ServiceAccount controller creating `default` proves the controller-manager works.
        self.wait("kube-controller-manager", Duration::from_secs(60), || {
            kubectl(&["get", "serviceaccount", "default", "-n", "default"]).is_ok()
        })
    }

    /// etcd on loopback, without fsync (a throw-away cluster).
    fn start_etcd(&self, b: &Binaries, etcd_client: u16, etcd_peer: u16) -> Result<()> {
        eprintln!("==> etcd on 127.0.0.1:{etcd_client}");
        self.spawn(
            "etcd",
            Command::new(&b.etcd).args([
                "--data-dir",
                &self.path("etcd-data"),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true",
            ]),
        )?;
        self.wait("etcd", Duration::from_secs(30), || {
            http_get(etcd_client, "/health").is_ok_and(|b| b.contains("true"))
        })
    }

    /// Makes the host ready for a node: the Debian packages it needs, a record of the host's
    /// state (what `down` restores), the node's link and the firewall table.
    fn prepare_node(&self) -> Result<()> {
        if node::link_exists() {
            let Some(dir) = node::recorded_owner() else {
                bail!(
                    "a node exists on this machine (link {}) and no environment is recorded as \
                     its owner: stop the test environment that made it with `cargo xtask testenv \
                     down`, or start without a node (SEAL_TESTENV_NODE=0)",
                    node::NODE_LINK
                );
            };
            let owner = Self { dir };
            if owner.is_running() {
                bail!(
                    "another test environment's node runs on this machine ({}): stop it with \
                     `cargo xtask testenv down`, or start without a node (SEAL_TESTENV_NODE=0)",
                    owner.dir.display()
                );
            }
            eprintln!(
                "==> putting the host back after a node whose run was killed: {}",
                owner.dir.display()
            );
            owner.down()?;
        }
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "the node (real pods) needs root: run as root, or start without a node \
                 (SEAL_TESTENV_NODE=0 or `cargo xtask testenv up --no-node`)"
            );
        }
        crate::debian::ensure_packages(node::PACKAGES)?;
        let before = host::Snapshot::capture()?;
        before.save(&self.dir.join(HOST_BEFORE))?;
        node::record_owner(&self.dir)?;
        node::create_links()
    }

    /// containerd, kubelet, kube-scheduler and kube-proxy; returns the sandbox image once the node
    /// is Ready and schedulable.
    fn start_node(
        &self,
        b: &Binaries,
        pki: &Pki,
        server: &str,
        [kubelet_port, proxy_healthz, proxy_metrics, dns_ready]: [u16; 4],
        kubectl: &dyn Fn(&[&str]) -> Result<String>,
    ) -> Result<crate::image::Image> {
        let paths = NodePaths::new(&self.dir);
        let pause = super::pause::pause()?;
        let proxy = self.kubeconfig(
            "kube-proxy.kubeconfig",
            server,
            &pki.ca_cert,
            &pki.proxy_cert,
            &pki.proxy_key,
        )?;
        let identity = self.kubeconfig(
            "node.kubeconfig",
            server,
            &pki.ca_cert,
            &pki.node_cert,
            &pki.node_key,
        )?;
        let scheduler = self.kubeconfig(
            "scheduler.kubeconfig",
            server,
            &pki.ca_cert,
            &pki.scheduler_cert,
            &pki.scheduler_key,
        )?;
        node::write_configs(
            &paths,
            &pause.reference,
            &node::KubeletSettings {
                paths: &paths,
                ca_cert: &pki.ca_cert,
                serving_cert: &pki.kubelet_serving_cert,
                serving_key: &pki.kubelet_serving_key,
                port: kubelet_port,
            },
            &proxy,
            (proxy_healthz, proxy_metrics),
        )?;

        eprintln!("==> containerd");
        self.spawn(
            "containerd",
            Command::new("containerd")
                .arg("--config")
                .arg(paths.containerd_config()),
        )?;
        self.wait("containerd", Duration::from_secs(30), || {
            node::ctr(&paths, &["version"]).is_ok()
        })?;
        node::import_image(&paths, &pause.archive)?;

        self.start_coredns(b, pki, server, dns_ready, kubectl)?;

        eprintln!("==> kubelet: node {} on {}", node::NODE_NAME, node::NODE_IP);
        self.spawn(
            "kubelet",
            Command::new(&b.kubelet)
                .arg("--config")
                .arg(paths.kubelet_config())
                .args(["--kubeconfig", &identity])
                .arg("--root-dir")
                .arg(paths.kubelet_root())
                .args(["--hostname-override", node::NODE_NAME])
                .args(["--node-ip", &node::NODE_IP.to_string()]),
        )?;
        eprintln!("==> kube-scheduler and kube-proxy");
        self.spawn(
            "kube-scheduler",
            Command::new(&b.kube_scheduler).args([
                "--kubeconfig",
                &scheduler,
                "--leader-elect=false",
                "--secure-port=0",
            ]),
        )?;
        self.spawn(
            "kube-proxy",
            Command::new(&b.kube_proxy)
                .arg("--config")
                .arg(paths.proxy_config()),
        )?;
        let jsonpath = |path: &str| {
            kubectl(&[
                "get",
                "node",
                node::NODE_NAME,
                "-o",
                &format!("jsonpath={path}"),
            ])
            .unwrap_or_default()
        };
        // kube-proxy answers its health check once it has written the Services' rules.
        self.wait("kube-proxy", Duration::from_secs(60), || {
            http_get(proxy_healthz, "/healthz").is_ok()
        })?;
        self.wait("kubelet", Duration::from_secs(120), || {
            jsonpath("{.status.conditions[?(@.type==\"Ready\")].status}") == "True"
                && jsonpath("{.spec.taints}").is_empty()
        })?;
        Ok(pause)
    }

    /// CoreDNS on the node's address, for pods' Service names; returns once it has them.
    fn start_coredns(
        &self,
        b: &Binaries,
        pki: &Pki,
        server: &str,
        dns_ready: u16,
        kubectl: &dyn Fn(&[&str]) -> Result<String>,
    ) -> Result<()> {
        let paths = NodePaths::new(&self.dir);
        eprintln!("==> CoreDNS on {}:53", node::NODE_IP);
        let dns = self.kubeconfig(
            "coredns.kubeconfig",
            server,
            &pki.ca_cert,
            &pki.coredns_cert,
            &pki.coredns_key,
        )?;
        kubectl_apply(kubectl, node::COREDNS_RBAC)?;
        std::fs::write(paths.corefile(), node::corefile(&dns, dns_ready))?;
        self.spawn(
            "coredns",
            Command::new(&b.coredns)
                .arg("-conf")
                .arg(paths.corefile())
                .args(["-dns.port", "53"]),
        )?;
        self.wait("coredns", Duration::from_secs(30), || {
            http_get(dns_ready, "/ready").is_ok()
        })
    }

    /// OpenBao and moto for pods: a TLS endpoint on the node's address for each (socat, with a
    /// certificate of the cluster's CA, which every pod has as `kube-root-ca.crt`), behind a
    /// Service in [`node::SERVICES_NAMESPACE`]. `ports` pairs each server's loopback port with its
    /// TLS port. Returns the variables naming the in-cluster URLs.
    fn serve_in_cluster(
        &self,
        pki: &Pki,
        ports: [(u16, u16); 2],
        kubectl: &dyn Fn(&[&str]) -> Result<String>,
    ) -> Result<Vec<(&'static str, String)>> {
        kubectl(&["create", "namespace", node::SERVICES_NAMESPACE])?;
        let mut vars = Vec::new();
        for (service, (plain, tls)) in node::IN_CLUSTER_SERVICES.iter().zip(ports) {
            let name = format!("{}-tls", service.name);
            self.spawn(
                &name,
                Command::new("socat").args([
                    &format!(
                        "OPENSSL-LISTEN:{tls},bind={},reuseaddr,fork,cert={},key={},verify=0",
                        node::NODE_IP,
                        pki.services_cert,
                        pki.services_key
                    ),
                    &format!("TCP:127.0.0.1:{plain}"),
                ]),
            )?;
            self.wait(&name, Duration::from_secs(10), || {
                TcpStream::connect((node::NODE_IP, tls)).is_ok()
            })?;
            kubectl_apply(kubectl, &node::in_cluster_service(service, tls))?;
            let url = format!(
                "https://{}.{}.svc:{}",
                service.name,
                node::SERVICES_NAMESPACE,
                service.port
            );
            vars.push((
                if service.name == "openbao" {
                    "SEAL_TESTENV_VAULT_IN_CLUSTER"
                } else {
                    "SEAL_TESTENV_AWS_IN_CLUSTER"
                },
                url,
            ));
        }
        Ok(vars)
    }

    /// The OpenBao dev server; returns its address.
    fn start_openbao(&self, b: &Binaries, bao: u16) -> Result<String> {
        eprintln!("==> OpenBao on http://127.0.0.1:{bao}");
        self.spawn(
            "openbao",
            Command::new(&b.bao).args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={VAULT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{bao}"),
            ]),
        )?;
        self.wait("OpenBao", Duration::from_secs(30), || {
            http_get(bao, "/v1/sys/health").is_ok_and(|b| b.contains("\"initialized\":true"))
        })?;
        Ok(format!("http://127.0.0.1:{bao}"))
    }

    /// Mounts and auth methods the tests use, each reading through the `seal-read` policy:
    /// KV v1 at `kv/` (KV v2 is the dev server's `secret/`), AppRole role `seal-test`, JWT role
    /// `seal-ci` trusting the test key, and Kubernetes role `seal-test` whose logins are checked by
    /// a real TokenReview on the test apiserver. Returns the variables tests need.
    fn configure_openbao(
        b: &Binaries,
        address: &str,
        pki: &Pki,
        server: &str,
        kubectl: &dyn Fn(&[&str]) -> Result<String>,
    ) -> Result<Vec<(&'static str, String)>> {
        let bao = |args: &[&str], stdin: Option<&str>| -> Result<String> {
            let mut child = Command::new(&b.bao)
                .args(args)
                .env("BAO_ADDR", address)
                .env("BAO_TOKEN", VAULT_TOKEN)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(text.as_bytes())?;
            }
            let output = child.wait_with_output()?;
            if !output.status.success() {
                bail!(
                    "bao {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        eprintln!("==> configuring OpenBao: kv v1, approle, jwt, kubernetes auth");
        bao(&["secrets", "enable", "-path=kv", "-version=1", "kv"], None)?;
        let policy = "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"read\", \"list\"] }\npath \"kv/*\" { capabilities = [\"read\", \"list\"] }\n";
        bao(&["policy", "write", "seal-read", "-"], Some(policy))?;

        bao(&["auth", "enable", "approle"], None)?;
        bao(
            &[
                "write",
                "auth/approle/role/seal-test",
                "token_policies=seal-read",
                "token_ttl=1h",
            ],
            None,
        )?;
        let role_id = bao(
            &[
                "read",
                "-field=role_id",
                "auth/approle/role/seal-test/role-id",
            ],
            None,
        )?;
        let secret_id = bao(
            &[
                "write",
                "-f",
                "-field=secret_id",
                "auth/approle/role/seal-test/secret-id",
            ],
            None,
        )?;

        bao(&["auth", "enable", "jwt"], None)?;
        bao(
            &[
                "write",
                "auth/jwt/config",
                &format!("jwt_validation_pubkeys=@{}", pki.jwt_public),
            ],
            None,
        )?;
        bao(
            &[
                "write",
                "auth/jwt/role/seal-ci",
                "role_type=jwt",
                "bound_audiences=seal-test",
                "user_claim=sub",
                "token_policies=seal-read",
            ],
            None,
        )?;

        kubectl(&[
            "create",
            "serviceaccount",
            "openbao-reviewer",
            "-n",
            "kube-system",
        ])?;
        kubectl(&[
            "create",
            "clusterrolebinding",
            "openbao-reviewer",
            "--clusterrole=system:auth-delegator",
            "--serviceaccount=kube-system:openbao-reviewer",
        ])?;
        let reviewer = kubectl(&[
            "create",
            "token",
            "openbao-reviewer",
            "-n",
            "kube-system",
            "--duration=24h",
        ])?;
        bao(&["auth", "enable", "kubernetes"], None)?;
        bao(
            &[
                "write",
                "auth/kubernetes/config",
                &format!("kubernetes_host={server}"),
                &format!("kubernetes_ca_cert=@{}", pki.ca_cert),
                &format!("token_reviewer_jwt={}", reviewer.trim()),
            ],
            None,
        )?;
        bao(
            &[
                "write",
                "auth/kubernetes/role/seal-test",
                "bound_service_account_names=*",
                "bound_service_account_namespaces=*",
                "token_policies=seal-read",
            ],
            None,
        )?;
        // The role the controller's stores log in to: their tokens are requested for audience
        // `vault`, never the API server's, and OpenBao's TokenReview asks for that audience.
        bao(
            &[
                "write",
                "auth/kubernetes/role/seal-store",
                "bound_service_account_names=*",
                "bound_service_account_namespaces=*",
                "audience=vault",
                "token_policies=seal-read",
            ],
            None,
        )?;
        Ok(vec![
            ("SEAL_TESTENV_VAULT_KV2_MOUNT", "secret".into()),
            ("SEAL_TESTENV_VAULT_KV1_MOUNT", "kv".into()),
            ("SEAL_TESTENV_VAULT_POLICY", "seal-read".into()),
            ("SEAL_TESTENV_APPROLE_ROLE_ID", role_id),
            ("SEAL_TESTENV_APPROLE_SECRET_ID", secret_id),
            ("SEAL_TESTENV_JWT_ROLE", "seal-ci".into()),
            ("SEAL_TESTENV_JWT_AUDIENCE", "seal-test".into()),
            ("SEAL_TESTENV_JWT_SIGNING_KEY", pki.jwt_private.clone()),
            ("SEAL_TESTENV_KUBERNETES_ROLE", "seal-test".into()),
            ("SEAL_TESTENV_KUBERNETES_STORE_ROLE", "seal-store".into()),
        ])
    }

    /// The moto server; returns its endpoint URL.
    fn start_moto(&self, b: &Binaries, moto: u16) -> Result<String> {
        eprintln!("==> moto (AWS Secrets Manager) on http://127.0.0.1:{moto}");
        self.spawn(
            "moto",
            Command::new(&b.moto_server).args(["-H", "127.0.0.1", "-p", &moto.to_string()]),
        )?;
        self.wait("moto", Duration::from_secs(30), || {
            http_get(moto, "/moto-api/").is_ok()
        })?;
        Ok(format!("http://127.0.0.1:{moto}"))
    }

    /// Writes the variables the tests read (`cargo xtask testenv env` prints them).
    fn write_vars(
        &self,
        kubeconfig: &str,
        vault: &str,
        aws: &str,
        extra: &[(&str, String)],
    ) -> Result<()> {
        let mut vars = String::new();
        for (key, value) in extra {
            writeln!(vars, "{key}={value}")?;
        }
        for (key, value) in [
            ("KUBECONFIG", kubeconfig),
            ("VAULT_ADDR", vault),
            ("VAULT_TOKEN", VAULT_TOKEN),
            ("AWS_ENDPOINT_URL", aws),
            ("AWS_REGION", AWS_REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("SEAL_TESTENV_DIR", &self.dir.display().to_string()),
        ] {
            writeln!(vars, "{key}={value}")?;
        }
        std::fs::write(self.dir.join("env"), vars)?;
        Ok(())
    }

    /// `KEY=value` lines for the tests.
    pub fn vars(&self) -> Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(self.dir.join("env"))
            .context("the environment is not fully up")?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// The last `lines` lines of every server's log, each under a heading.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (name, _) in self.pids() {
            let log =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            let _ = writeln!(out, "==> last {lines} lines of {name}.log:");
            for line in tail.into_iter().rev() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// One line per server: running or not.
    pub fn status(&self) -> Result<String> {
        let mut out = format!("test environment in {}\n", self.dir.display());
        for (name, group) in self.pids() {
            let alive = group.alive();
            writeln!(
                out,
                "  {name:<26} pgid {:<8} {}",
                group.pgid,
                if alive { "running" } else { "STOPPED" }
            )?;
        }
        Ok(out)
    }

    /// Stops every process group (TERM, then KILL for what still runs after 3 s: kube-apiserver's
    /// graceful shutdown waits for open watches, which a throw-away cluster does not need), waits
    /// until every server is gone, and removes the directory. With a node, kubelet goes first,
    /// then every container, then the rest, and the host is restored to the state recorded
    /// before the node started ([`host::restore`]).
    pub fn down(&self) -> Result<()> {
        let host_before = host::Snapshot::load(&self.dir.join(HOST_BEFORE)).ok();
        let pids = self.pids();
        if host_before.is_some() {
            // kubelet first, or it restarts the containers being stopped; then every container
            // while containerd still runs.
            self.stop_groups(
                &pids
                    .iter()
                    .filter(|(name, _)| name == "kubelet")
                    .cloned()
                    .collect::<Vec<_>>(),
            )?;
            node::stop_containers(&NodePaths::new(&self.dir));
        }
        self.stop_groups(&pids)?;
        if let Some(before) = host_before {
            let paths = NodePaths::new(&self.dir);
            for _ in 0..50 {
                let strays = node::stray_processes(&paths);
                if strays.is_empty() {
                    break;
                }
                for pid in strays {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            host::restore(&before, node::POD_CGROUP).with_context(|| {
                format!(
                    "the host is not as it was; state kept in {}",
                    self.dir.display()
                )
            })?;
        }
        node::forget_owner(&self.dir);
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        if std::fs::read_to_string(pointer()).is_ok_and(|t| Path::new(t.trim()) == self.dir) {
            let _ = std::fs::remove_file(pointer());
        }
        Ok(())
    }

    /// Stops these process groups (TERM, then KILL for what still runs after 3 s) and waits until
    /// they are gone.
    fn stop_groups(&self, pids: &[(String, Group)]) -> Result<()> {
        for (_, group) in pids.iter().rev() {
            group.signal(Signal::SIGTERM);
        }
        let running = |pids: &[(String, Group)]| -> Vec<(String, Group)> {
            pids.iter()
                .filter(|(_, group)| group.alive())
                .cloned()
                .collect()
        };
        let wait_for_exit = |limit: Duration| {
            let deadline = Instant::now() + limit;
            while !running(pids).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            running(pids)
        };
        let stubborn = wait_for_exit(Duration::from_secs(3));
        for (name, group) in &stubborn {
            eprintln!("==> {name} still running 3 s after SIGTERM; sending SIGKILL");
            group.signal(Signal::SIGKILL);
        }
        let left = wait_for_exit(Duration::from_secs(10));
        if !left.is_empty() {
            bail!(
                "still running 10 s after SIGKILL: {}; state kept in {}",
                left.iter()
                    .map(|(name, group)| format!("{name} (pgid {})", group.pgid))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.dir.display()
            );
        }
        Ok(())
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn pids(&self) -> Vec<(String, Group)> {
        let text = std::fs::read_to_string(self.dir.join("pids")).unwrap_or_default();
        text.lines().filter_map(Group::parse).collect()
    }

    /// Starts a server in its own process group, output to `<name>.log`, and records its process
    /// group (`pids`) and its command line (`commands/<name>`, for [`Self::start_server`]).
    fn spawn(&self, name: &str, command: &mut Command) -> Result<()> {
        let commands = self.dir.join("commands");
        std::fs::create_dir_all(&commands)?;
        let line: Vec<String> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::fs::write(commands.join(name), serde_json::to_string(&line)?)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pgid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        let start = start_time(pgid).context("the server exited at once")?;
        // A restarted server replaces its line; the order of the others stays.
        let mut lines: Vec<String> = std::fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').next() != Some(name))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{name} {pgid} {start}"));
        std::fs::write(self.dir.join("pids"), lines.join("\n") + "\n")?;
        Ok(())
    }

    /// Stops one server (TERM, then KILL after 3 s), for a failure drill; [`Self::start_server`]
    /// brings it back.
    pub fn stop_server(&self, name: &str) -> Result<()> {
        let group = self
            .pids()
            .into_iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("this environment has no server {name}"))?;
        self.stop_groups(&[group])
    }

    /// Starts a stopped server again with the command line it was first started with (same
    /// ports, same data directory), and waits until its process has run for a second.
    pub fn start_server(&self, name: &str) -> Result<()> {
        if self
            .pids()
            .iter()
            .any(|(n, group)| n == name && group.alive())
        {
            bail!("{name} is running; `cargo xtask testenv stop {name}` first");
        }
        let recorded = std::fs::read_to_string(self.dir.join("commands").join(name))
            .with_context(|| format!("this environment has no server {name}"))?;
        let line: Vec<String> = serde_json::from_str(&recorded)?;
        let (program, args) = line.split_first().context("an empty command line")?;
        self.spawn(name, Command::new(program).args(args))?;
        std::thread::sleep(Duration::from_secs(1));
        if !self
            .pids()
            .iter()
            .any(|(n, group)| n == name && group.alive())
        {
            bail!(
                "{name} exited at once; see {}",
                self.path(&format!("{name}.log"))
            );
        }
        Ok(())
    }

    /// Polls `ready` until it holds or `limit` passes, failing at once if the server exits; the
    /// error carries the server's last log lines.
    fn wait(&self, name: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let log_name = name.to_lowercase();
        let pid = self
            .pids()
            .into_iter()
            .find(|(n, _)| *n == log_name)
            .map(|(_, pid)| pid);
        let started = Instant::now();
        let problem = loop {
            if ready() {
                return Ok(());
            }
            if let Some(signal) = crate::interrupt::received() {
                bail!("interrupted by signal {signal} while waiting for {name}");
            }
            if pid.as_ref().is_some_and(|group| !group.alive()) {
                break "exited".to_owned();
            }
            if started.elapsed() >= limit {
                break format!("not ready after {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let log =
            std::fs::read_to_string(self.dir.join(format!("{log_name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        bail!(
            "{name} {problem}; last 20 log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    fn kubeconfig(
        &self,
        file: &str,
        server: &str,
        ca: &str,
        cert: &str,
        key: &str,
    ) -> Result<String> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: seal-testenv\n  cluster: {{server: \"{server}\", certificate-authority: \"{ca}\"}}\nusers:\n- name: user\n  user: {{client-certificate: \"{cert}\", client-key: \"{key}\"}}\ncontexts:\n- name: seal-testenv\n  context: {{cluster: seal-testenv, user: user, namespace: default}}\ncurrent-context: seal-testenv\n"
        );
        let path = self.dir.join(file);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

/// kube-apiserver's flags: on `host` (the node's address with a node, else loopback).
fn apiserver_args(
    pki: &Pki,
    host: &str,
    etcd_client: u16,
    apiserver: u16,
    options: Options,
) -> Vec<String> {
    let mut apiserver_args = vec![
        "--etcd-servers".to_owned(),
        format!("http://127.0.0.1:{etcd_client}"),
        "--bind-address".to_owned(),
        host.to_owned(),
        "--advertise-address".to_owned(),
        host.to_owned(),
        "--secure-port".to_owned(),
        apiserver.to_string(),
        "--tls-cert-file".to_owned(),
        pki.serving_cert.clone(),
        "--tls-private-key-file".to_owned(),
        pki.serving_key.clone(),
        "--client-ca-file".to_owned(),
        pki.ca_cert.clone(),
        "--authorization-mode".to_owned(),
        "Node,RBAC".to_owned(),
        "--service-account-issuer".to_owned(),
        format!("https://{host}:{apiserver}"),
        "--service-account-key-file".to_owned(),
        pki.sa_public.clone(),
        "--service-account-signing-key-file".to_owned(),
        pki.sa_private.clone(),
        "--service-cluster-ip-range".to_owned(),
        node::SERVICE_SUBNET.to_owned(),
        "--allow-privileged=true".to_owned(),
    ];
    if options.node {
        // Pods get ServiceAccount tokens; the `kubernetes` Service points at the node's
        // address; kubelet is reached by its InternalIP (this host's name is 127.0.0.1).
        apiserver_args.extend([
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
            "--kubelet-client-certificate".to_owned(),
            pki.kubelet_client_cert.clone(),
            "--kubelet-client-key".to_owned(),
            pki.kubelet_client_key.clone(),
            "--kubelet-certificate-authority".to_owned(),
            pki.ca_cert.clone(),
        ]);
    } else {
        apiserver_args.extend([
            "--disable-admission-plugins".to_owned(),
            "ServiceAccount".to_owned(),
            // The default reconciler refuses a loopback advertise address.
            "--endpoint-reconciler-type=none".to_owned(),
        ]);
    }
    apiserver_args
}

/// `kubectl apply` of a manifest given as text.
fn kubectl_apply(kubectl: &dyn Fn(&[&str]) -> Result<String>, manifest: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), manifest)?;
    kubectl(&["apply", "-f", &file.path().display().to_string()]).map(drop)
}

/// A server's process group as recorded in the `pids` file: its id and its leader's start time.
///
/// A record can outlive its processes (a killed run, a machine restored from a snapshot), and a
/// process group id is free for reuse once every member is gone. The start time tells our group
/// from a later one with the same id, so `down` after a killed run never signals a stranger.
#[derive(Clone, Copy, Debug)]
struct Group {
    pgid: Pid,
    /// The leader's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
    start: u64,
}

impl Group {
    /// One line of the `pids` file: `name pgid start`.
    fn parse(line: &str) -> Option<(String, Self)> {
        let mut fields = line.split(' ');
        let name = fields.next()?.to_owned();
        let pgid = Pid::from_raw(fields.next()?.parse().ok()?);
        let start = fields.next()?.parse().ok()?;
        Some((name, Self { pgid, start }))
    }

    /// Whether this group still runs: its leader is the process we started, or the leader is gone
    /// and members remain (the id cannot have been reused while they live).
    fn alive(&self) -> bool {
        match start_time(self.pgid) {
            Some(start) if start != self.start => false,
            _ => alive(self.pgid),
        }
    }

    /// Signals every process of the group, if it is still ours.
    fn signal(&self, signal: Signal) {
        if self.alive() {
            let _ = killpg(self.pgid, signal);
        }
    }
}

/// A process's start time in clock ticks since boot, if it exists.
fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether any process of a process group is still running. Our own children are reaped first. A
/// zombie counts as stopped (this sandbox's init does not reap the servers a finished `testenv up`
/// left to it), but only once its last thread has exited: a Go server's main thread turns zombie
/// while its other threads are still closing its sockets.
fn alive(group: Pid) -> bool {
    let _ = nix::sys::wait::waitpid(group, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(group, None).is_ok();
    };
    let group = group.to_string();
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().take(3).collect();
        let threads = std::fs::read_dir(entry.path().join("task")).map_or(0, Iterator::count);
        fields.get(2) == Some(&group.as_str()) && (fields[0] != "Z" || threads > 1)
    })
}

/// Eleven free loopback ports (bound at once so they differ, then released for the servers).
fn free_ports() -> Result<[u16; 11]> {
    let listeners: Vec<TcpListener> = (0..11)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    Ok(ports
        .try_into()
        .expect("invariant: eleven listeners give eleven ports"))
}

/// A plain-HTTP GET on loopback, returning the body when the status is 2xx.
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_ok = response
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if !status_ok {
        bail!("HTTP {}", response.lines().next().unwrap_or(""));
    }
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
