//! vals-style secret references, `ref+vault://secret/ml/db#/password` and
//! `ref+awssecrets://ml/db?region=eu-west-1#/password`: finding them in text, parsing them, and
//! ([`resolve`]) fetching what they name. This is the syntax helmfile users already write, so a
//! values file that works with vals works with `seal render`, and the reverse.
//!
//! Syntax: `ref+BACKEND://PATH[?k=v&...][#/json/path]`, BACKEND being `vault` or `awssecrets`.
//! Inside a longer string a reference ends at a `+` (consumed), a space, a tab or a line break,
//! as in vals: `postgres://u:ref+vault://secret/db#/pw+@host`. `secretref+` instead of `ref+`
//! marks a reference a reviewable rendering may keep unresolved. Query values, the path and the
//! fragment are percent-decoded, so `%2B` writes a `+` into a name. The fragment is a JSON
//! pointer into the value (`~1` is `/`), read as JSON or YAML (see [`crate::pick_property`]).
//!
//! Parameters are checked per backend (vault: `address namespace auth_method role role_id
//! secret_id version token_file token_env`; awssecrets: `region role_arn version_stage
//! version_id profile`); an unknown, repeated or malformed one is an error, because a typo
//! silently ignored would read the wrong secret. vals' vault parameters seal does not support
//! (`proto host username password_env password_file decode`, `auth_method=userpass`) are refused
//! with vals' meaning of them ([`unsupported_vals_param`]), for the same reason. Errors ([`ReferenceError`]) give the byte offset and column of the faulty
//! part and name the part, never quoting a parameter's value. A reference's `Display` is its
//! canonical form with `secret_id` redacted, so it can name the reference in any message.
//!
//! A string that merely contains `ref+` (`git ref+x`) is not a reference: only `ref+` followed by
//! a scheme and `://` is, and an unknown scheme there (`ref+sops://`) is an error rather than text
//! passed through, since seal would otherwise hand an unresolved reference to a deployment.

pub mod resolve;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Range;

/// Which backend a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// `ref+vault://`: a Vault or OpenBao KV secret.
    Vault,
    /// `ref+awssecrets://`: an AWS Secrets Manager secret.
    AwsSecrets,
}

impl Backend {
    /// The URL scheme: `vault` or `awssecrets`.
    pub fn scheme(self) -> &'static str {
        match self {
            Backend::Vault => "vault",
            Backend::AwsSecrets => "awssecrets",
        }
    }

    /// The query parameters this backend takes.
    pub fn params(self) -> &'static [Param] {
        match self {
            Backend::Vault => &[
                Param::Address,
                Param::Namespace,
                Param::AuthMethod,
                Param::Role,
                Param::RoleId,
                Param::SecretId,
                Param::Version,
                Param::TokenFile,
                Param::TokenEnv,
            ],
            Backend::AwsSecrets => &[
                Param::Region,
                Param::RoleArn,
                Param::VersionStage,
                Param::VersionId,
                Param::Profile,
            ],
        }
    }

    fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "vault" => Some(Backend::Vault),
            "awssecrets" => Some(Backend::AwsSecrets),
            _ => None,
        }
    }
}

/// A query parameter of a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Param {
    /// Vault: the server's address (default `VAULT_ADDR`).
    Address,
    /// Vault: the namespace (default `VAULT_NAMESPACE`).
    Namespace,
    /// Vault: `token`, `approle`, `jwt` or `kubernetes`.
    AuthMethod,
    /// Vault: the JWT or Kubernetes auth role.
    Role,
    /// Vault: the AppRole role id.
    RoleId,
    /// Vault: the AppRole secret id (a credential: redacted wherever a reference is shown).
    SecretId,
    /// Vault: a KV v2 version number.
    Version,
    /// Vault: a file holding the token (vals' `token_file`).
    TokenFile,
    /// Vault: an environment variable holding the token (vals' `token_env`).
    TokenEnv,
    /// AWS: the region (default `AWS_REGION`).
    Region,
    /// AWS: a role to assume.
    RoleArn,
    /// AWS: a staging label such as `AWSPREVIOUS`.
    VersionStage,
    /// AWS: a VersionId.
    VersionId,
    /// AWS: a profile of the shared config files.
    Profile,
}

