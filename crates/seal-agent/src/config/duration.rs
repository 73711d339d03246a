//! Duration fields (`timeout`, `refresh.interval`, `exec.stopTimeout`, `server.ttl`, ...): one
//! grammar for all of them, seal's own (Go's, plus days: `500ms`, `1h2m3s`, `1d12h`), and one
//! error shape naming the field.

use std::time::Duration;

use super::{ConfigError, error};

/// The duration `text` gives the field `field`, or `default` when the field is absent.
pub(super) fn duration_field(
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        // The one grammar of every seal duration: Go's, plus days.
        Some(text) => seal_core::parse_duration(text).map_err(|d| error(field, d.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_fields_take_the_one_duration_grammar() {
        let default = Duration::from_secs(1);
        let field = |text| duration_field("refresh.interval", Some(text), default);
        assert_eq!(field("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(field("1h2m3s").unwrap(), Duration::from_secs(3723));
        assert_eq!(field("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(duration_field("x", None, default).unwrap(), default);
        for bad in ["5", "m", ""] {
            let message = field(bad).unwrap_err().to_string();
            assert!(message.contains("refresh.interval"), "{message}");
        }
    }
}
