//! The test environment listens on loopback and the node's own address only, and leaves nothing
//! behind: after `testenv down`, after a command run against it fails, and after Ctrl-C, no server
//! process is running, no port it listened on accepts connections, its temporary directory is
//! gone, and the host is as it was before (`testenv host-diff`: sysctls, links, nft tables, mounts,
//! cgroups and the directories the node's daemons create).
//!
//! A run killed outright (SIGKILL to everything it started, as when a CI job or a session is cut
//! off) cannot clean up after itself: the next `up`, from any checkout, puts the host back first.
//!
//! Each test brings up a whole environment of its own, node included (recorded under its own
//! `SEAL_TESTENV_HOME`), one at a time. A node changes the host, and one host holds one node: so
//! these tests are not part of `cargo test --workspace` (`test = false` in xtask's Cargo.toml) and
//! `cargo xtask test` runs them in a step of their own, before the shared environment comes up.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// One environment at a time: two cores cannot start several apiservers within their deadlines.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The node's address (`xtask/src/testenv/node.rs`), where the API server and kubelet listen.
const NODE_IP: [u8; 4] = [10, 213, 0, 1];

/// The servers of an environment with a node.
const SERVERS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "openbao",
    "moto",
    "containerd",
    "coredns",
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
    "openbao-tls",
    "moto-tls",
];

/// What an environment consists of, read while it runs.
struct Footprint {
    dir: PathBuf,
    pids: Vec<(String, i32)>,
    ports: Vec<u16>,
}

/// The host's state before an environment: compared with the state after it by `host-diff`.
struct HostBefore {
    file: tempfile::NamedTempFile,
}

impl HostBefore {
    fn capture() -> Self {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["testenv", "host-snapshot"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &output.stdout).unwrap();
        Self { file }
    }

    fn assert_restored(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["testenv", "host-diff"])
            .arg(self.file.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the host is not as it was:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn xtask(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.env("SEAL_TESTENV_HOME", home);
    // Not the variables of an environment this runs in, and always with the node.
    for (key, _) in std::env::vars() {
        if key.starts_with("SEAL_TESTENV_") && key != "SEAL_TESTENV_HOME" {
            command.env_remove(key);
        }
    }
    command
}

/// Waits until the environment recorded in `home` is fully up, and reads what it consists of.
fn footprint_when_up(home: &Path, limit: Duration) -> Footprint {
    let started = Instant::now();
    loop {
        if let Some(footprint) = read_footprint(home) {
            return footprint;
        }
        assert!(
            started.elapsed() < limit,
            "the environment was not up after {} s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_footprint(home: &Path) -> Option<Footprint> {
    let dir = PathBuf::from(std::fs::read_to_string(home.join("current")).ok()?.trim());
    let env = std::fs::read_to_string(dir.join("env")).ok()?;
    let ports = env
        .lines()
        .find_map(|l| l.strip_prefix("SEAL_TESTENV_PORTS="))?
        .split(',')
        .map(|p| p.parse().expect("ports are numbers"))
        .collect();
    let pids = std::fs::read_to_string(dir.join("pids"))
        .ok()?
        .lines()
        .map(|l| {
            let mut fields = l.split(' ');
            let (Some(name), Some(pid)) = (fields.next(), fields.next()) else {
                panic!("`name pgid start` lines, got {l:?}");
            };
            (name.to_owned(), pid.parse().expect("pids are numbers"))
        })
        .collect();
    Some(Footprint { dir, pids, ports })
}

/// Running: not a zombie, or a zombie whose other threads are still exiting (and may still hold
/// its sockets). A finished zombie holds no memory, files or ports; this sandbox's init does not
/// reap the servers a finished `testenv up` left to it.
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return false;
    };
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    !rest.starts_with('Z') || threads > 1
}

/// The local addresses of every listening TCP socket the processes in these process groups hold:
/// the socket inodes among their file descriptors, looked up in `/proc/net/tcp` and `tcp6`.
fn listening_addresses(groups: &[(String, i32)]) -> Vec<String> {
    let groups: Vec<String> = groups.iter().map(|(_, pid)| pid.to_string()).collect();
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let pgrp = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(2).map(str::to_owned));
        if !pgrp.is_some_and(|g| groups.contains(&g)) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if let Some(inode) = target
                .to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut addresses = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address st ... inode; 0A is LISTEN.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                addresses.push(decode_address(fields[1]));
            }
        }
    }
    addresses
}