impl Param {
    /// The name as written in a query.
    pub fn name(self) -> &'static str {
        match self {
            Param::Address => "address",
            Param::Namespace => "namespace",
            Param::AuthMethod => "auth_method",
            Param::Role => "role",
            Param::RoleId => "role_id",
            Param::SecretId => "secret_id",
            Param::Version => "version",
            Param::TokenFile => "token_file",
            Param::TokenEnv => "token_env",
            Param::Region => "region",
            Param::RoleArn => "role_arn",
            Param::VersionStage => "version_stage",
            Param::VersionId => "version_id",
            Param::Profile => "profile",
        }
    }
}

/// The Vault auth methods a reference may ask for with `auth_method=`.
pub const VAULT_AUTH_METHODS: [&str; 4] = ["token", "approle", "jwt", "kubernetes"];

/// A vals parameter (or `auth_method` value) that seal refuses: what vals does with it, and
/// what to write instead. Its `Display` is the error's detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The parameter's name (for [`USERPASS`], the `auth_method` value).
    pub name: &'static str,
    /// What vals v0.46 does with it.
    pub vals_meaning: &'static str,
    /// What to write for seal instead.
    pub instead: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not supported: in vals it is {}; {}",
            self.name, self.vals_meaning, self.instead
        )
    }
}

/// vals' `auth_method=userpass`.
pub const USERPASS: Unsupported = Unsupported {
    name: "userpass",
    vals_meaning: "the username/password login (username=, password_env=, password_file=)",
    instead: "seal logs in with token, approle, jwt or kubernetes",
};

/// The parameters vals v0.46's vault provider reads that seal refuses (its awssecrets provider
/// reads none that seal lacks). Each would change where or how a value is read, so ignoring
/// one would resolve something else than vals does.
const UNSUPPORTED_VAULT: [Unsupported; 6] = [
    Unsupported {
        name: "proto",
        vals_meaning: "the scheme put before host= to make the address (default https)",
        instead: "write the whole address in address=",
    },
    Unsupported {
        name: "host",
        vals_meaning: "the Vault host, made into the address with proto=",
        instead: "write address=https://HOST instead",
    },
    Unsupported {
        name: "username",
        vals_meaning: "the user of the userpass login",
        instead: USERPASS.instead,
    },
    Unsupported {
        name: "password_env",
        vals_meaning: "the variable holding the userpass login's password",
        instead: USERPASS.instead,
    },
    Unsupported {
        name: "password_file",
        vals_meaning: "the file holding the userpass login's password",
        instead: USERPASS.instead,
    },
    Unsupported {
        name: "decode",
        vals_meaning: "decoding of the value read (decode=base64)",
        instead: "store the value decoded, or decode it where it is used",
    },
];

/// vals' meaning of `name` when it is a vals parameter of `backend` that seal refuses.
pub fn unsupported_vals_param(backend: Backend, name: &str) -> Option<Unsupported> {
    match backend {
        Backend::Vault => UNSUPPORTED_VAULT.iter().find(|u| u.name == name).copied(),
        Backend::AwsSecrets => None,
    }
}

/// One parsed reference. `Display` gives its canonical form with `secret_id` redacted; `Debug`
/// is the same.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    backend: Backend,
    path: String,
    params: BTreeMap<Param, String>,
    fragment: Option<String>,
    secretref: bool,
}

impl Reference {
    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The Vault path (`secret/ml/db`) or the AWS secret name or ARN, percent-decoded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A query parameter's value.
    pub fn param(&self, param: Param) -> Option<&str> {
        self.params.get(&param).map(String::as_str)
    }

    /// The fragment as a property for [`crate::pick_property`] (`#/db/password`); `None` when
    /// the reference has none (the whole AWS secret; for Vault, the path's last segment is the
    /// key, see [`resolve`]).
    pub fn property(&self) -> Option<String> {
        self.fragment.as_ref().map(|f| format!("#{f}"))
    }

