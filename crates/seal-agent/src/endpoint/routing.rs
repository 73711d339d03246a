//! One request, from its path to its answer. The rules come first, in the AWS agent's order, so
//! that a request breaking several gets the agent's answer: `/ping` and `/metrics` skip the
//! first two; a request carrying `X-Forwarded-For` or `Forwarded` is 400, one without the token
//! 403, anything but GET 405, an unknown route 404, a bad query 400, each with the agent's
//! plain-text words. Then the route's handler answers; every request is counted in the metrics
//! by route and status.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::{Method, Request, Response, StatusCode};

use super::Server;
use super::query::{AwsQuery, Form, PATH_PREFIX, percent_decode};
use super::response::{metrics_text, plain};

/// The proxy headers whose presence refuses a request: the agent's, and the standard one.
const FORWARDED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("forwarded"),
];

/// The prefix of seal's own route, `/v1/secrets/NAME`.
const NAMED_PREFIX: &str = "/v1/secrets/";

/// The routes, by the request's path as sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Ping,
    Metrics,
    /// `/secretsmanager/get`.
    AwsQuery,
    /// `/v1/SECRET_ID`.
    AwsPath,
    /// `/v1/secrets/NAME`.
    Named,
    Unknown,
}

impl Route {
    fn of(path: &str) -> Self {
        match path {
            "/ping" => Route::Ping,
            "/metrics" => Route::Metrics,
            "/secretsmanager/get" => Route::AwsQuery,
            p if p.starts_with(NAMED_PREFIX) => Route::Named,
            p if p.starts_with(PATH_PREFIX) => Route::AwsPath,
            _ => Route::Unknown,
        }
    }

    /// The metrics label.
    fn label(self) -> &'static str {
        match self {
            Route::Ping => "ping",
            Route::Metrics => "metrics",
            Route::AwsQuery | Route::AwsPath => "aws",
            Route::Named => "secrets",
            Route::Unknown => "other",
        }
    }

    /// Whether the route is answered without the token (and whatever proxy it came through).
    fn is_open(self) -> bool {
        matches!(self, Route::Ping | Route::Metrics)
    }
}

impl Server {
    /// Answers one request.
    pub(super) async fn handle(
        &self,
        request: &Request<Incoming>,
        over: bool,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let route = Route::of(request.uri().path());
        let response = if over {
            plain(StatusCode::TOO_MANY_REQUESTS, "Connection limit exceeded")
        } else {
            self.route(request, route).await
        };
        self.metrics
            .request(route.label(), response.status().as_u16(), started.elapsed());
        response
    }

    /// The rules, in order, then the route's handler.
    async fn route(&self, request: &Request<Incoming>, route: Route) -> Response<Full<Bytes>> {
        if !route.is_open() {
            if FORWARDED_HEADERS
                .iter()
                .any(|name| request.headers().contains_key(name))
            {
                return plain(StatusCode::BAD_REQUEST, "Forwarded");
            }
            if !self.authorized(request) {
                return plain(StatusCode::FORBIDDEN, "Bad Token");
            }
        }
        if request.method() != Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Not allowed");
        }
        let target = request.uri().to_string();
        let form = match route {
            Route::Ping => return plain(StatusCode::OK, "healthy"),
            Route::Metrics => return metrics_text(self.metrics_text()),
            Route::Unknown => return plain(StatusCode::NOT_FOUND, "Not found"),
            Route::AwsQuery => Form::Query,
            Route::AwsPath => Form::Path(PATH_PREFIX),
            Route::Named => Form::Path(NAMED_PREFIX),
        };
        let query = match AwsQuery::parse(&target, form) {
            Ok(query) => query,
            Err(message) => return plain(StatusCode::BAD_REQUEST, message),
        };
        if route != Route::Named {
            return self.aws_secret(query).await;
        }
        if query.version_id.is_some() || query.version_stage.is_some() || query.role_arn.is_some() {
            return plain(
                StatusCode::BAD_REQUEST,
                "versionId, versionStage and roleArn do not apply to /v1/secrets/NAME, a configured secret",
            );
        }
        self.named_secret(&percent_decode(&query.secret_id), query.refresh_now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart_by_the_path_as_sent() {
        for (path, route) in [
            ("/ping", Route::Ping),
            ("/metrics", Route::Metrics),
            ("/secretsmanager/get", Route::AwsQuery),
            ("/secretsmanager/get/", Route::Unknown),
            ("/v1/", Route::AwsPath),
            ("/v1/ml/db", Route::AwsPath),
            ("/v1/secrets", Route::AwsPath),
            ("/v1/secrets/pw", Route::Named),
            ("/", Route::Unknown),
        ] {
            assert_eq!(Route::of(path), route, "{path}");
        }
        assert!(Route::Ping.is_open() && !Route::Unknown.is_open());
    }
}
