//! Whether a URL that credentials (or a certificate to seal with) travel over is encrypted: the
//! one rule for plain http, shared by the controller's stores, the CI commands, the agent and
//! the CLI's certificate sources.
//!
//! `https` is always fine; `http` only to a loopback host (the traffic never leaves the machine
//! or pod), unless the caller has an explicit setting that allows it. Hosts are compared as the
//! URL parser reads them, so `http://127.0.0.1.evil.example` and `http://user@evil.example` are
//! not loopback.

use std::net::IpAddr;

/// How a URL travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https`.
    Https,
    /// `http` to `localhost` or a loopback address.
    LoopbackHttp,
    /// `http` to any other host.
    PlainHttp,
}

/// Classifies `url`.
///
/// Errors: not a URL, or a scheme other than `http` and `https` (the message quotes the URL,
/// which is configuration, never a credential).
pub fn transport(url: &str) -> Result<Transport, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(Transport::Https),
        "http" if is_loopback(&parsed) => Ok(Transport::LoopbackHttp),
        "http" => Ok(Transport::PlainHttp),
        other => Err(format!("{url:?}: unknown scheme {other:?}; use https")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_make_plain_http_local() {
        for url in [
            "http://127.0.0.1:8200",
            "http://127.1.2.3",
            "http://[::1]:8080/v1/cert.pem",
            "http://localhost:8200/",
            "http://LOCALHOST",
        ] {
            assert_eq!(transport(url), Ok(Transport::LoopbackHttp), "{url}");
        }
        for url in [
            "http://vault.vault.svc:8200",
            "http://10.0.0.1",
            "http://127.0.0.1.evil.example",
            "http://user@evil.example",
            "http://evil.example#@127.0.0.1",
        ] {
            assert_eq!(transport(url), Ok(Transport::PlainHttp), "{url}");
        }
        assert_eq!(transport("https://v:8200"), Ok(Transport::Https));
        assert!(transport("ftp://v").is_err());
        assert!(transport("vault:8200").is_err());
    }
}
