//! One object's failure stays that object's: a reconcile that panics fails that reconcile, never
//! the process.
//!
//! kube-runtime polls every reconcile future inside the controller's stream, so a panic in one
//! (a bug that one manifest can reach) would unwind through the stream into `main` and stop the
//! replica, and the next replica that picks the object up would stop the same way: a crash loop
//! that every tenant's objects share. [`contain`] catches the unwind at the reconcile boundary and
//! turns it into the reconciler's own error, so the object is retried with backoff like any other
//! failure and the other objects go on. The panic message still reaches the log through the panic
//! hook; reconcilers never put values into panic messages.
//!
//! Caveat: a panic inside a `spawn_blocking` task is already a `JoinError` and never reaches here.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;

/// A reconcile that panicked.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the reconcile panicked (a bug: please report it); retrying later")]
pub struct Panicked;

/// Runs `reconcile`; a panic becomes `E::from(Panicked)`.
///
/// Unwind safety: a reconcile shares only `Arc`s of caches guarded by mutexes that recover from
/// poisoning (`PoisonError::into_inner`), and every cache entry is rebuilt from the API server on
/// the next reconcile, so state seen after a caught panic is at worst stale, never unsound.
pub async fn contain<T, E>(reconcile: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<Panicked>,
{
    AssertUnwindSafe(reconcile)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(E::from(Panicked)))
}

/// Runs `reconcile`; on a panic, first runs `report` (which says so in the object's status, so
/// that its owner sees the failure), then returns `E::from(Panicked)`. A report that fails is
/// logged and the panic's error still returned.
pub async fn contain_and_report<T, E, R, F>(
    reconcile: impl Future<Output = Result<T, E>>,
    report: R,
) -> Result<T, E>
where
    E: From<Panicked>,
    R: FnOnce(Panicked) -> F,
    F: Future<Output = Result<bool, String>>,
{
    // Boxed: a reconcile's future is large, and it is held across the report.
    let Ok(result) = Box::pin(AssertUnwindSafe(reconcile).catch_unwind()).await else {
        if let Err(error) = report(Panicked).await {
            tracing::warn!(%error, "cannot say in the status that the reconcile panicked");
        }
        return Err(E::from(Panicked));
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Panicked,
    }

    impl From<Panicked> for Failure {
        fn from(_: Panicked) -> Self {
            Failure::Panicked
        }
    }

    #[tokio::test]
    async fn a_panic_is_reported_once_and_a_success_never() {
        let reported = std::sync::atomic::AtomicUsize::new(0);
        let report = |_| async {
            reported.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(true)
        };
        let divisor = std::hint::black_box(0u64);
        let outcome: Result<u64, Failure> =
            contain_and_report(async move { Ok(10 % divisor) }, report).await;
        assert_eq!(outcome, Err(Failure::Panicked));
        let fine: Result<u64, Failure> = contain_and_report(async { Ok(1) }, report).await;
        assert_eq!(fine, Ok(1));
        assert_eq!(reported.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_an_error_not_an_unwind() {
        let divisor = std::hint::black_box(0u64);
        let outcome: Result<u64, Failure> = contain(async move { Ok(10 % divisor) }).await;
        assert_eq!(outcome, Err(Failure::Panicked));
        let fine: Result<u64, Failure> = contain(async { Ok(1) }).await;
        assert_eq!(fine, Ok(1));
    }
}
