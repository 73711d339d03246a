//! The token check: a secret route needs the endpoint's token in `X-Seal-Token` (seal's header)
//! or `X-Aws-Parameters-Secrets-Token` (the AWS agent's), compared in constant time so the
//! comparison's duration tells nothing about the token.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::HeaderName;
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;

use super::Server;

/// The token headers: seal's own and the AWS agent's. Header names are constants so that a
/// lookup hashes them without parsing them first.
const TOKEN_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-seal-token"),
    HeaderName::from_static("x-aws-parameters-secrets-token"),
];

impl Server {
    /// Whether `request` carries the endpoint's token in either header.
    pub(super) fn authorized(&self, request: &Request<Incoming>) -> bool {
        let expected = self.settings.token.expose_secret().as_bytes();
        let mut ok = false;
        for name in &TOKEN_HEADERS {
            if let Some(given) = request.headers().get(name) {
                ok |= bool::from(given.as_bytes().ct_eq(expected));
            }
        }
        ok
    }
}
