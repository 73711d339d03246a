//! Proof that the test environment is real: each server does what the later integration tests
//! (controller, external sync, CI commands, sidecar) rely on, through the same Rust clients.

mod aws;
mod kubernetes;
mod openbao;

pub(crate) use seal_testenv::testenv;

/// Polls `check` every 200 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    limit: std::time::Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
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