    /// True for `secretref+`: keep unresolved when asked to.
    pub fn is_secretref(&self) -> bool {
        self.secretref
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.secretref { "secretref" } else { "ref" };
        write!(
            f,
            "{prefix}+{}://{}",
            self.backend.scheme(),
            encode(&self.path, PATH_RESERVED)
        )?;
        for (i, (param, value)) in self.params.iter().enumerate() {
            let separator = if i == 0 { '?' } else { '&' };
            if *param == Param::SecretId {
                write!(f, "{separator}secret_id=REDACTED")?;
            } else {
                write!(
                    f,
                    "{separator}{}={}",
                    param.name(),
                    encode(value, QUERY_RESERVED)
                )?;
            }
        }
        if let Some(fragment) = &self.fragment {
            write!(f, "#{}", encode(fragment, FRAGMENT_RESERVED))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A reference found in a text: where it is (the `+` ending it included) and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Byte range in the text, from `ref+`/`secretref+` to the end (a terminating `+` included).
    pub span: Range<usize>,
    /// The reference.
    pub reference: Reference,
}

/// The part of a reference an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The scheme after `ref+`.
    Backend,
    /// The path, name or ARN.
    Path,
    /// A query parameter.
    Query,
    /// The `#/json/path` fragment.
    Fragment,
    /// Text around the reference (for [`parse`], which wants exactly one reference).
    Text,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Backend => "backend",
            Part::Path => "path",
            Part::Query => "query",
            Part::Fragment => "fragment",
            Part::Text => "text",
        })
    }
}

/// A malformed reference: where (byte offset and 1-based column in the text searched) and which
/// part. The detail names parameters but never quotes a value, the scheme and `auth_method` aside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reference at column {column} ({part}): {detail}")]
pub struct ReferenceError {
    /// Byte offset of the problem in the text.
    pub offset: usize,
    /// 1-based column (in characters) of the problem in the text.
    pub column: usize,
    /// The part at fault.
    pub part: Part,
    /// What is wrong.
    pub detail: String,
}

/// Every reference in `text`, in order.
///
/// Errors: the first malformed reference (unknown backend, empty path, unknown or repeated
/// parameter, bad percent-encoding, a fragment not starting with `/`, ...).
pub fn find(text: &str) -> Result<Vec<Found>, ReferenceError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(relative) = text[from..].find("ref+") {
        let at = from + relative;
        let secretref = text[..at].ends_with("secret");
        let start = if secretref { at - "secret".len() } else { at };
        let scheme_start = at + "ref+".len();
        let scheme_end = text[scheme_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map_or(text.len(), |e| scheme_start + e);
        if !text[scheme_end..].starts_with("://") {
            // `ref+` in ordinary text: not a reference.
            from = scheme_start;
            continue;
        }
        let body_start = scheme_end + "://".len();
        let body_end = text[body_start..]
            .find(['+', ' ', '\t', '\n', '\r'])
            .map_or(text.len(), |e| body_start + e);
        let end = if text[body_end..].starts_with('+') {
            body_end + 1
        } else {
            body_end
        };
        let reference = parse_parts(
            text,
            secretref,
            scheme_start..scheme_end,
            body_start..body_end,
        )?;
        found.push(Found {
            span: start..end,
            reference,
        });
        from = end;
    }
    Ok(found)
}

/// `text` as exactly one reference (a terminating `+` allowed), e.g. a `seal get` argument.
///
/// Errors: those of [`find`], and [`Part::Text`] when `text` holds no reference or more than
/// the reference.
pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
    let mut found = find(text)?;
    if found.len() == 1 && found[0].span == (0..text.len()) {
        return Ok(found.remove(0).reference);
    }
    match found.as_slice() {
        [] => Err(error(
            text,
            0,
            Part::Text,
            "not a reference: expected ref+vault://PATH#/key or ref+awssecrets://NAME#/key",
        )),
        [one, ..] if one.span.start > 0 => Err(error(
            text,
            0,
            Part::Text,
            "text before the reference: expected exactly one reference",
        )),
        [one, ..] => Err(error(
            text,
            one.span.end,
            Part::Text,
            "text after the reference: expected exactly one reference",
        )),
    }
}

