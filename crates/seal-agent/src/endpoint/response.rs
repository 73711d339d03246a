//! Answers, in the shapes the AWS Secrets Manager Agent 2.1.0 writes, so its clients read
//! seal's answers as they read its own:
//!
//! - a value: the cached body as is (shared with the cache, no copy), with no `Content-Type`
//!   on the AWS routes (the agent sends none), marked `X-Seal-Stale: true` when served past its
//!   TTL;
//! - the agent's own refusals (bad token, bad query, wrong method, unknown route, too many
//!   connections) and `/ping`: a plain-text body with no `Content-Type` ([`plain`]);
//! - a failed fetch ([`failure_answer`]): Secrets Manager's own answer relayed, its status and
//!   `{"__type":CODE,"message":MESSAGE}`, as the agent relays it; for a failure that got no
//!   answer from the service, the agent's status and `__type` for its class (504 `TimeoutError`,
//!   502 `ConnectionError`) with seal's message, which says which store failed and how (never a
//!   value).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use seal_providers::{AwsGetError, Error};

use super::Server;
use super::cache::Body;
use crate::metrics::CacheOutcome;

impl Server {
    /// The response to a cache lookup's `result` on `route`, its cache outcome counted; a value
    /// is sent with `content_type` when there is one.
    pub(super) fn answer(
        &self,
        route: &'static str,
        result: Result<(Body, CacheOutcome), AwsGetError>,
        content_type: Option<&'static str>,
    ) -> Response<Full<Bytes>> {
        match result {
            Ok((body, outcome)) => {
                self.metrics.cache(route, outcome);
                let mut response = Response::new(Full::new(Bytes::from_owner(Shared(body))));
                if let Some(content_type) = content_type {
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                }
                if outcome == CacheOutcome::Stale {
                    response
                        .headers_mut()
                        .insert("x-seal-stale", HeaderValue::from_static("true"));
                }
                response
            }
            Err(failure) => {
                self.metrics.cache(route, CacheOutcome::Miss);
                tracing::warn!(route, error = %failure.error, "fetch failed");
                let (status, kind, message) = failure_answer(&failure);
                aws_error(status, kind, message.as_deref())
            }
        }
    }
}

