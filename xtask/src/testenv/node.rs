//! The test environment's node: containerd and runc from Debian, the bridge CNI, and kubelet,
//! kube-scheduler and kube-proxy, so that the environment runs real pods.
//!
//! # Addresses
//! Everything stays on this machine. The node's address [`NODE_IP`] is a /32 on a bridge of its own
//! ([`NODE_LINK`], no ports: kubelet refuses a loopback node address), and the API server listens
//! there so that pods reach it. Pods get addresses from [`POD_SUBNET`] on the CNI bridge
//! [`POD_LINK`], without masquerading; an nft table of the environment's own ([`FIREWALL_TABLE`])
//! drops whatever a pod sends towards any other link, so nothing is routed off the machine.
//! Services come from the API server's range ([`SERVICE_SUBNET`]; `kubernetes` is
//! [`KUBERNETES_SERVICE_IP`]) and kube-proxy makes them reachable; CoreDNS on the node's address
//! answers for `cluster.local` (and only for it: nothing is forwarded off the machine).
//!
//! # Host
//! Every daemon keeps its state inside the environment's directory where it can be told to
//! (containerd's root, state and socket, runc's root, kubelet's root and pod logs, the CNI
//! configuration and address leases). What they change on the host anyway is recorded before the
//! node starts and undone when it stops ([`super::host`]).
//!
//! # Quirks of this kind of machine (see `shared/reference/pods.md`)
//! containerd must not ask for negative `oom_score_adj` (`restrict_oom_score_adj`); cgroup v1
//! needs `failCgroupV1: false` and the cgroupfs driver; the API server must reach kubelet by its
//! InternalIP; pods get a resolv.conf of the environment's own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The node's name (and its identity: `system:node:seal-node`).
pub const NODE_NAME: &str = "seal-node";
/// The bridge that holds the node's address.
pub const NODE_LINK: &str = "seal-node0";
/// The node's address: where kubelet, the API server, OpenBao and moto listen for pods.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The bridge the CNI plugin puts pods on.
pub const POD_LINK: &str = "seal-cni0";
/// Pod addresses.
pub const POD_SUBNET: &str = "10.214.0.0/24";
/// The pod bridge's address, the pods' gateway.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 1);
/// Service addresses (the API server's `--service-cluster-ip-range`).
pub const SERVICE_SUBNET: &str = "10.0.0.0/24";
/// The `kubernetes` Service: the first address of [`SERVICE_SUBNET`].
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The namespace of the Services pods reach OpenBao and moto by.
pub const SERVICES_NAMESPACE: &str = "seal-testenv";

/// A server of the environment that pods reach by a Service, over TLS.
pub struct InClusterService {
    /// The Service's name (`<name>.seal-testenv.svc`).
    pub name: &'static str,
    /// Its fixed ClusterIP (in the serving certificate too).
    pub ip: Ipv4Addr,
    /// The Service's port.
    pub port: u16,
}

/// OpenBao and moto, as pods see them.
pub const IN_CLUSTER_SERVICES: [InClusterService; 2] = [
    InClusterService {
        name: "openbao",
        ip: Ipv4Addr::new(10, 0, 0, 10),
        port: 8200,
    },
    InClusterService {
        name: "moto",
        ip: Ipv4Addr::new(10, 0, 0, 11),
        port: 443,
    },
];

