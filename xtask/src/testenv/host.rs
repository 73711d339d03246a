//! What a node changes on the machine, and putting it back.
//!
//! kubelet, kube-proxy, containerd and the CNI plugins change the host they run on: sysctls
//! (`vm.overcommit_memory`, `kernel.panic`, `net.ipv4.ip_forward`, ...), nft tables, mounts (the
//! kubelet's root directory, every pod's volumes, overlay root filesystems, network namespaces),
//! links (bridges and veths), cgroups (`kubepods`) and a few directories outside the environment's
//! own (`/var/lib/cni`, `/run/netns`). Rather than trusting a list of what each daemon is known to
//! touch, the environment records a [`Snapshot`] of all of it before the node starts, and
//! [`restore`] undoes every difference afterwards: `down`, a failed `up` and an interrupted run all
//! end there, and a later `up` does it for a run that was killed outright. The lifecycle tests take
//! a snapshot before and after and require them to be equal ([`Snapshot::differences`]).
//!
//! Only the machine's state is compared; what the kernel changes on its own (counters, random
//! seeds, the last pid) is left out by [`volatile_sysctl`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Directories outside the environment's own that the node's daemons create when missing.
const WATCHED_PATHS: &[&str] = &[
    "/var/lib/cni",
    "/run/netns",
    "/var/run/netns",
    "/run/containerd",
    "/run/runc",
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
    "/run/flannel",
    "/var/run/kubernetes",
];

/// The sysctl trees whose values are recorded (everything writable under them).
const SYSCTL_TREES: &[&str] = &["kernel", "vm", "net", "fs"];

/// The host's state that a node may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Writable sysctls and their values, by dotted name.
    pub sysctls: BTreeMap<String, String>,
    /// Network interfaces by name.
    pub links: BTreeSet<String>,
    /// nft tables as `family name`.
    pub nft_tables: BTreeSet<String>,
    /// Mount points.
    pub mounts: BTreeSet<String>,
    /// Which of [`WATCHED_PATHS`] exist.
    pub paths: BTreeSet<String>,
    /// Directories of every cgroup v1 hierarchy and of the unified one, up to three levels deep.
    pub cgroups: BTreeSet<String>,
}

impl Snapshot {
    /// Reads the host's state now.
    pub fn capture() -> Result<Self> {
        Ok(Self {
            sysctls: sysctls(),
            links: links()?,
            nft_tables: nft_tables()?,
            mounts: mounts()?,
            paths: WATCHED_PATHS
                .iter()
                .filter(|p| Path::new(p).exists())
                .map(|p| (*p).to_owned())
                .collect(),
            cgroups: cgroups(),
        })
    }

    /// What differs from `before` to `self`, one line each, for an assertion or an error.
    pub fn differences(&self, before: &Self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in &before.sysctls {
            match self.sysctls.get(name) {
                Some(now) if now != value => out.push(format!("sysctl {name}: {value} -> {now}")),
                _ => {}
            }
        }
        let mut set = |what: &str, before: &BTreeSet<String>, now: &BTreeSet<String>| {
            for added in now.difference(before) {
                out.push(format!("{what} added: {added}"));
            }
            for removed in before.difference(now) {
                out.push(format!("{what} removed: {removed}"));
            }
        };
        set("link", &before.links, &self.links);
        set("nft table", &before.nft_tables, &self.nft_tables);
        set("mount", &before.mounts, &self.mounts);
        set("path", &before.paths, &self.paths);
        set("cgroup", &before.cgroups, &self.cgroups);
        out
    }

