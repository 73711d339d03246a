//! The request target as the AWS Secrets Manager Agent 2.1.0 reads it, so that a request it
//! refuses is refused here with the same status and words, and one it answers names the same
//! secret:
//!
//! - the target is parsed as a URL (`http://localhost` + target, with the `url` crate, as the
//!   agent does): `.` and `..` path segments are resolved, query pairs are form-decoded (`+` is a
//!   space, `%XX` escapes), and a repeated parameter keeps its last value;
//! - `/secretsmanager/get` takes `secretId` (required, non-empty), `versionId`, `versionStage`,
//!   `refreshNow` (`true`, `1`, `false` or `0`, any case) and `roleArn`
//!   (`arn:PARTITION:iam::ACCOUNT:role/NAME`); any other parameter is refused;
//! - `/v1/SECRET_ID` takes the id from the path as written (not percent-decoded: `%2F` stays
//!   three characters, as in the agent) and the same parameters but `secretId`.
//!
//! Every refusal is a 400 whose plain-text body is the agent's own message.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// The path prefix of the agent's second form, `/v1/SECRET_ID`.
pub(super) const PATH_PREFIX: &str = "/v1/";

/// A GetSecretValue request, as either form of the agent's routes gives it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct AwsQuery {
    pub(super) secret_id: String,
    pub(super) version_id: Option<String>,
    pub(super) version_stage: Option<String>,
    pub(super) refresh_now: bool,
    pub(super) role_arn: Option<String>,
}

/// Which form a request used: the secret id in the query, or in the path after a prefix.
#[derive(Clone, Copy)]
pub(super) enum Form<'a> {
    /// `/secretsmanager/get?secretId=ID`.
    Query,
    /// `PREFIX` + ID, the id as the path spells it.
    Path(&'a str),
}

impl AwsQuery {
    /// The request `target` (path and query, as on the request line) in `form`. Errors: the
    /// agent's 400 message.
    pub(super) fn parse(target: &str, form: Form<'_>) -> Result<Self, String> {
        let url =
            url::Url::parse(&format!("http://localhost{target}")).map_err(|e| e.to_string())?;
        let mut query = AwsQuery::default();
        if let Form::Path(prefix) = form {
            match url.path().get(prefix.len()..) {
                Some(id) if !id.is_empty() => id.clone_into(&mut query.secret_id),
                _ => return Err("missing secret ID".into()),
            }
        }
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "secretId" if matches!(form, Form::Query) => query.secret_id = value.into_owned(),
                "versionId" => query.version_id = Some(value.into_owned()),
                "versionStage" => query.version_stage = Some(value.into_owned()),
                "refreshNow" => query.refresh_now = refresh_now(&value)?,
                "roleArn" => query.role_arn = Some(value.into_owned()),
                other => return Err(format!("unknown parameter: {other}")),
            }
        }
        if query.secret_id.is_empty() {
            return Err("missing parameter secretId".into());
        }
        if let Some(arn) = &query.role_arn
            && !ROLE_ARN.is_match(arn)
        {
            return Err(
                "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>"
                    .into(),
            );
        }
        Ok(query)
    }
}

/// The role ARNs the agent accepts in `roleArn`.
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:[\w-]+:iam::\d{12}:role/[\w+=,.@/-]+$")
        .expect("invariant: a constant pattern compiles")
});

/// `refreshNow`'s value: `true`/`1` or `false`/`0`, in any case.
fn refresh_now(value: &str) -> Result<bool, String> {
    match value.to_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("invalid refreshNow value".into()),
    }
}

/// A path segment with its `%XX` escapes decoded (invalid UTF-8 replaced), for seal's own
/// `/v1/secrets/NAME`.
pub(super) fn percent_decode(text: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Result<AwsQuery, String> {
        AwsQuery::parse(target, Form::Query)
    }

    fn path(target: &str) -> Result<AwsQuery, String> {
        AwsQuery::parse(target, Form::Path(PATH_PREFIX))
    }

    #[test]
    fn the_query_form_decodes_and_keeps_the_last_of_a_repeated_parameter() {
        let q =
            get("/secretsmanager/get?secretId=ml%2Fdb&versionStage=AWSPREVIOUS&refreshNow=TRUE")
                .unwrap();
        assert_eq!(
            q,
            AwsQuery {
                secret_id: "ml/db".into(),
                version_stage: Some("AWSPREVIOUS".into()),
                refresh_now: true,
                ..AwsQuery::default()
            }
        );
        assert_eq!(
            get("/secretsmanager/get?secretId=a+b%2Bc")
                .unwrap()
                .secret_id,
            "a b+c"
        );
        assert_eq!(
            get("/secretsmanager/get?secretId=x&secretId=y")
                .unwrap()
                .secret_id,
            "y"
        );
        assert_eq!(
            get("/secretsmanager/get?secretId=x&&").unwrap().secret_id,
            "x"
        );
        assert!(
            !get("/secretsmanager/get?secretId=x&refreshNow=0")
                .unwrap()
                .refresh_now
        );
        assert_eq!(
            get("/secretsmanager/get?secretId=x&versionId=")
                .unwrap()
                .version_id,
            Some(String::new())
        );
    }

    #[test]
    fn the_query_form_refuses_with_the_agents_words() {
        for (target, message) in [
            ("/secretsmanager/get", "missing parameter secretId"),
            (
                "/secretsmanager/get?secretId=",
                "missing parameter secretId",
            ),
            ("/secretsmanager/get?secretId", "missing parameter secretId"),
            (
                "/secretsmanager/get?secretId=x&foo=1",
                "unknown parameter: foo",
            ),
            (
                "/secretsmanager/get?secretId=x&refreshNow=yes",
                "invalid refreshNow value",
            ),
            (
                "/secretsmanager/get?secretId=x&refreshNow=",
                "invalid refreshNow value",
            ),
            (
                "/secretsmanager/get?secretId=x&roleArn=arn:aws:iam::123456789012:user/u",
                "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>",
            ),
        ] {
            assert_eq!(get(target), Err(message.to_owned()), "{target}");
        }
        let role =
            get("/secretsmanager/get?secretId=x&roleArn=arn:aws:iam::123456789012:role/r").unwrap();
        assert_eq!(
            role.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/r")
        );
    }

    #[test]
    fn the_path_form_takes_the_id_as_written() {
        assert_eq!(path("/v1/ml/db").unwrap().secret_id, "ml/db");
        assert_eq!(path("/v1/ml%2Fdb").unwrap().secret_id, "ml%2Fdb");
        assert_eq!(path("/v1/a/../ml/./db").unwrap().secret_id, "ml/db");
        let q = path("/v1/x?versionStage=AWSPREVIOUS&refreshNow=1").unwrap();
        assert_eq!(
            (q.version_stage.as_deref(), q.refresh_now),
            (Some("AWSPREVIOUS"), true)
        );
        assert_eq!(path("/v1/"), Err("missing secret ID".to_owned()));
        assert_eq!(path("/v1/../x"), Err("missing secret ID".to_owned()));
        assert_eq!(
            path("/v1/x?secretId=y"),
            Err("unknown parameter: secretId".to_owned())
        );
    }

    #[test]
    fn path_segments_decode() {
        assert_eq!(percent_decode("a%2Fb%20c+d"), "a/b c+d");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