/// Parses the backend `scheme` and the `body` (path, query, fragment) of a reference in `text`.
fn parse_parts(
    text: &str,
    secretref: bool,
    scheme: Range<usize>,
    body: Range<usize>,
) -> Result<Reference, ReferenceError> {
    let Some(backend) = Backend::from_scheme(&text[scheme.clone()]) else {
        let detail = if scheme.is_empty() {
            "no backend after ref+ (vault or awssecrets)".to_owned()
        } else {
            format!(
                "unsupported backend {:?}: seal resolves vault and awssecrets",
                &text[scheme.clone()]
            )
        };
        return Err(error(text, scheme.start, Part::Backend, &detail));
    };
    let (rest_end, fragment) = match text[body.clone()].find('#') {
        Some(hash) => (body.start + hash, Some(body.start + hash + 1..body.end)),
        None => (body.end, None),
    };
    let (path_end, query) = match text[body.start..rest_end].find('?') {
        Some(q) => (body.start + q, Some(body.start + q + 1..rest_end)),
        None => (rest_end, None),
    };
    let mut path_start = body.start;
    while text[path_start..path_end].starts_with('/') {
        path_start += 1;
    }
    let path = decode(text, path_start..path_end, Part::Path)?;
    if path.is_empty() {
        let what = match backend {
            Backend::Vault => "no secret path (e.g. ref+vault://secret/ml/db#/password)",
            Backend::AwsSecrets => "no secret name or ARN (e.g. ref+awssecrets://ml/db#/password)",
        };
        return Err(error(text, path_start, Part::Path, what));
    }
    let mut params = BTreeMap::new();
    if let Some(query) = query {
        parse_query(text, backend, query, &mut params)?;
    }
    let fragment = match fragment {
        None => None,
        Some(range) if range.is_empty() => None,
        Some(range) => {
            if !text[range.clone()].starts_with('/') {
                return Err(error(
                    text,
                    range.start,
                    Part::Fragment,
                    "expected #/ followed by a JSON path (#/db/password)",
                ));
            }
            Some(decode(text, range, Part::Fragment)?)
        }
    };
    Ok(Reference {
        backend,
        path,
        params,
        fragment,
        secretref,
    })
}

fn parse_query(
    text: &str,
    backend: Backend,
    query: Range<usize>,
    params: &mut BTreeMap<Param, String>,
) -> Result<(), ReferenceError> {
    let mut at = query.start;
    for pair in text[query.clone()].split('&') {
        let pair_start = at;
        at += pair.len() + 1;
        if pair.is_empty() {
            return Err(error(
                text,
                pair_start,
                Part::Query,
                "empty query parameter",
            ));
        }
        let Some((name, _)) = pair.split_once('=') else {
            return Err(error(
                text,
                pair_start,
                Part::Query,
                "expected name=value in the query",
            ));
        };
        let Some(param) = backend.params().iter().find(|p| p.name() == name).copied() else {
            let detail = if let Some(refused) = unsupported_vals_param(backend, name) {
                refused.to_string()
            } else {
                let known: Vec<_> = backend.params().iter().map(|p| p.name()).collect();
                format!(
                    "unknown parameter {name:?} for {} (known: {})",
                    backend.scheme(),
                    known.join(", ")
                )
            };
            return Err(error(text, pair_start, Part::Query, &detail));
        };
        let value_start = pair_start + name.len() + 1;
        let value = decode(text, value_start..pair_start + pair.len(), Part::Query)?;
        let invalid = |detail: &str| error(text, value_start, Part::Query, detail);
        if value.is_empty() {
            return Err(invalid(&format!("parameter {name} has no value")));
        }
        match param {
            Param::AuthMethod if value == USERPASS.name => {
                return Err(invalid(&USERPASS.to_string()));
            }
            Param::AuthMethod if !VAULT_AUTH_METHODS.contains(&value.as_str()) => {
                return Err(invalid(&format!(
                    "auth_method {value:?} is not one of {}",
                    VAULT_AUTH_METHODS.join(", ")
                )));
            }
            Param::Version if !value.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(invalid("version is a KV v2 version number"));
            }
            _ => {}
        }
        if params.insert(param, value).is_some() {
            return Err(error(
                text,
                pair_start,
                Part::Query,
                &format!("parameter {name} is given twice"),
            ));
        }
    }
    if params.contains_key(&Param::VersionStage) && params.contains_key(&Param::VersionId) {
        return Err(error(
            text,
            query.start,
            Part::Query,
            "version_stage and version_id exclude each other",
        ));
    }
    Ok(())
}