/// `0100007F:1F90` (little-endian IPv4) to `127.0.0.1:8080`; IPv6 addresses are kept in hex, which
/// the loopback assertion then rejects, as it should.
fn decode_address(hex: &str) -> String {
    let (ip, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    if ip.len() == 8 {
        let ip = u32::from_str_radix(ip, 16).unwrap().to_le_bytes();
        format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])
    } else {
        format!("[{ip}]:{port}")
    }
}

fn listening(port: u16) -> bool {
    [[127, 0, 0, 1], NODE_IP]
        .into_iter()
        .any(|ip| TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)).is_ok())
}

impl Footprint {
    fn assert_alive(&self) {
        let names: Vec<&str> = self.pids.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, SERVERS);
        for (name, pid) in &self.pids {
            assert!(running(*pid), "{name} ({pid}) is not running while up");
        }
        // The etcd peer port is the only one nobody connects to, but it listens too.
        for port in &self.ports {
            assert!(listening(*port), "port {port} is not listening while up");
        }
        assert!(self.dir.is_dir());
        let listening = listening_addresses(&self.pids);
        assert!(
            listening.len() >= self.ports.len(),
            "found only {listening:?}"
        );
        let node = format!(
            "{}.{}.{}.{}:",
            NODE_IP[0], NODE_IP[1], NODE_IP[2], NODE_IP[3]
        );
        for address in &listening {
            assert!(
                address.starts_with("127.0.0.1:") || address.starts_with(&node),
                "a server listens beyond loopback and the node: {address} (all: {listening:?})"
            );
        }
    }

    fn assert_gone(&self, home: &Path) {
        for (name, pid) in &self.pids {
            assert!(!running(*pid), "{name} ({pid}) is still running");
        }
        for port in &self.ports {
            assert!(!listening(*port), "port {port} still accepts connections");
        }
        assert!(!self.dir.exists(), "{} is still there", self.dir.display());
        assert!(!home.join("current").exists(), "the pointer is still there");
    }
}

/// A run in its own process group that gets Ctrl-C when the test ends early (a failed assertion),
/// so that its environment comes down before the next test brings up another node.
struct Interrupted(std::process::Child);

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let group = Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
            let _ = killpg(group, Signal::SIGINT);
            let _ = self.0.wait();
        }
    }
}

/// Brings the environment recorded in a home down when the test ends early.
struct DownAtEnd<'a>(&'a Path);

impl Drop for DownAtEnd<'_> {
    fn drop(&mut self) {
        if self.0.join("current").exists() {
            let _ = xtask(self.0).args(["testenv", "down"]).status();
        }
    }
}

/// `testenv run` (recorded in `home`, in a process group of its own, as a terminal's foreground
/// job is) of a command that starts a pod on the node and then waits. Returns the run, the
/// environment's footprint and the command's pid, once the pod is Ready.
fn run_holding_a_pod(home: &Path) -> (Interrupted, Footprint, i32) {
    let pid_file = home.join("command.pid");
    let script = format!(
        "set -e; K=$SEAL_TESTENV_KUBECTL; \
         $K run hold --image=$SEAL_TESTENV_PAUSE_IMAGE --image-pull-policy=Never >/dev/null; \
         $K wait --for=condition=Ready pod/hold --timeout=90s >/dev/null; \
         echo $$ > {}; exec sleep 300",
        pid_file.display()
    );
    let child = xtask(home)
        .args(["testenv", "run", "--", "sh", "-c", &script])
        .process_group(0)
        .spawn()
        .unwrap();
    let child = Interrupted(child);
    let footprint = footprint_when_up(home, Duration::from_secs(180));
    let started = Instant::now();
    let command_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the command never started its pod"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (child, footprint, command_pid)
}

