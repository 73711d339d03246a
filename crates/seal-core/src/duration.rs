//! The one duration grammar of seal: Go's `time.ParseDuration`, as Kubernetes users write
//! durations (`1h`, `15m`, `1h30m`, `90s`, `1.5h`, `500ms`, `0s`), plus `d` for days (`30d`,
//! `1d12h`) in every flag and configuration field ([`parse_duration`]). Fields of Kubernetes
//! objects take Go's grammar alone ([`parse_kubernetes_duration`]): the API server checks them
//! with CEL's `duration()` and the schema's [`DURATION_PATTERN`], which know no days, and ESO reads
//! the same fields as a Go `metav1.Duration`.
//!
//! Negative durations are refused: ESO treats them as "never refresh" by accident rather than by
//! contract, so `0s` is the one way to say "fetch once".

use std::time::Duration;

/// The CRD schema pattern for a duration string: what [`parse_kubernetes_duration`] accepts, so
/// the API server refuses what the controller could not read (RE2 syntax, which the API server
/// uses).
pub const DURATION_PATTERN: &str =
    r"^\+?(0|((([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(ns|us|µs|μs|ms|s|m|h))+)$";

/// Why a duration string does not parse. Durations are configuration, never secret, so messages
/// quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration (write e.g. 1h, 15m or 0s)")]
    Empty,
    /// A leading `-`.
    #[error("{0:?}: negative durations are not allowed (0s means no refresh)")]
    Negative(String),
    /// A number without a unit, or no number where one belongs.
    #[error("{0:?}: not a duration (write a number and a unit, e.g. 1h, 15m, 1h30m, 500ms, 0s)")]
    Syntax(String),
    /// A unit other than ns, us, µs, ms, s, m, h, d.
    #[error("{input:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h or d)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// Shorter than the field allows (other than zero).
    #[error("{input:?}: too short (0s, or at least {minimum})")]
    TooShort {
        /// The whole input.
        input: String,
        /// The shortest allowed, as written in the docs.
        minimum: &'static str,
    },
    /// `d` in a field of a Kubernetes object, which the API server reads as Go does.
    #[error("{0:?}: a Kubernetes field takes no days (write hours, e.g. 24h)")]
    Days(String),
    /// More than Go's limit of about 2,562,047 hours.
    #[error("{0:?}: too long (at most 2562047h)")]
    Overflow(String),
}

/// Parses a Go-style duration: an optional `+`, then one or more `<number><unit>` pairs where the
/// number may have a decimal fraction and the unit is `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`
/// or `d` (24 hours); a bare `0` is allowed too.
///
/// Guarantees: the same strings as Go's `time.ParseDuration` for non-negative durations, plus the
/// unit `d`, and the same limit (about 292 years, `i64::MAX` nanoseconds), rounding fractions down
/// to the nanosecond.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    parse(input, true)
}

/// [`parse_duration`] without `d`: Go's `time.ParseDuration` exactly (non-negative), for fields of
/// Kubernetes objects, which the API server and ESO read as Go does.
pub fn parse_kubernetes_duration(input: &str) -> Result<Duration, DurationError> {
    parse(input, false)
}

fn parse(input: &str, days: bool) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(input.to_owned());
    let overflow = || DurationError::Overflow(input.to_owned());
    let mut rest = match input.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => return Err(DurationError::Negative(input.to_owned())),
        Some(b'+') => &input[1..],
        Some(_) => input,
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    // Nanoseconds as u128, so that a sum of in-range parts never overflows before the check.
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after) = rest.split_at(int_end);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(after) => {
                let end = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(end)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(syntax());
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" if days => 86_400 * 1_000_000_000,
            "d" => return Err(DurationError::Days(input.to_owned())),
            "" => return Err(syntax()),
            other => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(overflow)?;
        // The fraction contributes scale * 0.frac, truncated; digits past 19 cannot matter.
        let mut denominator: u128 = 1;
        let mut numerator: u128 = 0;
        for digit in frac_digits.bytes().take(19) {
            numerator = numerator * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        part += numerator * scale / denominator;
        total = total.checked_add(part).ok_or_else(overflow)?;
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way Go prints one (`1h0m0s`, `15m0s`, `1.5s`, `0s`), for messages and
/// for writing a default back. Whole seconds and above only keep their exact form; sub-second
/// parts are printed as a decimal fraction of a second.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "0s".into();
    }
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out = format!("{hours}h");
    }
    if hours > 0 || minutes > 0 {
        out = format!("{out}{minutes}m");
    }
    if nanos == 0 {
        format!("{out}{seconds}s")
    } else {
        let fraction = format!("{nanos:09}");
        format!("{out}{seconds}.{}s", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings_parse_to_their_length() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("+5s", 5_000_000_000),
            ("1h", 3_600_000_000_000),
            ("15m", 900_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1h0m0s", 3_600_000_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("500ms", 500_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("1m1.000000001s", 61_000_000_001),
            ("2562047h", 2_562_047 * 3_600_000_000_000),
            ("30d", 30 * 86_400_000_000_000),
            ("1d12h", 36 * 3_600_000_000_000),
            ("0.5d", 12 * 3_600_000_000_000),
        ];
        for (input, nanos) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_nanos(nanos)),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-1h"),
            Err(DurationError::Negative(_))
        ));
        for bad in ["1", "h", "1h5", ".s", "+", "1..5s", " 1h", "1h "] {
            assert!(
                matches!(
                    parse_duration(bad),
                    Err(DurationError::Syntax(_) | DurationError::UnknownUnit { .. })
                ),
                "{bad}: {:?}",
                parse_duration(bad)
            );
        }
        assert_eq!(
            parse_duration("3w").unwrap_err().to_string(),
            r#""3w": unknown unit "w" (use ns, us, ms, s, m, h or d)"#
        );
        assert!(matches!(
            parse_duration("2562048h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn kubernetes_fields_take_go_durations_without_days() {
        assert_eq!(
            parse_kubernetes_duration("1h30m"),
            Ok(Duration::from_secs(5_400))
        );
        assert_eq!(
            parse_kubernetes_duration("1d").unwrap_err().to_string(),
            r#""1d": a Kubernetes field takes no days (write hours, e.g. 24h)"#
        );
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_secs(5_430))),
            Ok(Duration::from_secs(5_430))
        );
    }
}