/// Percent-decodes `text[range]` into UTF-8.
fn decode(text: &str, range: Range<usize>, part: Part) -> Result<String, ReferenceError> {
    let raw = &text.as_bytes()[range.clone()];
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(error(
                    text,
                    range.start + i,
                    part,
                    "% must be followed by two hex digits",
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        error(
            text,
            range.start,
            part,
            "percent-encoding does not decode to UTF-8",
        )
    })
}

/// Characters written percent-encoded in each part of the canonical form: `%`, the reference's
/// terminators, and what would end the part.
const PATH_RESERVED: &[char] = &['%', '+', ' ', '\t', '\n', '\r', '?', '#'];
const QUERY_RESERVED: &[char] = &['%', '+', ' ', '\t', '\n', '\r', '#', '&', '='];
const FRAGMENT_RESERVED: &[char] = &['%', '+', ' ', '\t', '\n', '\r'];

fn encode(text: &str, reserved: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        // A leading slash would be taken for the `//` after the scheme.
        if reserved.contains(&c) || (i == 0 && c == '/' && reserved == PATH_RESERVED) {
            for byte in c.to_string().bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn error(text: &str, offset: usize, part: Part, detail: &str) -> ReferenceError {
    ReferenceError {
        offset,
        column: text[..offset].chars().count() + 1,
        part,
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Reference {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn vault_reference_with_every_parameter() {
        let r = one(
            "ref+vault://secret/data/ml/db?address=https://v:8200&namespace=team&auth_method=approle&role_id=r1&secret_id=s3cr3t&version=2&token_file=/run/t&token_env=T#/password",
        );
        assert_eq!(r.backend(), Backend::Vault);
        assert_eq!(r.path(), "secret/data/ml/db");
        assert_eq!(r.param(Param::Address), Some("https://v:8200"));
        assert_eq!(r.param(Param::AuthMethod), Some("approle"));
        assert_eq!(r.param(Param::SecretId), Some("s3cr3t"));
        assert_eq!(r.param(Param::Version), Some("2"));
        assert_eq!(r.param(Param::TokenFile), Some("/run/t"));
        assert_eq!(r.param(Param::TokenEnv), Some("T"));
        assert_eq!(r.property().as_deref(), Some("#/password"));
        assert!(!r.is_secretref());
    }

    #[test]
    fn aws_reference_by_arn_with_a_stage() {
        let r = one(
            "ref+awssecrets://arn:aws:secretsmanager:us-east-1:123456789012:secret:ml/db-AbCdEf?region=us-east-1&version_stage=AWSPREVIOUS#/a/b",
        );
        assert_eq!(r.backend(), Backend::AwsSecrets);
        assert_eq!(
            r.path(),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ml/db-AbCdEf"
        );
        assert_eq!(r.param(Param::VersionStage), Some("AWSPREVIOUS"));
        assert_eq!(r.property().as_deref(), Some("#/a/b"));
    }

    #[test]
    fn a_plus_ends_a_reference_inside_a_longer_string() {
        let text = "postgres://u:ref+vault://secret/db#/pw+@host:5432/app";
        let found = find(text).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].span.clone()], "ref+vault://secret/db#/pw+");
        assert_eq!(found[0].reference.path(), "secret/db");
        assert_eq!(found[0].reference.property().as_deref(), Some("#/pw"));
    }

    #[test]
    fn whitespace_ends_a_reference_and_several_are_found() {
        let text = "a ref+vault://kv/x#/k b\nsecretref+awssecrets://y end";
        let found = find(text).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(&text[found[0].span.clone()], "ref+vault://kv/x#/k");
        assert_eq!(&text[found[1].span.clone()], "secretref+awssecrets://y");
        assert!(found[1].reference.is_secretref());
        assert_eq!(found[1].reference.property(), None);
    }

    #[test]
    fn ref_plus_without_a_scheme_is_text() {
        assert_eq!(find("git ref+main and ref+ alone").unwrap(), []);
        assert!(parse("plain text").is_err());
    }

    #[test]
    fn percent_encoding_is_decoded_and_written_back() {
        let r = one("ref+awssecrets://a%2Bb%20c#/k%2By");
        assert_eq!(r.path(), "a+b c");
        assert_eq!(r.property().as_deref(), Some("#/k+y"));
        assert_eq!(r.to_string(), "ref+awssecrets://a%2Bb%20c#/k%2By");
        assert_eq!(one(&r.to_string()), r);
    }

    #[test]
    fn display_redacts_the_secret_id() {
        let r = one("ref+vault://secret/x?auth_method=approle&secret_id=MARKER-99#/k");
        let shown = format!("{r} {r:?}");
        assert!(!shown.contains("MARKER-99"), "{shown}");
        assert!(shown.contains("secret_id=REDACTED"), "{shown}");
    }

    #[test]
    fn errors_point_at_the_faulty_part() {
        let cases: &[(&str, Part, usize, &str)] = &[
            (
                "x: ref+sops://a#/b",
                Part::Backend,
                8,
                "unsupported backend",
            ),
            ("ref+vault://#/b", Part::Path, 13, "no secret path"),
            (
                "ref+vault://a?region=x",
                Part::Query,
                15,
                "unknown parameter",
            ),
            ("ref+vault://a?version=x", Part::Query, 23, "version number"),
            (
                "ref+vault://a?auth_method=ldap",
                Part::Query,
                27,
                "auth_method",
            ),
            ("ref+vault://a?role=1&role=2", Part::Query, 22, "twice"),
            ("ref+vault://a?role", Part::Query, 15, "name=value"),
            ("ref+awssecrets://a#b", Part::Fragment, 20, "expected #/"),
            ("ref+awssecrets://a%zz", Part::Path, 19, "two hex digits"),
            (
                "ref+awssecrets://a?version_stage=x&version_id=y",
                Part::Query,
                20,
                "exclude",
            ),
        ];
        for (text, part, column, needle) in cases {
            let e = find(text).unwrap_err();
            assert_eq!((e.part, e.column), (*part, *column), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn vals_parameters_seal_refuses_name_their_vals_meaning() {
        for (query, meaning) in [
            ("proto=http", "scheme put before host="),
            ("host=v:8200", "the Vault host"),
            ("username=u", "userpass login"),
            ("password_env=P", "userpass login's password"),
            ("password_file=/p", "userpass login's password"),
            ("decode=base64", "decode=base64"),
            ("auth_method=userpass", "username/password login"),
        ] {
            let e = find(&format!("ref+vault://secret/x?{query}#/k")).unwrap_err();
            assert_eq!(e.part, Part::Query, "{query}");
            let shown = e.to_string();
            assert!(shown.contains("in vals it is"), "{query}: {shown}");
            assert!(shown.contains(meaning), "{query}: {shown}");
        }
        // A parameter vals does not know either is merely unknown; the aws backend has no
        // vals parameter seal refuses.
        assert!(
            find("ref+vault://a?mount=x")
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
        assert_eq!(unsupported_vals_param(Backend::AwsSecrets, "host"), None);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = find("ünïcode ref+nope://x").unwrap_err();
        assert_eq!(e.column, 13);
        assert_eq!(e.offset, 14);
    }

    #[test]
    fn parse_wants_exactly_one_reference() {
        assert_eq!(parse("x ref+vault://a/b").unwrap_err().part, Part::Text);
        let e = parse("ref+vault://a/b+tail").unwrap_err();
        assert_eq!((e.part, e.column), (Part::Text, 17));
        assert_eq!(one("ref+vault://a/b+").path(), "a/b");
    }

    #[test]
    fn errors_never_quote_a_secret_id() {
        let e = find("ref+vault://a?secret_id=MARKER-1%zz").unwrap_err();
        assert!(!e.to_string().contains("MARKER-1"), "{e}");
    }
}
