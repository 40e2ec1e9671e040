//! What a reload tells the world: the upstream log line, Kubernetes Events (Reloaded,
//! ReloadFail, InvalidAnnotation, InvalidObject), alerts, and problems reported once per process.
//! Names and digests only: never a Secret value.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::StreamExt as _;
use tokio::sync::mpsc;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter as EventReporter};

use crate::model::digest::SourceKind;
use crate::model::plan::{Cause, Change};
use crate::model::workload::WorkloadKey;
use crate::notify::{AlertSettings, Notifier};
use crate::reconcile::error::WriteError;

/// Where notifications go: upstream's `--webhook-url` mode and alerts after reloads.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// The sender, when either is configured.
    pub notifier: Option<Notifier>,
    /// `--webhook-url`: POST each qualifying change there and reload nothing.
    pub webhook_url: Option<String>,
    /// `ALERT_ON_RELOAD=true`: announce each reload.
    pub alerts: Option<AlertSettings>,
}

/// The reporter.
pub struct Reporter {
    recorders: HashMap<SourceKind, (&'static str, Recorder)>,
    general: (&'static str, Recorder),
    client: Client,
    instance: Option<String>,
    /// Publish core v1 Events (upstream's API) instead of events.k8s.io/v1.
    core_events: AtomicBool,
    reported: Mutex<HashSet<(WorkloadKey, String)>>,
    events: EventQueue,
    /// Webhook mode and alerts.
    pub outbound: Outbound,
}

/// Events waiting for [`Reporter::publish_events`]: a worker hands its Events over and takes
/// the next workload instead of waiting for the Event API (at a fan-out to 1,000 workloads the
/// Event creates were half of every worker's time).
struct EventQueue {
    sender: mpsc::Sender<PendingEvent>,
    receiver: Mutex<Option<mpsc::Receiver<PendingEvent>>>,
    /// Queued or being published.
    pending: AtomicUsize,
}

/// Which recorder publishes an Event: a source kind's (named as upstream's controllers) or
/// kube-reloader's own.
#[derive(Debug, Clone, Copy)]
enum Via {
    Source(SourceKind),
    General,
}

/// One Event to publish.
struct PendingEvent {
    via: Via,
    reference: ObjectReference,
    type_: EventType,
    reason: &'static str,
    note: String,
}

/// Events queued before a worker publishes one itself (the publisher is behind or not running).
const EVENT_QUEUE: usize = 2048;

/// Events published at once by [`Reporter::publish_events`].
const EVENTS_IN_FLIGHT: usize = 8;

impl Reporter {
    /// Event recorders named as upstream's controllers, for `instance`.
    pub fn new(client: &Client, instance: Option<String>, outbound: Outbound) -> Self {
        let recorder = |controller: &'static str| {
            (
                controller,
                Recorder::new(
                    client.clone(),
                    EventReporter {
                        controller: controller.into(),
                        instance: instance.clone(),
                    },
                ),
            )
        };
        Self {
            recorders: HashMap::from([
                (SourceKind::ConfigMap, recorder("reloader-configmaps")),
                (SourceKind::Secret, recorder("reloader-secrets")),
                (
                    SourceKind::SecretProviderClass,
                    recorder("reloader-secretproviderclasspodstatuses"),
                ),
            ]),
            general: recorder("kube-reloader"),
            client: client.clone(),
            instance,
            core_events: AtomicBool::new(false),
            reported: Mutex::new(HashSet::new()),
            events: {
                let (sender, receiver) = mpsc::channel(EVENT_QUEUE);
                EventQueue {
                    sender,
                    receiver: Mutex::new(Some(receiver)),
                    pending: AtomicUsize::new(0),
                }
            },
            outbound,
        }
    }

    /// Publishes queued Events, a few at a time, until the process stops (a supervised task;
    /// only the first call takes the queue, a second returns at once).
    pub async fn publish_events(&self) {
        let receiver = self
            .events
            .receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(receiver) = receiver else {
            tracing::error!("the Event publisher was started twice");
            return;
        };
        let mut receiver = receiver;
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
            .for_each_concurrent(EVENTS_IN_FLIGHT, |event| async move {
                self.deliver(event).await;
                self.events.pending.fetch_sub(1, Ordering::SeqCst);
            })
            .await;
    }

    /// Waits until every queued Event was published (at shutdown, within the grace period).
    pub async fn events_published(&self) {
        while self.events.pending.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The log line, Event and alert of one successful reload.
    pub async fn reloaded(&self, reference: &ObjectReference, key: &WorkloadKey, change: &Change) {
        let verb = if change.cause == Cause::Deleted {
            "deleted"
        } else {
            "changed"
        };
        let (source, source_type, kind, ns, name) = (
            &change.name,
            change.kind.upstream_type(),
            key.kind.as_str(),
            &key.namespace,
            &key.name,
        );
        tracing::info!(
            workload = %key, source = %source, source_kind = source_type, cause = verb,
            "Changes detected in '{source}' of type '{source_type}' in namespace '{ns}'; updated '{name}' of type '{kind}' in namespace '{ns}'"
        );
        let note = format!(
            "Changes detected in '{source}' of type '{source_type}' in namespace '{ns}', Updated '{name}' of type '{kind}' in namespace '{ns}'"
        );
        self.publish(
            Via::Source(change.kind),
            reference,
            EventType::Normal,
            "Reloaded",
            note,
        )
        .await;
        if let (Some(alerts), Some(notifier)) = (&self.outbound.alerts, &self.outbound.notifier) {
            notifier.send(alerts.request(source, source_type, name, kind, ns));
        }
    }

    /// The Warning Event of a failed reload, in upstream's words plus the fix when one is known.
    pub async fn reload_failed(
        &self,
        reference: &ObjectReference,
        key: &WorkloadKey,
        source: SourceKind,
        error: &WriteError,
    ) {
        let mut note = format!(
            "Update for '{}' of type '{}' in namespace '{}' failed with error {error}",
            key.name,
            key.kind.as_str(),
            key.namespace
        );
        if let Some(rule) = error.missing_rule() {
            note.push_str(&format!(". Fix: grant {rule}"));
        }
        self.publish(
            Via::Source(source),
            reference,
            EventType::Warning,
            "ReloadFail",
            note,
        )
        .await;
    }

    /// Reports a problem with a workload's configuration once per process: a Warning Event
    /// `InvalidAnnotation` and a log line, both naming the fix.
    pub async fn problem_once(
        &self,
        reference: &ObjectReference,
        key: &WorkloadKey,
        what: String,
        note: String,
    ) {
        if !self.first_time(key, what) {
            return;
        }
        tracing::warn!(workload = %key, "{note}");
        self.publish(
            Via::General,
            reference,
            EventType::Warning,
            "InvalidAnnotation",
            note,
        )
        .await;
    }

    /// A governor notice (`ReloadDeferred`, `WouldReload`, `ReloadHalted`) on a workload, once
    /// per `what` (a pending change) and process, with its log line; true when published now.
    pub async fn notice_once(
        &self,
        reference: &ObjectReference,
        key: &WorkloadKey,
        what: String,
        warning: bool,
        reason: &'static str,
        note: String,
    ) -> bool {
        if !self.first_time(key, what) {
            return false;
        }
        let type_ = if warning {
            tracing::warn!(workload = %key, reason, "{note}");
            EventType::Warning
        } else {
            tracing::info!(workload = %key, reason, "{note}");
            EventType::Normal
        };
        self.publish(Via::General, reference, type_, reason, note)
            .await;
        true
    }

    /// An alert with `text`, when alerts are configured.
    pub fn alert(&self, text: String) {
        if let (Some(alerts), Some(notifier)) = (&self.outbound.alerts, &self.outbound.notifier) {
            notifier.send(alerts.message(text));
        }
    }

    /// Reports once per object version that a workload does not decode into our types: it is
    /// skipped, and everything else keeps working.
    pub async fn undecodable(
        &self,
        key: &WorkloadKey,
        meta: &ObjectMeta,
        api_version: &str,
        error: &str,
    ) {
        let version = meta.resource_version.clone().unwrap_or_default();
        if !self.first_time(key, format!("undecodable@{version}")) {
            return;
        }
        let note = format!(
            "Skipping {key}: it cannot be read as a {} ({error}). Fix the object; the other \
             workloads keep reloading.",
            key.kind.as_str()
        );
        tracing::error!(workload = %key, "{note}");
        let reference = ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(key.kind.as_str().into()),
            name: Some(key.name.to_string()),
            namespace: Some(key.namespace.to_string()),
            uid: meta.uid.clone(),
            ..ObjectReference::default()
        };
        self.publish(
            Via::General,
            &reference,
            EventType::Warning,
            "InvalidObject",
            note,
        )
        .await;
    }

    fn first_time(&self, key: &WorkloadKey, what: String) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((key.clone(), what))
    }