/// The status, `__type` and message answering a failed fetch: Secrets Manager's own answer when
/// there is one (without its code or message, the agent's `InternalFailure` 500; with code
/// `InternalFailure` or an empty message, that type alone under the service's status), else the
/// agent's status and type for the failure's class, with seal's message.
pub(super) fn failure_answer(failure: &AwsGetError) -> (StatusCode, &str, Option<String>) {
    if let Some(service) = &failure.service {
        let status = StatusCode::from_u16(service.status).unwrap_or(StatusCode::BAD_GATEWAY);
        return match (service.code.as_deref(), service.message.as_deref()) {
            (Some(code), Some(message)) if code != "InternalFailure" && !message.is_empty() => {
                (status, code, Some(message.to_owned()))
            }
            (Some(_), Some(_)) => (status, "InternalFailure", None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", None),
        };
    }
    let (status, kind) = match &failure.error {
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        Error::Denied { .. } => (StatusCode::FORBIDDEN, "AccessDeniedException"),
        Error::Unavailable { detail, .. }
            if detail.contains("timed out") || detail.contains("no answer within") =>
        {
            (StatusCode::GATEWAY_TIMEOUT, "TimeoutError")
        }
        Error::Unavailable { .. } => (StatusCode::BAD_GATEWAY, "ConnectionError"),
        _ => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
    };
    (status, kind, Some(failure.error.to_string()))
}

/// A cached body handed to hyper without a copy; the bytes are wiped when the last holder drops.
struct Shared(Body);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A plain-text body with no `Content-Type`, as the agent writes its refusals and `/ping`.
pub(super) fn plain(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response
}

/// The Prometheus text of `/metrics`.
pub(super) fn metrics_text(body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// An error in the service's shape, as the agent relays it: `{"__type":KIND,"message":MESSAGE}`,
/// or `{"__type":KIND}` without a message; no `Content-Type`.
pub(super) fn aws_error(
    status: StatusCode,
    kind: &str,
    message: Option<&str>,
) -> Response<Full<Bytes>> {
    let body = match message {
        Some(message) => serde_json::json!({"__type": kind, "message": message}),
        None => serde_json::json!({"__type": kind}),
    };
    plain(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_providers::{AwsServiceError, Location, ProviderKind};

    fn at() -> Location {
        Location {
            provider: ProviderKind::Aws,
            store: "us-east-1".into(),
            key: "ml/db".into(),
        }
    }

    fn failure(error: Error, service: Option<(u16, Option<&str>, Option<&str>)>) -> AwsGetError {
        AwsGetError {
            error,
            service: service.map(|(status, code, message)| {
                Box::new(AwsServiceError {
                    status,
                    code: code.map(str::to_owned),
                    message: message.map(str::to_owned),
                })
            }),
        }
    }

    /// `failure_answer` of `failure`, owned.
    fn answer(failure: &AwsGetError) -> (StatusCode, String, Option<String>) {
        let (status, kind, message) = failure_answer(failure);
        (status, kind.to_owned(), message)
    }

    fn not_found() -> Error {
        Error::NotFound {
            at: at(),
            detail: "gone".into(),
        }
    }

    #[test]
    fn the_services_answer_is_relayed_as_the_agent_relays_it() {
        let missing = failure(
            not_found(),
            Some((
                400,
                Some("ResourceNotFoundException"),
                Some("Secrets Manager can't find the specified secret."),
            )),
        );
        assert_eq!(
            failure_answer(&missing),
            (
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                Some("Secrets Manager can't find the specified secret.".to_owned())
            )
        );
        let internal = failure(not_found(), Some((503, Some("InternalFailure"), Some("x"))));
        assert_eq!(
            failure_answer(&internal),
            (StatusCode::SERVICE_UNAVAILABLE, "InternalFailure", None)
        );
        let empty = failure(not_found(), Some((400, Some("Oops"), Some(""))));
        assert_eq!(
            failure_answer(&empty),
            (StatusCode::BAD_REQUEST, "InternalFailure", None)
        );
        let codeless = failure(not_found(), Some((400, None, Some("m"))));
        assert_eq!(
            failure_answer(&codeless),
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", None)
        );
    }

    #[test]
    fn failures_without_an_answer_take_the_agents_status_and_seals_words() {
        let unavailable = |detail: &str| Error::Unavailable {
            at: at(),
            attempts: 3,
            detail: detail.into(),
        };
        let (status, kind, message) = answer(&failure(unavailable("timed out"), None));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::GATEWAY_TIMEOUT, "TimeoutError")
        );
        assert!(message.unwrap().contains("ml/db"));
        let (status, kind, _) = answer(&failure(unavailable("no answer within 5000 ms"), None));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::GATEWAY_TIMEOUT, "TimeoutError")
        );
        let (status, kind, _) = answer(&failure(unavailable("connection refused"), None));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_GATEWAY, "ConnectionError")
        );
        let (status, kind, _) = answer(&failure(not_found(), None));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::NOT_FOUND, "ResourceNotFoundException")
        );
    }

    #[test]
    fn an_error_body_is_the_services_json_without_a_content_type() {
        let response = aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            Some("m\""),
        );
        assert!(response.headers().get(CONTENT_TYPE).is_none());
        let body = http_body_util::BodyExt::collect(response.into_body());
        let bytes = futures_executor(body);
        assert_eq!(
            bytes,
            br#"{"__type":"ResourceNotFoundException","message":"m\""}"#
        );
        let bytes = futures_executor(http_body_util::BodyExt::collect(
            aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", None).into_body(),
        ));
        assert_eq!(bytes, br#"{"__type":"InternalFailure"}"#);
    }

    fn futures_executor<F>(future: F) -> Vec<u8>
    where
        F: Future<Output = Result<http_body_util::Collected<Bytes>, std::convert::Infallible>>,
    {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
            .unwrap()
            .to_bytes()
            .to_vec()
    }
}