    /// Saves the snapshot to `file` (JSON).
    pub fn save(&self, file: &Path) -> Result<()> {
        std::fs::write(file, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", file.display()))
    }

    /// Loads a snapshot saved by [`Snapshot::save`].
    pub fn load(file: &Path) -> Result<Self> {
        let text =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok(serde_json::from_slice(&text)?)
    }
}

/// Puts the host back the way `before` found it: unmounts what was mounted since (deepest first),
/// deletes links, nft tables and watched paths that were added, and the added cgroups at or under
/// one named `cgroup_scope` (with any process still in them), and writes back sysctls that
/// changed. Every step runs even when one fails; the error lists what could not be undone.
///
/// Cgroups are the one kind of state other programs on the host add all the time (a supervisor
/// gives every command its own), so only the node's own are removed: removing every cgroup added
/// since `before` would kill whatever else started meanwhile, the caller included.
pub fn restore(before: &Snapshot, cgroup_scope: &str) -> Result<()> {
    let mut problems = Vec::new();
    let now = Snapshot::capture()?;
    for mount in unmount_order(&now.mounts, &before.mounts) {
        if let Err(e) = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            problems.push(format!("unmount {mount}: {e}"));
        }
    }
    for link in now.links.difference(&before.links) {
        // A veth goes with its peer: a link already gone is not a problem.
        let status = Command::new("ip").args(["link", "delete", link]).output();
        if let Ok(output) = status
            && !output.status.success()
            && links().is_ok_and(|l| l.contains(link))
        {
            problems.push(format!(
                "delete link {link}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    for table in now.nft_tables.difference(&before.nft_tables) {
        let args: Vec<&str> = ["delete", "table"]
            .into_iter()
            .chain(table.split(' '))
            .collect();
        if let Err(e) = run("nft", &args) {
            problems.push(format!("{e:#}"));
        }
    }
    for path in now.paths.difference(&before.paths) {
        // `/var/run` may be `/run`: one path gone with another is not a problem.
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                problems.push(format!("remove {path}: {e}"));
            }
            _ => {}
        }
    }
    // Children before parents: the longest paths first.
    let mut cgroups: Vec<&String> = now
        .cgroups
        .difference(&before.cgroups)
        .filter(|path| in_scope(path, cgroup_scope))
        .collect();
    cgroups.sort_by_key(|path| std::cmp::Reverse(path.len()));
    for cgroup in cgroups {
        remove_cgroup(Path::new(cgroup), &mut problems);
    }
    for (name, value) in &before.sysctls {
        if now.sysctls.get(name).is_some_and(|v| v != value)
            && let Err(e) = std::fs::write(sysctl_path(name), value)
        {
            problems.push(format!("sysctl {name}={value}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "could not undo every change to the host:\n  {}",
            problems.join("\n  ")
        )
    }
}

/// Whether a cgroup directory is `scope` or inside one of that name.
fn in_scope(cgroup: &str, scope: &str) -> bool {
    Path::new(cgroup)
        .components()
        .any(|c| c.as_os_str() == std::ffi::OsStr::new(scope))
}

/// The mounts of `now` that `before` did not have, in the order they can be unmounted: deepest
/// (longest) first, so a mount is never unmounted before what is mounted inside it.
fn unmount_order<'a>(now: &'a BTreeSet<String>, before: &'a BTreeSet<String>) -> Vec<&'a String> {
    let mut added: Vec<&String> = now.difference(before).collect();
    added.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| b.cmp(a)));
    added
}

/// Removes a cgroup directory and whatever cgroups are inside it, killing any process left in
/// them first (a container whose shim is gone).
fn remove_cgroup(dir: &Path, problems: &mut Vec<String>) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path(), problems);
            }
        }
    }
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    problems.push(format!("remove cgroup {}", dir.display()));
}

/// Whether a sysctl's value changes on its own, without anyone setting it.
pub fn volatile_sysctl(name: &str) -> bool {
    const VOLATILE: &[&str] = &[
        "kernel.ns_last_pid",
        "kernel.random.",
        "kernel.pty.nr",
        "kernel.tainted",
        "fs.dentry-state",
        "fs.file-nr",
        "fs.inode-",
        "fs.quota.",
        "fs.binfmt_misc.",
        "vm.stat_refresh",
        "vm.drop_caches",
        "vm.compact_memory",
        "net.netfilter.nf_conntrack_count",
        "kernel.sched_domain.",
        "net.ipv6.route.flush",
        "net.ipv4.route.flush",
        "kernel.perf_event_max_sample_rate",
        "kernel.hung_task_detect_count",
    ];
    VOLATILE.iter().any(|prefix| name.starts_with(prefix)) || per_interface(name)
}

/// A per-interface setting (`net.ipv4.conf.<link>.*`, `net.ipv6.neigh.<link>.*`, ...): these come
/// and go with their links, which are compared as links.
fn per_interface(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    matches!(
        parts.as_slice(),
        ["net", "ipv4" | "ipv6", "conf" | "neigh", link, ..] if *link != "all" && *link != "default"
    )
}

/// `kernel.panic` -> `/proc/sys/kernel/panic`.
fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

