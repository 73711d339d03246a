//! The query string: `secretId`, `versionStage`, `versionId` and `refreshNow`, each at most
//! once (others are ignored, as the AWS agent does), percent-decoded with `+` as a space; and the
//! percent-decoding of path segments (`/v1/SECRET_ID`, `/v1/secrets/NAME`).

/// The query parameters the endpoint reads; others are ignored, as the AWS agent does.
#[derive(Default, Debug)]
pub(super) struct Query {
    pub(super) secret_id: Option<String>,
    pub(super) version_stage: Option<String>,
    pub(super) version_id: Option<String>,
    pub(super) refresh_now: bool,
}

impl Query {
    /// The parameters of `query`, the text after `?`. Errors: a parameter given twice, a
    /// `refreshNow` that is not `true` or `false`.
    pub(super) fn parse(query: &str) -> Result<Self, String> {
        let mut out = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value, true);
            let slot = match name {
                "secretId" => &mut out.secret_id,
                "versionStage" => &mut out.version_stage,
                "versionId" => &mut out.version_id,
                "refreshNow" => {
                    out.refresh_now = match value.as_str() {
                        "true" => true,
                        "false" | "" => false,
                        _ => return Err("refreshNow must be true or false".into()),
                    };
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("{name} is given twice"));
            }
            *slot = Some(value);
        }
        Ok(out)
    }
}

/// `%XX` escapes decoded; an invalid escape is kept as written.
pub(super) fn percent_decode(text: &str) -> String {
    decode(text, false)
}

/// `%XX` escapes decoded, and `+` as a space when `plus_is_space` (a query value); an invalid
/// escape is kept as written, invalid UTF-8 replaced.
fn decode(text: &str, plus_is_space: bool) -> String {
    let escaped = text.contains('%') || (plus_is_space && text.contains('+'));
    if !escaped {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if plus_is_space && bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(high * 16 + low).expect("invariant: two hex digits fit a byte"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_reject_repeats() {
        let q =
            Query::parse("secretId=ml%2Fdb&versionStage=AWSPREVIOUS&refreshNow=true&x=1").unwrap();
        assert_eq!(q.secret_id.as_deref(), Some("ml/db"));
        assert_eq!(q.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert!(q.refresh_now);
        assert!(Query::parse("secretId=a&secretId=b").is_err());
        assert!(Query::parse("refreshNow=yes").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
        assert_eq!(
            Query::parse("secretId=a+b%2Bc")
                .unwrap()
                .secret_id
                .as_deref(),
            Some("a b+c")
        );
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
