//! What of a Kubernetes API error may be said: in a status, an Event, a log line or an error
//! that leaves the controller.
//!
//! The API server's message may quote the object it refused, and the objects seal writes hold
//! plaintext (a Secret's data, a rendered template), so only the refusal's reason and code pass;
//! an error that never reached the API server says only that. Every reconciler and the store
//! credential reads use [`api_refusal`]; nothing formats a `kube::Error` by itself.

/// The refusal in words safe for status: the API server's reason and code, never its message.
pub fn api_refusal(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "the API server refused the request: {} ({})",
            status.reason, status.code
        ),
        _ => "the API server could not be reached".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_servers_message_never_passes() {
        let status = kube::core::Status::failure(
            "Secret \"db\" is invalid: data[password]: hunter2-is-the-value",
            "Invalid",
        )
        .with_code(422);
        let said = api_refusal(&kube::Error::Api(Box::new(status)));
        assert_eq!(said, "the API server refused the request: Invalid (422)");
        assert!(!said.contains("hunter2"));
        let unreachable = kube::Error::Service(Box::new(std::io::Error::other("hunter2")));
        assert_eq!(
            api_refusal(&unreachable),
            "the API server could not be reached"
        );
    }
}
