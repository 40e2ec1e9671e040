//! Every API write goes through here: the HA fence is checked before *each* write (so a
//! multi-write sequence stops the moment this replica may no longer write), errors come back
//! classified, and the object a write returns goes straight into the store, so a plan right
//! after (before the watch echoes the write) sees it and does not write again.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};

use crate::model::ledger::FIELD_MANAGER;
use serde_json::Value;

use crate::index::WorkloadStore;
use crate::model::workload::WorkloadKey;
use crate::ops::leader::{Leadership, WriteState};
use crate::reconcile::error::WriteError;
use crate::watch::workloads::{self, WorkloadResource};

/// What became of a delete.
#[derive(Debug)]
pub enum Deleted<K> {
    /// The object is gone.
    Gone,
    /// The object is still there, marked for deletion (finalizers hold it).
    Held(Box<K>),
}

/// The writer.
pub struct Writer {
    client: Client,
    leadership: Leadership,
    store: Arc<WorkloadStore>,
    delay: Option<Duration>,
}

impl Writer {
    /// A writer for `client`; `delay` (tests only) waits before every write.
    pub fn new(
        client: Client,
        leadership: Leadership,
        store: Arc<WorkloadStore>,
        delay: Option<Duration>,
    ) -> Self {
        Self {
            client,
            leadership,
            store,
            delay,
        }
    }

    /// Waits for the test delay, then checks this replica may write now.
    async fn fence(&self) -> Result<(), WriteError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        match self.leadership.write_state() {
            WriteState::Allowed => Ok(()),
            WriteState::Follower | WriteState::Fenced => Err(WriteError::Fenced),
        }
    }

    fn api<K: WorkloadResource>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn classify<K: WorkloadResource>(
        verb: &'static str,
        namespace: &str,
    ) -> impl FnOnce(kube::Error) -> WriteError {
        let namespace = namespace.to_owned();
        move |e| WriteError::from_kube(e, verb, &K::group(&()), &K::plural(&()), &namespace)
    }

    fn remember<K: WorkloadResource>(&self, object: &K) {
        if let Some(view) = workloads::project(object) {
            self.store.upsert(view, workloads::resource_version(object));
        }
    }

    /// Patches a workload: strategic merge for built-in kinds, JSON merge for custom resources
    /// (whose bodies name only maps and whole lists, so it means the same).
    pub async fn patch<K: WorkloadResource>(
        &self,
        key: &WorkloadKey,
        body: Value,
    ) -> Result<K, WriteError> {
        self.fence().await?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let body = if K::STRATEGIC {
            Patch::Strategic(body)
        } else {
            Patch::Merge(body)
        };
        let updated = self
            .api::<K>(&key.namespace)
            .patch(&key.name, &params, &body)
            .await
            .map_err(Self::classify::<K>("patch", &key.namespace))?;
        self.remember(&updated);
        Ok(updated)
    }

    /// Creates an object; with `dry_run` the API server checks everything (RBAC, admission,
    /// validation, name taken) and stores nothing.
    pub async fn create<K: WorkloadResource>(
        &self,
        namespace: &str,
        object: &K,
        dry_run: bool,
    ) -> Result<K, WriteError> {
        self.fence().await?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            dry_run,
        };
        let created = self
            .api::<K>(namespace)
            .create(&params, object)
            .await
            .map_err(Self::classify::<K>("create", namespace))?;
        if !dry_run {
            self.remember(&created);
        }
        Ok(created)
    }

    /// Deletes the object with `uid` (a precondition: never a newer object of the same name),
    /// leaving its dependents to the garbage collector.
    pub async fn delete<K: WorkloadResource>(
        &self,
        key: &WorkloadKey,
        uid: &str,
    ) -> Result<Deleted<K>, WriteError> {
        self.fence().await?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let result = self
            .api::<K>(&key.namespace)
            .delete(&key.name, &params)
            .await
            .map_err(Self::classify::<K>("delete", &key.namespace))?;
        Ok(match result.left() {
            Some(object) => {
                self.remember(&object);
                Deleted::Held(Box::new(object))
            }
            None => {
                // Gone: a kind we may not watch would otherwise keep seeing it in the store.
                self.store.remove(key, uid);
                Deleted::Gone
            }
        })
    }
}