fn sysctls() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk(&path, out);
                continue;
            }
            let writable = entry.metadata().is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o200 != 0
            });
            let name = path
                .strip_prefix("/proc/sys")
                .map(|p| p.display().to_string().replace('/', "."))
                .unwrap_or_default();
            if !writable || volatile_sysctl(&name) {
                continue;
            }
            if let Ok(value) = std::fs::read_to_string(&path) {
                out.insert(name, value.trim_end().to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    for tree in SYSCTL_TREES {
        walk(&Path::new("/proc/sys").join(tree), &mut out);
    }
    out
}

fn links() -> Result<BTreeSet<String>> {
    Ok(std::fs::read_dir("/sys/class/net")
        .context("cannot list /sys/class/net")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn nft_tables() -> Result<BTreeSet<String>> {
    let listing = run("nft", &["list", "tables"])?;
    Ok(parse_nft_tables(&listing))
}

/// `table ip nat` lines -> `ip nat`.
fn parse_nft_tables(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table "))
        .map(str::to_owned)
        .collect()
}

fn mounts() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mount_points(&text))
}

/// The mount points of a `/proc/self/mountinfo` text (field 5, with `\040`-style escapes undone).
fn parse_mount_points(mountinfo: &str) -> BTreeSet<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cgroups() -> BTreeSet<String> {
    fn walk(dir: &Path, depth: usize, out: &mut BTreeSet<String>) {
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(entry.path().display().to_string());
                walk(&entry.path(), depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for hierarchy in hierarchies.flatten() {
            walk(&hierarchy.path(), 3, &mut out);
        }
    }
    out
}

/// Runs a host tool and returns its output, or an error naming the command and its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_cgroups_of_the_scope_are_removed() {
        assert!(in_scope("/sys/fs/cgroup/memory/kubepods", "kubepods"));
        assert!(in_scope(
            "/sys/fs/cgroup/pids/kubepods/besteffort/pod1",
            "kubepods"
        ));
        assert!(!in_scope(
            "/sys/fs/cgroup/memory/process_api/3b4e96",
            "kubepods"
        ));
        assert!(!in_scope("/sys/fs/cgroup/memory/kubepods-x", "kubepods"));
    }

    #[test]
    fn mounts_inside_mounts_come_off_first() {
        let before = set(&["/", "/proc"]);
        let now = set(&[
            "/",
            "/proc",
            "/tmp/env/kubelet",
            "/tmp/env/kubelet/pods/x/volumes/secret",
            "/run/netns/cni-1",
        ]);
        let order = unmount_order(&now, &before);
        assert_eq!(
            order,
            [
                "/tmp/env/kubelet/pods/x/volumes/secret",
                "/tmp/env/kubelet",
                "/run/netns/cni-1"
            ]
        );
    }

    #[test]
    fn mountinfo_mount_points_are_field_five_unescaped() {
        let text = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
                    40 22 0:5 / /tmp/a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(parse_mount_points(text), set(&["/", "/tmp/a b"]));
    }

    #[test]
    fn nft_tables_are_family_and_name() {
        let listing = "table ip nat\ntable ip6 filter\ntable inet seal\n";
        assert_eq!(
            parse_nft_tables(listing),
            set(&["ip nat", "ip6 filter", "inet seal"])
        );
    }

    #[test]
    fn per_interface_and_self_changing_sysctls_are_not_compared() {
        assert!(volatile_sysctl("net.ipv4.conf.seal-cni0.forwarding"));
        assert!(volatile_sysctl(
            "net.ipv6.neigh.vethabc.base_reachable_time_ms"
        ));
        assert!(volatile_sysctl("kernel.ns_last_pid"));
        assert!(!volatile_sysctl("net.ipv4.conf.all.forwarding"));
        assert!(!volatile_sysctl("net.ipv4.ip_forward"));
        assert!(!volatile_sysctl("vm.overcommit_memory"));
        assert!(!volatile_sysctl("kernel.panic"));
    }

    #[test]
    fn differences_name_every_change() {
        let before = Snapshot {
            sysctls: [("kernel.panic".to_owned(), "0".to_owned())].into(),
            links: set(&["lo", "eth0"]),
            nft_tables: BTreeSet::new(),
            mounts: set(&["/"]),
            paths: BTreeSet::new(),
            cgroups: set(&["/sys/fs/cgroup/cpu/user"]),
        };
        assert!(before.differences(&before).is_empty());
        let after = Snapshot {
            sysctls: [("kernel.panic".to_owned(), "10".to_owned())].into(),
            links: set(&["lo", "eth0", "seal-cni0"]),
            nft_tables: set(&["ip nat"]),
            mounts: set(&["/", "/run/netns/cni-1"]),
            paths: set(&["/var/lib/cni"]),
            cgroups: set(&["/sys/fs/cgroup/cpu/user", "/sys/fs/cgroup/cpu/kubepods"]),
        };
        assert_eq!(
            after.differences(&before),
            [
                "sysctl kernel.panic: 0 -> 10",
                "link added: seal-cni0",
                "nft table added: ip nat",
                "mount added: /run/netns/cni-1",
                "path added: /var/lib/cni",
                "cgroup added: /sys/fs/cgroup/cpu/kubepods",
            ]
        );
    }

    #[test]
    fn sysctl_names_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
