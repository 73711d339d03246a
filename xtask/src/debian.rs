//! Debian packages the project's automation needs (the node's container runtime, the image
//! builder), installed the way the README promises: by the project's own commands, on a fresh
//! machine, without a manual step. Only what is missing is installed, after one `apt-get update`.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Installs whichever of `packages` are not installed yet.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the Debian packages {} are missing and installing them needs root: \
             `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("==> installing Debian packages: {}", missing.join(" "));
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    if let Some(package) = missing.iter().find(|p| !installed(p)) {
        bail!("apt-get reported success but {package} is not installed");
    }
    Ok(())
}

/// Whether dpkg has `package` installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| {
            o.status.success() && is_installed_status(&String::from_utf8_lossy(&o.stdout))
        })
}

/// dpkg's status field of an installed package.
fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed with {status}", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fully_installed_package_counts() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("install ok unpacked"));
        assert!(!is_installed_status(""));
    }
}
