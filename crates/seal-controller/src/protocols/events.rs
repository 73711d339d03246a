//! Kubernetes Events: each publish creates one `events.k8s.io/v1` Event, and nothing is kept.
//!
//! The reconcilers publish an Event only when they write something or an object's state changes,
//! so the same Event seldom repeats. kube's `Recorder` keeps every Event it published for six
//! minutes, to count a repeat into the first Event's series, and scans that whole cache on every
//! publish. At 10,000 SealedSecrets the cache held one Event per object: 38 MB of the
//! controller's 100 MB peak heap during the first convergence (heaptrack), and a scan of 10,000
//! entries per Event. This publisher keeps nothing, so its memory does not grow with the number of
//! objects; a repeat is a new Event, and the API server removes Events after its event TTL (an
//! hour by default).
//!
//! Guarantees: the Event is namespaced like the object it regards (`default` for a cluster-scoped
//! one, as kube and client-go do), is named `<object>.<unix nanoseconds in hex>` like client-go's,
//! and names this replica as its reporting instance. A failure to publish is returned; callers log
//! it and go on, since an Event is never worth failing a reconcile for. What goes into the note is
//! the caller's business: see [`super::redaction`].

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

/// Publishes Events as one reporter (the controller, and this replica as its instance).
#[derive(Clone)]
pub struct Events {
    client: Client,
    reporter: Reporter,
}

impl Events {
    /// A publisher that reports as `reporter`.
    #[must_use]
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Creates the Event `event` about the object `regarding`.
    ///
    /// # Errors
    /// The API server refused the Event or could not be reached.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let object = describe(&self.reporter, event, regarding, Timestamp::now());
        let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
        Api::<KubeEvent>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await
            .map(drop)
    }
}

/// The Event object that says `event` about `regarding`, reported by `reporter` at `now`.
fn describe(
    reporter: &Reporter,
    event: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> KubeEvent {
    let object_name = regarding.name.as_deref().unwrap_or(&reporter.controller);
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            namespace: Some(
                regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
            ),
            ..ObjectMeta::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        ..KubeEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(instance: Option<&str>) -> Reporter {
        Reporter {
            controller: "seal-controller".into(),
            instance: instance.map(str::to_owned),
        }
    }

    fn unsealed() -> Event {
        Event {
            type_: EventType::Normal,
            reason: "Unsealed".into(),
            note: Some("unsealed 3 items".into()),
            action: "Unseal".into(),
            secondary: None,
        }
    }

    fn sealed_secret(namespace: Option<&str>) -> ObjectReference {
        ObjectReference {
            api_version: Some("seal.dev/v1alpha1".into()),
            kind: Some("SealedSecret".into()),
            name: Some("db".into()),
            namespace: namespace.map(str::to_owned),
            uid: Some("0b0c".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_event_regards_its_object_in_its_namespace_under_a_client_go_name() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let event = describe(
            &reporter(Some("seal-controller-7d9f")),
            &unsealed(),
            &sealed_secret(Some("ml")),
            now,
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("ml"));
        assert_eq!(
            event.metadata.name,
            Some(format!("db.{:x}", 1_800_000_000_000_000_000_i128))
        );
        assert_eq!(event.regarding, Some(sealed_secret(Some("ml"))));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(event.reason.as_deref(), Some("Unsealed"));
        assert_eq!(event.action.as_deref(), Some("Unseal"));
        assert_eq!(event.note.as_deref(), Some("unsealed 3 items"));
        assert_eq!(event.event_time, Some(MicroTime(now)));
        assert_eq!(
            event.reporting_controller.as_deref(),
            Some("seal-controller")
        );
        assert_eq!(
            event.reporting_instance.as_deref(),
            Some("seal-controller-7d9f")
        );
        assert_eq!(event.series, None, "no series: nothing is remembered");
    }

    #[test]
    fn a_cluster_scoped_object_gets_its_events_in_default_and_a_replica_without_a_name_reports_as_the_controller()
     {
        let warning = Event {
            type_: EventType::Warning,
            ..unsealed()
        };
        let event = describe(
            &reporter(None),
            &warning,
            &sealed_secret(None),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reporting_instance.as_deref(), Some("seal-controller"));
    }
}