#[test]
fn down_leaves_no_process_port_or_directory() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let host = HostBefore::capture();
    let home = tempfile::tempdir().unwrap();
    let up = xtask(home.path())
        .args(["testenv", "up"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let _down_at_end = DownAtEnd(home.path());
    assert!(up.success(), "testenv up failed: {up}");
    let footprint = read_footprint(home.path()).expect("up recorded the environment");
    footprint.assert_alive();

    let down = xtask(home.path())
        .args(["testenv", "down"])
        .status()
        .unwrap();
    assert!(down.success(), "testenv down failed: {down}");
    footprint.assert_gone(home.path());
    host.assert_restored();
}

#[test]
fn a_failing_command_fails_the_run_and_leaves_nothing_behind() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let host = HostBefore::capture();
    let home = tempfile::tempdir().unwrap();
    let record = home.path().join("footprint-seen");
    // The command checks the environment is up (its variables are set) and then fails with 3.
    let script = format!(
        "test -n \"$KUBECONFIG\" && test -n \"$VAULT_ADDR\" && touch {} && exit 3",
        record.display()
    );
    let mut child = xtask(home.path())
        .args(["testenv", "run", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let footprint = footprint_when_up(home.path(), Duration::from_secs(180));
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the command's exit code is the run's"
    );
    assert!(
        record.exists(),
        "the command ran with the environment's variables"
    );
    footprint.assert_gone(home.path());
    host.assert_restored();
}

#[test]
fn ctrl_c_stops_the_command_and_leaves_nothing_behind() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let host = HostBefore::capture();
    let home = tempfile::tempdir().unwrap();
    // A pod runs on the node when Ctrl-C comes: its mounts, links, namespaces and cgroups must go.
    let (mut child, footprint, command_pid) = run_holding_a_pod(home.path());
    footprint.assert_alive();
    assert!(running(command_pid));

    let group = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    killpg(group, Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "interrupted runs exit 128 + SIGINT"
    );
    assert!(!running(command_pid), "the command was not stopped");
    footprint.assert_gone(home.path());
    host.assert_restored();
}

#[test]
fn a_killed_run_is_put_back_by_the_next_up_from_another_checkout() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let host = HostBefore::capture();
    let killed_home = tempfile::tempdir().unwrap();
    let _killed_down_at_end = DownAtEnd(killed_home.path());
    // A pod runs when the run is killed: its shim and container outlive every recorded group.
    let (mut child, footprint, _) = run_holding_a_pod(killed_home.path());

    // SIGKILL to the run and to every server's group: nothing gets to clean up.
    let run = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    killpg(run, Signal::SIGKILL).unwrap();
    child.0.wait().unwrap();
    for (_, pid) in &footprint.pids {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(footprint.dir.is_dir(), "a killed run leaves its directory");

    // Another checkout (another home) brings up its own environment: the killed one's node goes.
    let home = tempfile::tempdir().unwrap();
    let up = xtask(home.path())
        .args(["testenv", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let _down_at_end = DownAtEnd(home.path());
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "testenv up failed: {stderr}");
    assert!(
        stderr.contains("putting the host back after a node whose run was killed"),
        "up did not say it cleaned up: {stderr}"
    );
    assert!(
        !footprint.dir.exists(),
        "the killed run's directory is still there"
    );
    let fresh = read_footprint(home.path()).expect("up recorded the environment");
    fresh.assert_alive();
    let down = xtask(home.path())
        .args(["testenv", "down"])
        .status()
        .unwrap();
    assert!(down.success(), "testenv down failed: {down}");
    fresh.assert_gone(home.path());
    host.assert_restored();
}