    /// Queues an Event for the publisher; publishes it here when the queue is full (so none is
    /// dropped, and a burst slows the workers down instead of growing memory).
    async fn publish(
        &self,
        via: Via,
        reference: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
        let event = PendingEvent {
            via,
            reference: reference.clone(),
            type_,
            reason,
            note,
        };
        self.events.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(
            mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
        ) = self.events.sender.try_send(event)
        {
            self.deliver(event).await;
            self.events.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Publishes core v1 Events from now on (events.k8s.io is not granted, core Events are).
    pub fn use_core_events(&self) {
        self.core_events.store(true, Ordering::Relaxed);
    }

    /// Publishes one Event, as events.k8s.io/v1 or (when only that is granted) core v1.
    async fn deliver(&self, event: PendingEvent) {
        let PendingEvent {
            via,
            reference,
            type_,
            reason,
            note,
        } = event;
        let (component, recorder) = match via {
            Via::Source(kind) => self.recorders.get(&kind).unwrap_or(&self.general),
            Via::General => &self.general,
        };
        let reference = &reference;
        let result = if self.core_events.load(Ordering::Relaxed) {
            self.publish_core(component, reference, type_, reason, note)
                .await
        } else {
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: "Reload".into(),
                secondary: None,
            };
            recorder.publish(&event, reference).await
        };
        if let Err(e) = result {
            tracing::warn!(
                object = reference.name.as_deref().unwrap_or_default(),
                error = %e,
                "cannot publish Event"
            );
        }
    }

    /// One core v1 Event, shaped as client-go's recorder makes upstream's.
    async fn publish_core(
        &self,
        component: &str,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = CoreEvent {
            metadata: ObjectMeta {
                generate_name: Some(format!(
                    "{}.",
                    reference.name.as_deref().unwrap_or("kube-reloader")
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: reference.clone(),
            reason: Some(reason.to_owned()),
            message: Some(note),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            source: Some(EventSource {
                component: Some(component.to_owned()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(component.to_owned()),
            reporting_instance: self.instance.clone(),
            action: Some("Reload".to_owned()),
            ..CoreEvent::default()
        };
        Api::<CoreEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}