/// The Service and EndpointSlice that send `service` to `target_port` on the node's address.
pub fn in_cluster_service(service: &InClusterService, target_port: u16) -> String {
    let InClusterService { name, ip, port } = service;
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {SERVICES_NAMESPACE}}}
spec:
  clusterIP: {ip}
  ports: [{{name: https, port: {port}, targetPort: {target_port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: {SERVICES_NAMESPACE}
  labels: {{kubernetes.io/service-name: {name}, endpointslice.kubernetes.io/managed-by: seal-testenv}}
addressType: IPv4
ports: [{{name: https, port: {target_port}, protocol: TCP}}]
endpoints: [{{addresses: [\"{NODE_IP}\"], conditions: {{ready: true}}}}]
"
    )
}

/// The environment's own nft table (family `inet`).
pub const FIREWALL_TABLE: &str = "seal-testenv";

/// The cgroup under which kubelet (cgroupfs driver, cgroups per QoS class) puts every pod: the
/// only cgroups `down` removes.
pub const POD_CGROUP: &str = "kubepods";
/// Debian packages the node needs: the runtime, the CNI plugins, the tools kubelet and kube-proxy
/// call (iptables on nft), and `nft` to list and remove tables.
pub const PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "nftables",
    "conntrack",
    "socat",
];

/// Where the node keeps its state, all inside the environment's directory.
pub struct NodePaths {
    pub dir: PathBuf,
}

impl NodePaths {
    pub fn new(environment: &Path) -> Self {
        Self {
            dir: environment.join("node"),
        }
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }
    pub fn cni_config_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }
    pub fn proxy_config(&self) -> PathBuf {
        self.dir.join("kube-proxy.yaml")
    }
    pub fn corefile(&self) -> PathBuf {
        self.dir.join("Corefile")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
}

/// Every registry, for containerd: a closed port on loopback. Images come from the environment
/// (imported), so a pod whose image is missing fails to pull here rather than asking a registry
/// (or a name server) off the machine.
const REGISTRY_HOSTS: &str = "server = \"http://127.0.0.1:9\"\n\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n";

/// containerd's configuration (version 2, containerd 1.6): every path inside the environment, the
/// CRI plugin on the environment's pause image and CNI configuration, runc with cgroupfs.
pub fn containerd_config(paths: &NodePaths, sandbox_image: &str) -> String {
    let dir = paths.dir.display();
    let socket = paths.containerd_socket();
    let socket = socket.display();
    let cni = paths.cni_config_dir();
    let cni = cni.display();
    format!(
        r#"version = 2
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
oom_score = 0

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This host's root may not lower oom_score_adj (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{dir}/containerd/certs.d"
"#
    )
}

/// The CNI network: a bridge with the pods' gateway, no masquerading, leases in the environment.
pub fn cni_config(paths: &NodePaths) -> String {
    let leases = paths.dir.join("cni/leases");
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "seal-testenv",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{POD_LINK}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{POD_SUBNET}", "gateway": "{POD_GATEWAY}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{}"
      }}
    }}
  ]
}}
"#,
        leases.display()
    )
}

/// kubelet's configuration.
pub struct KubeletSettings<'a> {
    pub paths: &'a NodePaths,
    pub ca_cert: &'a str,
    pub serving_cert: &'a str,
    pub serving_key: &'a str,
    pub port: u16,
}

/// CoreDNS's configuration: the cluster's names from the API server on the node's address, and
/// nothing else (no forwarding: no query leaves the machine); `ready` on loopback says when the
/// Services are loaded.
pub fn corefile(kubeconfig: &str, ready_port: u16) -> String {
    format!(
        "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{\n    bind {NODE_IP}\n    errors\n    \
         ready 127.0.0.1:{ready_port}\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        \
         kubeconfig {kubeconfig} seal-testenv\n        pods insecure\n    }}\n    cache 5\n}}\n"
    )
}

/// What CoreDNS may read: the objects its `kubernetes` plugin watches.
pub const COREDNS_RBAC: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: seal-testenv:coredns}
rules:
- apiGroups: [\"\"]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: seal-testenv:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: seal-testenv:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: seal-testenv:coredns}
";

/// The KubeletConfiguration: webhook authentication and authorization through the API server,
/// cgroupfs on cgroup v1, the environment's resolv.conf and pod log directory, and eviction
/// thresholds low enough that a busy disk does not evict the tests' pods.
pub fn kubelet_config(settings: &KubeletSettings<'_>) -> String {
    let KubeletSettings {
        paths,
        ca_cert,
        serving_cert,
        serving_key,
        port,
    } = settings;
    let resolv = paths.resolv_conf();
    let logs = paths.dir.join("pod-logs");
    let socket = paths.containerd_socket();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "{NODE_IP}"
port: {port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: "{ca_cert}"}}
authorization:
  mode: Webhook
tlsCertFile: "{serving_cert}"
tlsPrivateKeyFile: "{serving_key}"
containerRuntimeEndpoint: "unix://{socket}"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: "{resolv}"
clusterDNS: ["{NODE_IP}"]
podLogsDir: "{logs}"
clusterDomain: cluster.local
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
maxPods: 250
"#,
        resolv = resolv.display(),
        logs = logs.display(),
        socket = socket.display(),
    )
}

