//! Leader election for `--enable-ha`: every replica keeps its caches warm, only the holder of
//! the Lease writes, and it stops writing *before* its lease could expire.
//!
//! kube-lease-manager acquires and renews the Lease. A watch on the same Lease tells us when it
//! was last renewed; a write is allowed only while we hold it and its renew time plus duration,
//! minus a safety margin, is still ahead. A replica that cannot renew (API unreachable, paused
//! process) therefore stops writing before any other replica can take over.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::ops::supervisor::Supervisor;

/// Settings of the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name; upstream's `stakater-reloader-lock` by default so a mixed fleet shares one lock.
    pub name: String,
    /// Namespace of the Lease (`POD_NAMESPACE`).
    pub namespace: String,
    /// This replica's identity (`POD_NAME`).
    pub identity: String,
    /// Lease duration in whole seconds.
    pub duration_seconds: u64,
}

#[derive(Debug, Default, Clone)]
struct LeaseView {
    holder: Option<String>,
    renewed: Option<SystemTime>,
    duration: Option<Duration>,
}

/// Why a write may or may not happen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteState {
    /// This replica writes.
    Allowed,
    /// Another replica leads; it will do the write.
    Follower,
    /// We were elected but our view of the Lease is not (or no longer) fresh enough to be
    /// sure nobody else can hold it: wait and try again.
    Fenced,
}

/// Whether this replica may write now.
#[derive(Debug, Clone)]
pub struct Leadership {
    ha: Option<Ha>,
}

#[derive(Debug, Clone)]
struct Ha {
    identity: String,
    leading: watch::Receiver<bool>,
    lease: Arc<RwLock<LeaseView>>,
    margin: Duration,
}

impl Leadership {
    /// No election: the only replica always writes.
    pub fn single() -> Self {
        Self { ha: None }
    }

    /// Starts competing for the Lease and watching it. Never blocks on winning.
    pub async fn elect(
        client: kube::Client,
        settings: &LeaseSettings,
        supervisor: &Supervisor,
    ) -> Result<Self, kube_lease_manager::LeaseManagerError> {
        let duration = settings.duration_seconds.max(2);
        // Renew when a third of the duration is left; stop writing when a sixth is left.
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client.clone(), settings.name.clone())
            .with_namespace(settings.namespace.clone())
            .with_identity(settings.identity.clone())
            .with_duration(duration)
            .with_grace(grace)
            .with_field_manager(format!("kube-reloader-{}", settings.identity))
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        supervisor.spawn("lease manager", async move {
            match task.await {
                Ok(Ok(_)) => tracing::error!("the lease manager stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "the lease manager failed"),
                Err(e) => tracing::error!(error = %e, "the lease manager task failed"),
            }
        });
        let lease = Arc::new(RwLock::new(LeaseView::default()));
        supervisor.spawn(
            "watch the lease",
            watch_lease(client, settings.clone(), lease.clone()),
        );
        Ok(Self {
            ha: Some(Ha {
                identity: settings.identity.clone(),
                leading,
                lease,
                margin: Duration::from_secs((duration / 6).max(1)),
            }),
        })
    }

    /// Whether this replica may write now, and if not, why.
    pub fn write_state(&self) -> WriteState {
        match &self.ha {
            None => WriteState::Allowed,
            Some(ha) if !*ha.leading.borrow() => WriteState::Follower,
            Some(_) if self.may_write() => WriteState::Allowed,
            Some(_) => WriteState::Fenced,
        }
    }

    /// True when this replica may write: always without HA; with HA, only while it holds a
    /// lease that cannot have expired yet.
    pub fn may_write(&self) -> bool {
        let Some(ha) = &self.ha else { return true };
        if !*ha.leading.borrow() {
            return false;
        }
        let view = ha
            .lease
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (Some(renewed), Some(duration)) = (view.renewed, view.duration) else {
            return false;
        };
        view.holder.as_deref() == Some(ha.identity.as_str())
            && renewed + duration > SystemTime::now() + ha.margin
    }

    /// Resolves each time this replica becomes the leader (never without HA).
    pub async fn became_leader(&mut self) {
        let Some(ha) = &mut self.ha else {
            return std::future::pending().await;
        };
        loop {
            if ha.leading.changed().await.is_err() {
                return std::future::pending().await;
            }
            if *ha.leading.borrow() {
                return;
            }
        }
    }

    /// Whether leader election is on.
    pub fn is_ha(&self) -> bool {
        self.ha.is_some()
    }
}

async fn watch_lease(client: kube::Client, settings: LeaseSettings, view: Arc<RwLock<LeaseView>>) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", settings.name));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(lease) => {
                let spec = lease.spec.unwrap_or_default();
                let fresh = LeaseView {
                    holder: spec.holder_identity,
                    renewed: spec.renew_time.map(|t| t.0.into()),
                    duration: spec
                        .lease_duration_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .map(Duration::from_secs),
                };
                *view
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "lease watch error; retrying"),
        }
    }
}
