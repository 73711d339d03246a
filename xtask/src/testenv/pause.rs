//! The node's sandbox ("pause") image, made here: nothing can be pulled on this machine, and
//! containerd needs one local image to hold every pod's namespaces. A static C program that sleeps
//! until SIGINT or SIGTERM and reaps orphaned children (the pod's PID 1 when the pod shares its
//! process namespace), packed as a one-layer docker-archive that `ctr images import` reads.
//! Built once into the cache, keyed by the source.

use std::process::Command;

use anyhow::{Context, Result};
use aws_lc_rs::digest::{SHA256, digest};

use crate::image::{Image, hex, run};
use crate::peers::cache_dir;

const SOURCE: &str = r"#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) { (void)signal; _exit(0); }

static void reap(int signal) {
  (void)signal;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction on_stop = {.sa_handler = stop};
  struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &on_stop, NULL);
  sigaction(SIGTERM, &on_stop, NULL);
  sigaction(SIGCHLD, &on_child, NULL);
  for (;;) pause();
  return 1;
}
";

/// The pause image, built unless the cache has it.
pub fn pause() -> Result<Image> {
    let key = hex(&digest(&SHA256, SOURCE.as_bytes()).as_ref()[..6]);
    let reference = format!("localhost/seal-pause:{key}");
    let dir = cache_dir()?.join(format!("pause-{key}"));
    let archive = dir.join("pause.tar");
    if archive.is_file() {
        return Ok(Image { reference, archive });
    }
    eprintln!("==> building the pause image {reference}");
    let work = tempfile::tempdir()?;
    let source = work.path().join("pause.c");
    std::fs::write(&source, SOURCE)?;
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    run(Command::new("gcc")
        .args(["-Os", "-static", "-s", "-o"])
        .arg(rootfs.join("pause"))
        .arg(&source))
    .context("building the pause program needs gcc and glibc's static library (libc6-dev)")?;
    let layer = work.path().join("layer.tar");
    run(Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-cf",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("pause"))?;
    let diff_id = format!(
        "sha256:{}",
        hex(digest(&SHA256, &std::fs::read(&layer)?).as_ref())
    );
    std::fs::write(work.path().join("config.json"), config(&diff_id))?;
    std::fs::write(work.path().join("manifest.json"), manifest(&reference))?;
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join("pause.tar.partial");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&partial)
        .arg("-C")
        .arg(work.path())
        .args(["manifest.json", "config.json", "layer.tar"]))?;
    std::fs::rename(&partial, &archive)?;
    Ok(Image { reference, archive })
}

/// The image configuration: `/pause` as the entrypoint, run as nobody.
fn config(diff_id: &str) -> String {
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/pause"],"User":"65535:65535"}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    )
}

/// The docker-archive manifest naming the image.
fn manifest(reference: &str) -> String {
    format!(r#"[{{"Config":"config.json","RepoTags":["{reference}"],"Layers":["layer.tar"]}}]"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_names_the_image_and_its_one_layer() {
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest("localhost/seal-pause:ab")).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "localhost/seal-pause:ab");
        assert_eq!(manifest[0]["Layers"][0], "layer.tar");
        let config: serde_json::Value = serde_json::from_str(&config("sha256:00")).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], "sha256:00");
        assert_eq!(config["config"]["Entrypoint"][0], "/pause");
    }
}
