//! What a controller costs when it comes back: a restart (the process stopped and started again
//! on the same objects) and, for seal-controller, a failover (the leader stops and a standby
//! replica that was already running takes the Lease over).
//!
//! Measured from the moment the old process is told to stop:
//! - the wall time until every SealedSecret is known up to date again: seal's
//!   `seal_controller_sealedsecrets_settled` gauge reaching the object count (distinct objects),
//!   Bitnami's `sealed_secrets_controller_unseal_requests_total` counter reaching it (Bitnami
//!   unseals every object once when it starts; an object unsealed twice would make this early,
//!   which only flatters Bitnami);
//! - the RSA decryptions (seal exports them; Bitnami does not);
//! - the CPU seconds of the process doing the work, counted until it is idle again (under 0.05
//!   CPU-s per second), so work left after the last object is counted too.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::common::{cpu_seconds, http_get};
use crate::contenders::{Contender, Controller};

/// What coming back cost.
pub struct Recovery {
    /// From the stop of the old process until every object was up to date.
    pub to_ready: Duration,
    /// From the stop of the old leader until the new one led (a failover).
    pub to_lead: Option<Duration>,
    /// RSA decryptions the new process made (seal only).
    pub rsa: Option<f64>,
    /// CPU seconds the new process spent, from the stop until idle.
    pub cpu: f64,
}

/// The metrics text of the controller on `port`.
pub fn scrape(port: u16) -> Option<String> {
    let answer = http_get(port, "/metrics")?;
    Some(answer.split_once("\r\n\r\n")?.1.to_owned())
}

/// The value of the unlabelled metric `name` in `text`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Waits until `name` on `port` is at least `at_least`; returns when it got there.
pub async fn wait_for_metric(
    port: u16,
    name: &str,
    at_least: f64,
    limit: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = scrape(port).and_then(|text| metric(&text, name))
            && value >= at_least
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{name} did not reach {at_least} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until process `pid` spends less than 0.05 CPU-s in a second; returns its CPU seconds.
pub async fn wait_idle(pid: u32) -> Result<f64> {
    let mut last = cpu_seconds(pid)?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_seconds(pid)?;
        if now - last < 0.05 {
            return Ok(now);
        }
        last = now;
    }
}

/// Sends SIGTERM to `controller` and waits for it to exit.
pub fn stop(controller: &mut Controller) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(controller.running.child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while controller.running.child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            controller.running.child.kill()?;
            bail!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// How many objects are up to date according to `contender`'s own metric.
fn progress_metric(contender: Contender) -> &'static str {
    match contender {
        Contender::Seal => "seal_controller_sealedsecrets_settled",
        Contender::Bitnami => contender.unseal_counter(),
    }
}

/// Stops `old` and starts `start()` in its place; measures until `objects` are up to date.
pub async fn restart<F, Fut>(
    contender: Contender,
    mut old: Controller,
    objects: usize,
    start: F,
) -> Result<(Recovery, Controller)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Controller>>,
{
    let stopped_at = Instant::now();
    stop(&mut old)?;
    drop(old);
    let new = start().await?;
    #[allow(clippy::cast_precision_loss)]
    let ready_at = wait_for_metric(
        new.metrics_port,
        progress_metric(contender),
        objects as f64,
        Duration::from_secs(3600),
    )
    .await?;
    let cpu = wait_idle(new.running.child.id()).await?;
    let rsa = match contender {
        Contender::Seal => scrape(new.metrics_port)
            .and_then(|text| metric(&text, "seal_controller_rsa_decryptions_total")),
        Contender::Bitnami => None,
    };
    Ok((
        Recovery {
            to_ready: ready_at - stopped_at,
            to_lead: None,
            rsa,
            cpu,
        },
        new,
    ))
}

/// Stops the leader `old` while `standby` (started, ready, not leading) waits; measures until
/// the standby leads and until it has `objects` up to date.
pub async fn failover(
    mut old: Controller,
    standby: &Controller,
    objects: usize,
) -> Result<Recovery> {
    let pid = standby.running.child.id();
    let cpu_before = cpu_seconds(pid)?;
    let rsa_before = scrape(standby.metrics_port)
        .and_then(|text| metric(&text, "seal_controller_rsa_decryptions_total"))
        .unwrap_or_default();
    let stopped_at = Instant::now();
    stop(&mut old)?;
    drop(old);
    let led_at = wait_for_metric(
        standby.metrics_port,
        "seal_controller_leader",
        1.0,
        Duration::from_secs(120),
    )
    .await?;
    #[allow(clippy::cast_precision_loss)]
    let ready_at = wait_for_metric(
        standby.metrics_port,
        "seal_controller_sealedsecrets_settled",
        objects as f64,
        Duration::from_secs(3600),
    )
    .await?;
    let cpu = wait_idle(pid).await? - cpu_before;
    let rsa = scrape(standby.metrics_port)
        .and_then(|text| metric(&text, "seal_controller_rsa_decryptions_total"))
        .map(|after| after - rsa_before);
    Ok(Recovery {
        to_ready: ready_at - stopped_at,
        to_lead: Some(led_at - stopped_at),
        rsa,
        cpu,
    })
}
