//! seal's own route, `GET /v1/secrets/NAME[?refreshNow=true]`: the configured secret NAME (of
//! any provider), resolved with the agent's resolver, cached by name, and answered as is
//! (`application/octet-stream`). An unknown name is 404, saying how to read an AWS secret whose
//! name starts with `secrets/` (which the AWS agent would serve here).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use seal_providers::AwsGetError;
use zeroize::Zeroizing;

use super::Server;
use super::response::aws_error;

impl Server {
    /// `/v1/secrets/NAME`: the configured secret `name`, from the cache or from its provider.
    pub(super) async fn named_secret(
        &self,
        name: &str,
        refresh_now: bool,
    ) -> Response<Full<Bytes>> {
        let Some(reference) = self.fetcher.reference(name) else {
            return aws_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                Some(&format!(
                    "no secret {name:?} is configured; /v1/secrets/NAME serves seal-agent's configured secrets, so an AWS secret named secrets/{name} is read with /secretsmanager/get?secretId=secrets/{name}"
                )),
            );
        };
        let key = name.to_owned();
        let result = self
            .named_cache
            .get(&key, refresh_now, || async {
                let started = Instant::now();
                let result = self
                    .fetcher
                    .resolver()
                    .resolve(std::slice::from_ref(reference))
                    .await
                    .map(|values| Arc::new(Zeroizing::new(values[0].expose_bytes().to_vec())))
                    .map_err(|e| AwsGetError {
                        error: e.cause,
                        service: None,
                    });
                self.metrics.upstream(
                    started.elapsed(),
                    result.as_ref().err().map(|e| e.error.metric_label()),
                );
                result
            })
            .await;
        self.answer("secrets", result, Some("application/octet-stream"))
    }
}
