//! Answers: a value as the response body (shared with the cache, no copy), marked
//! `X-Seal-Stale: true` when served past its TTL; a provider error mapped to the AWS agent's
//! exception and status (404 `ResourceNotFoundException`, 403 `AccessDeniedException`, 504
//! `RequestTimeoutException` for a timeout, 502 `ServiceUnavailable` when unreachable, else 400
//! `InvalidRequestException`); and every error as the AWS agent's `{"__type","message"}` JSON.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use seal_providers::Error;

use super::Server;
use super::cache::Body;
use crate::metrics::CacheOutcome;

impl Server {
    /// The response to a cache lookup's `result` on `route`, its cache outcome counted.
    pub(super) fn answer(
        &self,
        route: &'static str,
        result: Result<(Body, CacheOutcome), Error>,
        content_type: &'static str,
    ) -> Response<Full<Bytes>> {
        match result {
            Ok((body, outcome)) => {
                self.metrics.cache(route, outcome);
                let mut response = Response::new(Full::new(Bytes::from_owner(Shared(body))));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                if outcome == CacheOutcome::Stale {
                    response
                        .headers_mut()
                        .insert("x-seal-stale", HeaderValue::from_static("true"));
                }
                response
            }
            Err(e) => {
                self.metrics.cache(route, CacheOutcome::Miss);
                tracing::warn!(route, error = %e, "fetch failed");
                let (status, kind) = match &e {
                    Error::NotFound { .. } => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
                    Error::Denied { .. } => (StatusCode::FORBIDDEN, "AccessDeniedException"),
                    Error::Unavailable { detail, .. } if detail.contains("timed out") => {
                        (StatusCode::GATEWAY_TIMEOUT, "RequestTimeoutException")
                    }
                    Error::Unavailable { .. } => (StatusCode::BAD_GATEWAY, "ServiceUnavailable"),
                    _ => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
                };
                error(status, kind, &e.to_string())
            }
        }
    }
}

/// A cached body handed to hyper without a copy; the bytes are wiped when the last holder drops.
struct Shared(Body);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A plain-text response.
pub(super) fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// An error as the AWS agent writes it: `{"__type": KIND, "message": MESSAGE}`.
pub(super) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": kind, "message": message}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}
