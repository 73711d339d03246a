//! One request, from its path to its answer. The rules come first, in this order, on every
//! request: a request carrying `X-Forwarded-For` or `Forwarded` is refused (400), anything but GET
//! is 405, `/ping` and `/metrics` are answered without a token, every other route needs the token
//! (403), and a malformed query is 400. Then the route's handler answers; every request is counted
//! in the metrics by route and status.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::{Method, Request, Response, StatusCode};

use super::Server;
use super::query::{Query, percent_decode};
use super::response::{error, text};

/// The proxy headers whose presence refuses a request.
const FORWARDED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("forwarded"),
];

impl Server {
    /// Answers one request.
    pub(super) async fn handle(
        &self,
        request: &Request<Incoming>,
        over: bool,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let path = request.uri().path();
        let route = match path {
            "/secretsmanager/get" => "aws",
            "/ping" => "ping",
            "/metrics" => "metrics",
            p if p.starts_with("/v1/secrets/") => "secrets",
            p if p.len() > "/v1/".len() && p.starts_with("/v1/") => "aws",
            _ => "other",
        };
        let response = if over {
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "too many open connections",
            )
        } else {
            self.route(request, route).await
        };
        self.metrics
            .request(route, response.status().as_u16(), started.elapsed());
        response
    }

    /// The rules, in order, then the route's handler.
    async fn route(
        &self,
        request: &Request<Incoming>,
        route: &'static str,
    ) -> Response<Full<Bytes>> {
        if FORWARDED_HEADERS
            .iter()
            .any(|name| request.headers().contains_key(name))
        {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                "forwarded requests (X-Forwarded-For, Forwarded) are refused",
            );
        }
        if request.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "only GET is allowed",
            );
        }
        match route {
            "ping" => return text(StatusCode::OK, "healthy"),
            "metrics" => return text(StatusCode::OK, self.metrics_text()),
            _ => {}
        }
        if !self.authorized(request) {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "missing or wrong token (X-Aws-Parameters-Secrets-Token or X-Seal-Token)",
            );
        }
        let query = match Query::parse(request.uri().query().unwrap_or("")) {
            // The AWS agent's `/v1/SECRET_ID`: the id is the rest of the path.
            Ok(mut query) if route == "aws" && request.uri().path().starts_with("/v1/") => {
                if query.secret_id.is_some() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestException",
                        "secretId is given twice (path and query)",
                    );
                }
                query.secret_id = Some(percent_decode(&request.uri().path()["/v1/".len()..]));
                query
            }
            Ok(query) => query,
            Err(message) => {
                return error(StatusCode::BAD_REQUEST, "InvalidRequestException", &message);
            }
        };
        match route {
            "aws" => self.aws_secret(query).await,
            "secrets" => {
                let name = &request.uri().path()["/v1/secrets/".len()..];
                self.named_secret(&percent_decode(name), &query).await
            }
            _ => error(StatusCode::NOT_FOUND, "NotFoundException", "no such route"),
        }
    }
}
