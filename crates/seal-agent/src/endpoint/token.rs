//! The token check: a secret route needs the endpoint's token in `X-Aws-Parameters-Secrets-Token`
//! or `X-Vault-Token` (the AWS agent's default headers) or `X-Seal-Token` (seal's own), compared
//! in constant time so the comparison's duration tells nothing about the token. As in the agent,
//! a header given twice is judged by its first value, and one right header is enough.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::HeaderName;
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;

use super::Server;

/// The token headers: the AWS agent's two, then seal's own. Header names are constants so that a
/// lookup hashes them without parsing them first.
const TOKEN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-aws-parameters-secrets-token"),
    HeaderName::from_static("x-vault-token"),
    HeaderName::from_static("x-seal-token"),
];

impl Server {
    /// Whether `request` carries the endpoint's token in any of the headers.
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
