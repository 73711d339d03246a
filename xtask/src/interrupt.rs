//! Ctrl-C, SIGTERM and SIGHUP while servers are up. Once [`install`] has run, these signals no
//! longer kill xtask: they are recorded, so the test environment can still be taken down (and the
//! command running against it stopped) before xtask exits with `128 + signal`.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Starts recording the signals; idempotent.
pub fn install() -> Result<()> {
    if RECEIVED.get().is_some() {
        return Ok(());
    }
    let received = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let value = usize::try_from(signal).expect("invariant: signal numbers are positive");
        signal_hook::flag::register_usize(signal, Arc::clone(&received), value)
            .with_context(|| format!("cannot handle signal {signal}"))?;
    }
    let _ = RECEIVED.set(received);
    Ok(())
}

/// The last signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    let value = RECEIVED.get()?.load(Ordering::SeqCst);
    (value != 0).then(|| i32::try_from(value).expect("invariant: a signal number fits an i32"))
}

/// The shell's exit code for a process stopped by `signal`.
pub fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}
