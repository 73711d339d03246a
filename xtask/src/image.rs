//! `cargo xtask image [--binaries DIR] [--import]`: the project's image, built here by podman from
//! the repository's `Dockerfile`, exactly as it ships except for where its two inputs come from;
//! and the stand-in app the tests' ml-api and ml-batch pods run ([`build_workload`]).
//!
//! The Dockerfile's `runtime` stage copies the binaries from the stage named `binaries` onto the
//! base named by `RUNTIME_BASE`. A user's `docker build` compiles the binaries in the `build` stage
//! and takes distroless `cc-debian12`. Here nothing can be pulled, so the same `runtime` stage is
//! built with both inputs replaced: `--build-context binaries=DIR` (the workspace's own binaries,
//! debug info stripped) and `RUNTIME_BASE` = a base assembled from the Debian 12 packages that
//! distroless `cc-debian12` holds (glibc and libgcc, whose NSS resolves host names; the CA bundle;
//! `/etc/passwd` with nonroot 65532). podman skips the stages the target does not need, so no
//! Rust toolchain image is involved.
//!
//! podman keeps its storage in the cache (vfs driver: no mounts left behind) and reads a
//! configuration of its own (`CONTAINERS_CONF`), so the host's `/etc/containers` and
//! `/var/lib/containers` are not touched. The result is saved as a docker-archive that
//! `ctr images import` reads; `--import` imports it into the running test environment's node.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aws_lc_rs::digest::{SHA256, digest};

use crate::peers::{cache_dir, workspace_root};

/// The image's reference in the node.
pub const REFERENCE: &str = "localhost/seal:dev";
/// The stand-in app the charts' workloads run in the tests (`xtask/go/workload`).
pub const WORKLOAD_REFERENCE: &str = "localhost/seal-workload:dev";
/// The Debian packages the runtime base holds (what distroless `cc-debian12` holds that the
/// binaries use: `ldd` names libc, libm, libgcc_s and the loader).
const BASE_PACKAGES: &[&str] = &["libc6", "libgcc-s1", "netbase", "tzdata"];
/// The binaries of the image.
const BINARIES: &[&str] = &["seal", "seal-controller", "seal-agent"];
/// Host packages the build needs: podman, and binutils for `objcopy`.
const PACKAGES: &[&str] = &["podman", "binutils"];

/// A local image: its reference and the docker-archive `ctr images import` reads.
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
}

/// `cargo xtask image ...`.
pub fn command(args: &[String]) -> Result<()> {
    let mut binaries = workspace_root().join("target/debug");
    let mut import = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--binaries" => {
                binaries = PathBuf::from(rest.next().context("--binaries needs a directory")?);
            }
            "--import" => import = true,
            other => bail!(
                "unknown argument {other}\nusage: cargo xtask image [--binaries DIR] [--import]"
            ),
        }
    }
    let images = [build(&binaries)?, build_workload()?];
    if import {
        let env = crate::testenv::Environment::current()
            .context("no test environment is running; `cargo xtask testenv up` first")?;
        for image in &images {
            env.import_image(&image.archive)?;
        }
    }
    for image in &images {
        println!("{} {}", image.reference, image.archive.display());
    }
    Ok(())
}

/// Builds the image from the binaries in `binaries` (the Dockerfile's `runtime` stage).
pub fn build(binaries: &Path) -> Result<Image> {
    crate::debian::ensure_packages(PACKAGES)?;
    let podman = Podman::new()?;
    let base = podman.runtime_base()?;
    let work = tempfile::tempdir()?;
    let stage = work.path().join("binaries");
    std::fs::create_dir_all(&stage)?;
    for name in BINARIES {
        let from = binaries.join(name);
        if !from.is_file() {
            bail!(
                "{} is missing: build the binaries first (cargo build --workspace --bins)",
                from.display()
            );
        }
        // Debug information is most of a debug build's size and no use in a pod.
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&from)
            .arg(stage.join(name)))?;
    }
    let context = work.path().join("context");
    std::fs::create_dir_all(&context)?;
    eprintln!("==> building {REFERENCE} (the Dockerfile's runtime stage on {base})");
    podman.run(&[
        "build",
        "--pull=never",
        "--target",
        "runtime",
        "--build-context",
        &format!("binaries={}", stage.display()),
        "--build-arg",
        &format!("RUNTIME_BASE={base}"),
        "--tag",
        REFERENCE,
        "--file",
        &workspace_root().join("Dockerfile").display().to_string(),
        &context.display().to_string(),
    ])?;
    let archive = podman.dir.join("seal-dev.tar");
    podman.save(REFERENCE, &archive)?;
    Ok(Image {
        reference: REFERENCE.to_owned(),
        archive,
    })
}