/// kube-proxy's configuration: iptables mode (on nft), node ports only on the node's address (so
/// it never sets `route_localnet`), and conntrack left as the host has it.
pub fn proxy_config(kubeconfig: &str, healthz: u16, metrics: u16) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: "{kubeconfig}"
hostnameOverride: {NODE_NAME}
bindAddress: "{NODE_IP}"
healthzBindAddress: "127.0.0.1:{healthz}"
metricsBindAddress: "127.0.0.1:{metrics}"
clusterCIDR: "{POD_SUBNET}"
nodePortAddresses: ["{NODE_IP}/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#
    )
}

/// The nft rules that keep pod traffic on the machine: whatever a pod sends is accepted for the
/// pod bridge and for the host itself (input), and dropped when it would be forwarded elsewhere.
pub fn firewall_rules() -> String {
    format!(
        "table inet {FIREWALL_TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"{POD_LINK}\" oifname != \"{POD_LINK}\" drop\n  }}\n}}\n"
    )
}

/// Creates the node's link with its address, and the firewall table.
pub fn create_links() -> Result<()> {
    ip(&["link", "add", NODE_LINK, "type", "bridge"])?;
    ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", NODE_LINK])?;
    ip(&["link", "set", NODE_LINK, "up"])?;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    std::io::Write::write_all(
        child.stdin.as_mut().expect("invariant: piped stdin"),
        firewall_rules().as_bytes(),
    )?;
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("nft could not load the environment's firewall table");
    }
    Ok(())
}

/// Whether a node exists on this machine (its link does), running or left by a killed run.
pub fn link_exists() -> bool {
    Path::new("/sys/class/net").join(NODE_LINK).exists()
}

/// The host-wide record naming the directory of the environment that owns the node. There is one
/// node per machine whichever checkout started it, so the record lives with the machine rather
/// than in a workspace: a later `up` from any checkout finds a node left by a run that was killed
/// outright (SIGKILL, a session's end) and puts the host back from that run's snapshot.
const OWNER_RECORD: &str = "/run/seal-testenv-node";

/// Records `environment` as the node's owner.
pub fn record_owner(environment: &Path) -> Result<()> {
    std::fs::write(OWNER_RECORD, environment.display().to_string())
        .with_context(|| format!("cannot write {OWNER_RECORD}"))
}

/// The directory of the environment that owns the node, if one is recorded.
pub fn recorded_owner() -> Option<PathBuf> {
    let text = std::fs::read_to_string(OWNER_RECORD).ok()?;
    let dir = PathBuf::from(text.trim());
    dir.is_dir().then_some(dir)
}

/// Removes the record if it names `environment`.
pub fn forget_owner(environment: &Path) {
    if std::fs::read_to_string(OWNER_RECORD).is_ok_and(|t| Path::new(t.trim()) == environment) {
        let _ = std::fs::remove_file(OWNER_RECORD);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes every configuration file of the node.
pub fn write_configs(
    paths: &NodePaths,
    sandbox_image: &str,
    kubelet: &KubeletSettings<'_>,
    proxy_kubeconfig: &str,
    proxy_ports: (u16, u16),
) -> Result<()> {
    std::fs::create_dir_all(paths.cni_config_dir())?;
    std::fs::create_dir_all(paths.dir.join("containerd"))?;
    std::fs::create_dir_all(paths.kubelet_root())?;
    std::fs::create_dir_all(paths.dir.join("pod-logs"))?;
    std::fs::write(
        paths.containerd_config(),
        containerd_config(paths, sandbox_image),
    )?;
    std::fs::write(
        paths.cni_config_dir().join("10-seal-testenv.conflist"),
        cni_config(paths),
    )?;
    let registries = paths.dir.join("containerd/certs.d/_default");
    std::fs::create_dir_all(&registries)?;
    std::fs::write(registries.join("hosts.toml"), REGISTRY_HOSTS)?;
    std::fs::write(paths.kubelet_config(), kubelet_config(kubelet))?;
    std::fs::write(
        paths.proxy_config(),
        proxy_config(proxy_kubeconfig, proxy_ports.0, proxy_ports.1),
    )?;
    // No name server: pods reach the environment's services by address. `ndots:1` keeps lookups
    // of single names local.
    std::fs::write(paths.resolv_conf(), "options ndots:1\n")?;
    Ok(())
}

/// `ctr` against the node's containerd, in the CRI namespace.
pub fn ctr(paths: &NodePaths, args: &[&str]) -> Result<String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(paths.containerd_socket())
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .context("cannot run ctr")?;
    if !output.status.success() {
        bail!(
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Imports an image archive into the node's containerd.
pub fn import_image(paths: &NodePaths, archive: &Path) -> Result<()> {
    let archive = archive.display().to_string();
    ctr(paths, &["images", "import", "--no-unpack", &archive]).map(drop)
}

/// The pids of processes that belong to the node but not to a process group the environment
/// started: containerd's shims (they start their own sessions), recognised by their program and
/// the node's containerd socket on their command line. The processes of the containers go with
/// their cgroups when the host is restored.
pub fn stray_processes(paths: &NodePaths) -> Vec<i32> {
    let socket = paths.containerd_socket().display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| is_shim_of(&c, &socket))
        })
        .collect()
}

/// Whether a NUL-separated command line is a containerd shim's serving `socket`.
fn is_shim_of(cmdline: &[u8], socket: &str) -> bool {
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let Some(program) = args.next() else {
        return false;
    };
    Path::new(program.as_ref())
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("containerd-shim"))
        && args.any(|arg| arg == socket)
}

