//! The `refresh` section: how often `run` and `exec` fetch again. Each wait is the interval
//! spread by a random jitter, so that many pods started together do not call the providers in
//! step. The interval is at least 100ms and the jitter at most 0.5.

use std::time::Duration;

use super::duration::duration_field;
use super::raw::RawRefresh;
use super::{ConfigError, error};

/// The refresh schedule.
pub struct Refresh {
    /// The mean interval.
    pub interval: Duration,
    /// Each wait is `interval * (1 ± jitter)`, jitter in [0, 0.5].
    pub jitter: f64,
}

impl Refresh {
    /// The next wait: the interval spread by the jitter, so that many pods do not call the
    /// providers in step.
    pub fn next_wait(&self) -> Duration {
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        self.interval.mul_f64(1.0 + spread)
    }
}

/// The `refresh` section validated (default: every 5 minutes ± 10%).
pub(super) fn refresh(raw: Option<&RawRefresh>) -> Result<Refresh, ConfigError> {
    Ok(match raw {
        None => Refresh {
            interval: Duration::from_secs(300),
            jitter: 0.1,
        },
        Some(r) => {
            let interval = duration_field(
                "refresh.interval",
                r.interval.as_deref(),
                Duration::from_secs(300),
            )?;
            if interval < Duration::from_millis(100) {
                return Err(error("refresh.interval", "must be at least 100ms"));
            }
            let jitter = r.jitter.unwrap_or(0.1);
            if !(0.0..=0.5).contains(&jitter) {
                return Err(error("refresh.jitter", "must be between 0 and 0.5"));
            }
            Refresh { interval, jitter }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bounds() {
        let refresh = Refresh {
            interval: Duration::from_secs(100),
            jitter: 0.1,
        };
        for _ in 0..1000 {
            let wait = refresh.next_wait();
            assert!(wait >= Duration::from_secs(90) && wait <= Duration::from_secs(110));
        }
    }
}