/// The stand-in app (`xtask/go/workload`): one static Go binary on an empty base, user 10001,
/// the user the ml-api and ml-batch charts run as. It reports digests of what it received, never
/// the values.
pub fn build_workload() -> Result<Image> {
    crate::debian::ensure_packages(PACKAGES)?;
    let podman = Podman::new()?;
    let work = tempfile::tempdir()?;
    run(Command::new("go")
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(work.path().join("workload"))
        .arg(".")
        .current_dir(workspace_root().join("xtask/go/workload"))
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0"))
    .context("building the workload needs Go 1.26")?;
    std::fs::write(
        work.path().join("Containerfile"),
        "FROM scratch\nCOPY workload /workload\nUSER 10001:10001\nENTRYPOINT [\"/workload\"]\nCMD [\"serve\"]\n",
    )?;
    eprintln!("==> building {WORKLOAD_REFERENCE}");
    let context = work.path().display().to_string();
    podman.run(&[
        "build",
        "--pull=never",
        "--tag",
        WORKLOAD_REFERENCE,
        &context,
    ])?;
    let archive = podman.dir.join("seal-workload-dev.tar");
    podman.save(WORKLOAD_REFERENCE, &archive)?;
    Ok(Image {
        reference: WORKLOAD_REFERENCE.to_owned(),
        archive,
    })
}

/// podman with its storage and configuration in the cache.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new() -> Result<Self> {
        let dir = cache_dir()?.join("podman");
        std::fs::create_dir_all(dir.join("storage"))?;
        // This host's root may not raise rlimits to podman's defaults (pods.md).
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n",
        )?;
        Ok(Self { dir })
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"]);
        command
    }

    /// Saves `reference` as a docker-archive at `archive` (replaced only once complete).
    fn save(&self, reference: &str, archive: &Path) -> Result<()> {
        let partial = archive.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        self.run(&[
            "save",
            "--format",
            "docker-archive",
            "--output",
            &partial.display().to_string(),
            reference,
        ])?;
        std::fs::rename(&partial, archive)?;
        Ok(())
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command()
            .args(args)
            .output()
            .context("cannot run podman")?;
        if !output.status.success() {
            bail!(
                "podman {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The runtime base, assembled from Debian 12 packages unless podman already has it.
    fn runtime_base(&self) -> Result<String> {
        let versions = BASE_PACKAGES
            .iter()
            .map(|p| Ok(format!("{p}={}", candidate_version(p)?)))
            .collect::<Result<Vec<_>>>()?;
        let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt")
            .context("the base takes this machine's CA bundle: install ca-certificates")?;
        let key = base_key(&versions, &bundle);
        let reference = format!("localhost/seal-runtime-base:debian12-{key}");
        if self.run(&["image", "exists", &reference]).is_ok() {
            return Ok(reference);
        }
        eprintln!(
            "==> assembling the runtime base {reference} from {}",
            versions.join(" ")
        );
        let work = tempfile::tempdir()?;
        let debs = work.path().join("debs");
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(&debs)?;
        std::fs::create_dir_all(&rootfs)?;
        run(Command::new("apt-get")
            .arg("download")
            .args(&versions)
            .current_dir(&debs))
        .context("downloading the base's Debian packages (apt-get update may be needed)")?;
        for deb in std::fs::read_dir(&debs)?.flatten() {
            run(Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.path())
                .arg(&rootfs))?;
        }
        for unused in [
            "usr/share/doc",
            "usr/share/man",
            "usr/share/lintian",
            "usr/share/info",
        ] {
            let _ = std::fs::remove_dir_all(rootfs.join(unused));
        }
        write_base_files(&rootfs, &bundle)?;
        let tar = work.path().join("rootfs.tar");
        run(Command::new("tar")
            .args(["--numeric-owner", "--mtime=@0", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg("."))?;
        self.run(&[
            "import",
            "--change",
            "USER=65532:65532",
            &tar.display().to_string(),
            &reference,
        ])?;
        Ok(reference)
    }
}

/// The files distroless adds to the packages: users, groups, NSS order, the CA bundle, `/tmp`
/// and the nonroot user's home.
fn write_base_files(rootfs: &Path, bundle: &[u8]) -> Result<()> {
    std::fs::create_dir_all(rootfs.join("etc/ssl/certs"))?;
    std::fs::write(rootfs.join("etc/ssl/certs/ca-certificates.crt"), bundle)?;
    std::fs::write(rootfs.join("etc/passwd"), PASSWD)?;
    std::fs::write(rootfs.join("etc/group"), GROUP)?;
    std::fs::write(rootfs.join("etc/nsswitch.conf"), NSSWITCH)?;
    for (dir, mode, owner) in [
        ("tmp", 0o1777, 0),
        ("home/nonroot", 0o700, 65532),
        ("root", 0o700, 0),
    ] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::os::unix::fs::chown(&path, Some(owner), Some(owner))?;
    }
    Ok(())
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";
/// glibc 2.34+ has the files and dns NSS modules built in: no other library is needed.
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\n\
                        protocols: files\nservices: files\n";

/// The version `apt-get download` would fetch.
fn candidate_version(package: &str) -> Result<String> {
    let policy = run(Command::new("apt-cache").args(["policy", package]))?;
    parse_candidate(&policy)
        .with_context(|| format!("apt knows no candidate for {package}: run apt-get update"))
}

/// The `Candidate:` line of `apt-cache policy`.
fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_owned)
}

/// What the base is made of, as a short key: the packages' versions and the CA bundle.
fn base_key(versions: &[String], bundle: &[u8]) -> String {
    let mut input = versions.join("\n").into_bytes();
    input.extend_from_slice(PASSWD.as_bytes());
    input.extend_from_slice(NSSWITCH.as_bytes());
    input.extend_from_slice(bundle);
    hex(&digest(&SHA256, &input).as_ref()[..6])
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Runs `command`: its stdout, or an error naming it with its stderr.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_candidate_comes_from_apt_cache_policy() {
        let policy = "libc6:\n  Installed: 2.36-9+deb12u14\n  Candidate: 2.36-9+deb12u14\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("2.36-9+deb12u14"));
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn the_base_is_rebuilt_when_a_package_or_the_bundle_changes() {
        let a = base_key(&["libc6=1".into()], b"ca");
        assert_eq!(a, base_key(&["libc6=1".into()], b"ca"));
        assert_ne!(a, base_key(&["libc6=2".into()], b"ca"));
        assert_ne!(a, base_key(&["libc6=1".into()], b"cb"));
    }

    #[test]
    fn the_image_user_is_nonroot_65532() {
        assert!(PASSWD.contains("nonroot:x:65532:65532:"));
        assert!(NSSWITCH.contains("hosts: files dns"));
    }
}