/// Stops every pod the node runs: each running task is killed and every container removed, so no
/// container process outlives the environment. What the CNI set up goes with the network
/// namespaces when the host is restored.
pub fn stop_containers(paths: &NodePaths) {
    let Ok(tasks) = ctr(paths, &["tasks", "ls", "-q"]) else {
        return;
    };
    for task in tasks.lines().filter(|l| !l.is_empty()) {
        let _ = ctr(paths, &["tasks", "kill", "-s", "SIGKILL", task]);
    }
    for _ in 0..50 {
        let running = ctr(paths, &["tasks", "ls"]).unwrap_or_default();
        if !running.lines().skip(1).any(|l| l.contains("RUNNING")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shims_of_this_node_are_strays() {
        let socket = "/tmp/seal-testenv-x/node/containerd/containerd.sock";
        let shim = b"/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0abc\0-address\0/tmp/seal-testenv-x/node/containerd/containerd.sock\0";
        assert!(is_shim_of(shim, socket));
        let other_node =
            b"/usr/bin/containerd-shim-runc-v2\0-address\0/run/containerd/containerd.sock\0";
        assert!(!is_shim_of(other_node, socket));
        let shell = b"bash\0-c\0ls /tmp/seal-testenv-x/node/containerd/containerd.sock\0";
        assert!(!is_shim_of(shell, socket));
    }

    #[test]
    fn every_daemon_keeps_its_state_in_the_environment() {
        let paths = NodePaths::new(Path::new("/tmp/seal-testenv-x"));
        let containerd = containerd_config(&paths, "localhost/seal-pause:1");
        for line in containerd
            .lines()
            .filter(|l| l.contains("\"/") && !l.contains("bin_dir"))
        {
            assert!(line.contains("/tmp/seal-testenv-x/node"), "{line}");
        }
        assert!(containerd.contains("restrict_oom_score_adj = true"));
        assert!(containerd.contains("SystemdCgroup = false"));
        assert!(
            cni_config(&paths).contains("\"dataDir\": \"/tmp/seal-testenv-x/node/cni/leases\"")
        );
        let kubelet = kubelet_config(&KubeletSettings {
            paths: &paths,
            ca_cert: "/ca",
            serving_cert: "/c",
            serving_key: "/k",
            port: 10250,
        });
        assert!(kubelet.contains("podLogsDir: \"/tmp/seal-testenv-x/node/pod-logs\""));
        assert!(kubelet.contains("failCgroupV1: false"));
        assert!(kubelet.contains(&format!("address: \"{NODE_IP}\"")));
    }

    #[test]
    fn pods_are_never_masqueraded_and_forwarding_off_the_bridge_is_dropped() {
        let paths = NodePaths::new(Path::new("/e"));
        let cni: serde_json::Value = serde_json::from_str(&cni_config(&paths)).unwrap();
        assert_eq!(cni["plugins"][0]["ipMasq"], false);
        let rules = firewall_rules();
        assert!(rules.contains("hook forward"));
        assert!(rules.contains(&format!(
            "iifname \"{POD_LINK}\" oifname != \"{POD_LINK}\" drop"
        )));
    }

    #[test]
    fn kube_proxy_leaves_conntrack_and_localnet_alone() {
        let config = proxy_config("/kc", 1, 2);
        assert!(config.contains("maxPerCore: 0"));
        assert!(config.contains(&format!("nodePortAddresses: [\"{NODE_IP}/32\"]")));
    }
}
