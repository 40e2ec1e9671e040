//! Every watched workload, by namespace, with the indexes a source event needs: which
//! workloads name or reference a source, which have pattern items (and so may match any source
//! of a kind), and which Rollouts follow a Deployment. A source event costs O(workloads that
//! can track it), not O(all workloads).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use crate::model::ObjectName;
use crate::model::digest::SourceKind;
use crate::model::interest::Interest;
use crate::model::policy::Policy;
use k8s_openapi::api::core::v1::PodSpec;

use crate::model::workload::{BoxedPodSpec, WorkloadKey, WorkloadKind, WorkloadView};

/// One stored workload: its projection, the resourceVersion it was seen at, its interest.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The projection.
    pub view: Arc<WorkloadView>,
    /// Its resourceVersion, when numeric.
    pub version: Option<u64>,
    /// What it could track.
    pub interest: Arc<Interest>,
}

/// A pod spec held as its JSON text. k8s-openapi's `PodSpec` and `Container` are large
/// structs of inline options (1.5 KiB and 2.1 KiB however little they hold), so a small
/// Deployment's decoded spec costs ~8 KiB; its JSON a few hundred bytes. It is decoded again
/// only when a plan reads the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PackedSpec(Box<str>);

impl PackedSpec {
    fn pack(spec: &PodSpec) -> Self {
        // Serializing a PodSpec (plain data, string-keyed maps) cannot fail.
        Self(serde_json::to_string(spec).unwrap_or_default().into())
    }

    fn unpack(&self) -> PodSpec {
        serde_json::from_str(&self.0).unwrap_or_else(|e| {
            // Unreachable: the text is our own serialization of a PodSpec.
            tracing::error!(error = %e, "a stored pod spec does not decode");
            PodSpec::default()
        })
    }
}

/// What the store holds of one workload: the projection without its pod spec, which is kept
/// packed; [`Stored`] is materialized from it on read.
#[derive(Debug, Clone)]
struct Held {
    bare: Arc<WorkloadView>,
    spec: PackedSpec,
    version: Option<u64>,
    interest: Arc<Interest>,
}

impl Held {
    fn materialize(&self) -> Stored {
        let mut view = (*self.bare).clone();
        view.pod_spec = self.spec.unpack().into();
        Stored {
            view: Arc::new(view),
            version: self.version,
            interest: self.interest.clone(),
        }
    }
}

/// A listed workload, packed on arrival so a large initial list never holds every decoded
/// pod spec at once; [`WorkloadStore::replace`] takes them.
#[derive(Debug)]
pub struct Fresh(Held);

impl Fresh {
    /// The workload's key.
    pub fn key(&self) -> &WorkloadKey {
        &self.0.bare.key
    }
}

type Local = (WorkloadKind, ObjectName);

/// The workloads that name one source. Most sources are named by one workload (its own
/// ConfigMap or Secret), and a one-element `BTreeSet` costs a whole ~370-byte node.
#[derive(Debug)]
enum Members {
    One(Local),
    Many(BTreeSet<Local>),
}

impl Members {
    fn insert(&mut self, local: Local) {
        match self {
            Self::One(only) if *only == local => {}
            Self::One(only) => *self = Self::Many(BTreeSet::from([only.clone(), local])),
            Self::Many(set) => {
                set.insert(local);
            }
        }
    }

    /// Removes `local`; true when no member is left.
    fn remove(&mut self, local: &Local) -> bool {
        match self {
            Self::One(only) => only == local,
            Self::Many(set) => {
                set.remove(local);
                if set.len() == 1
                    && let Some(last) = set.pop_first()
                {
                    *self = Self::One(last);
                }
                matches!(self, Self::Many(set) if set.is_empty())
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Local> {
        let (one, many) = match self {
            Self::One(only) => (Some(only), None),
            Self::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[derive(Debug, Default)]
struct Namespace {
    workloads: HashMap<Local, Held>,
    named: HashMap<(SourceKind, ObjectName), Members>,
    scans: HashMap<SourceKind, BTreeSet<Local>>,
    followers: HashMap<ObjectName, BTreeSet<ObjectName>>,
}

impl Namespace {
    fn index(&mut self, local: &Local, interest: &Interest) {
        for source in interest.names() {
            match self.named.entry(source.clone()) {
                Entry::Occupied(mut members) => members.get_mut().insert(local.clone()),
                Entry::Vacant(vacant) => {
                    vacant.insert(Members::One(local.clone()));
                }
            }
        }
        for kind in &interest.scans {
            self.scans.entry(*kind).or_default().insert(local.clone());
        }
        if let Some(deployment) = &interest.follows {
            self.followers
                .entry(deployment.clone())
                .or_default()
                .insert(local.1.clone());
        }
    }

    fn unindex(&mut self, local: &Local, interest: &Interest) {
        for source in interest.names() {
            if self
                .named
                .get_mut(source)
                .is_some_and(|members| members.remove(local))
            {
                self.named.remove(source);
            }
        }
        for kind in &interest.scans {
            if let Some(set) = self.scans.get_mut(kind) {
                set.remove(local);
            }
        }
        if let Some(deployment) = &interest.follows
            && let Some(set) = self.followers.get_mut(deployment)
        {
            set.remove(&local.1);
            if set.is_empty() {
                self.followers.remove(deployment);
            }
        }
    }

    fn insert(&mut self, local: Local, stored: Held) {
        if let Some(old) = self.workloads.remove(&local) {
            self.unindex(&local, &old.interest);
        }
        self.index(&local, &stored.interest);
        self.workloads.insert(local, stored);
    }

    fn remove(&mut self, local: &Local) {
        if let Some(old) = self.workloads.remove(local) {
            self.unindex(local, &old.interest);
        }
    }
}

/// The workload store.
#[derive(Debug, Default)]
pub struct WorkloadStore {
    policy: Policy,
    namespaces: RwLock<HashMap<ObjectName, Namespace>>,
}

impl WorkloadStore {
    /// An empty store whose interests follow `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            namespaces: RwLock::default(),
        }
    }

    fn held(&self, mut view: WorkloadView, version: Option<u64>) -> Held {
        let interest = Arc::new(Interest::of(&view, &self.policy));
        let spec = PackedSpec::pack(&std::mem::take::<BoxedPodSpec>(&mut view.pod_spec));
        Held {
            bare: Arc::new(view),
            spec,
            version,
            interest,
        }
    }

    /// Packs a listed projection for [`Self::replace`] (its interest is computed now).
    pub fn fresh(&self, view: WorkloadView, version: Option<u64>) -> Fresh {
        Fresh(self.held(view, version))
    }

    /// Stores a projection seen at `version`; returns false when nothing we read changed or the
    /// projection is older than the one held (e.g. a watch event overtaken by our own write's
    /// response, which is stored at once so the next plan sees what we just wrote).
    pub fn upsert(&self, mut view: WorkloadView, version: Option<u64>) -> bool {
        let spec = PackedSpec::pack(&view.pod_spec);
        let pod_spec = std::mem::take(&mut view.pod_spec);
        let local = (view.key.kind, view.key.name.clone());
        let namespace = view.key.namespace.clone();
        {
            let mut map = self.write();
            if let Some(held) = map
                .get_mut(&namespace)
                .and_then(|ns| ns.workloads.get_mut(&local))
            {
                if let (Some(new), Some(old)) = (version, held.version)
                    && new < old
                {
                    return false;
                }
                if held.spec == spec && *held.bare == view {
                    held.version = version.or(held.version);
                    return false;
                }
            }
        }
        // Interest (pattern compilation) is computed outside the lock; the version is checked
        // again under it, so a newer object stored meanwhile (a write's response) is kept.
        view.pod_spec = pod_spec;
        let stored = self.held(view, version);
        let mut map = self.write();
        let ns = map.entry(namespace).or_default();
        if let (Some(new), Some(Some(held))) =
            (version, ns.workloads.get(&local).map(|held| held.version))
            && new < held
        {
            return false;
        }
        ns.insert(local, stored);
        true
    }

    /// Forgets a workload, unless the one held is a newer object of the same name (a Job we
    /// re-created before the watch reported the old one's deletion).
    pub fn remove(&self, key: &WorkloadKey, uid: &str) {
        let mut map = self.write();
        let Some(ns) = map.get_mut(&key.namespace) else {
            return;
        };
        let local = (key.kind, key.name.clone());
        if ns.workloads.get(&local).is_some_and(|s| s.bare.uid == uid) {
            ns.remove(&local);
        }
    }

    /// Forgets a workload whatever its UID (an object that no longer decodes).
    pub fn forget(&self, key: &WorkloadKey) {
        if let Some(ns) = self.write().get_mut(&key.namespace) {
            ns.remove(&(key.kind, key.name.clone()));
        }
    }

    /// Replaces all workloads of `kind` (in `namespace`, or everywhere) after a (re)list.
    /// Returns the workloads that vanished (their deletion fell into a watch gap).
    pub fn replace(
        &self,
        kind: WorkloadKind,
        namespace: Option<&str>,
        fresh: Vec<Fresh>,
    ) -> Vec<Arc<WorkloadView>> {
        let mut map = self.write();
        let mut removed = Vec::new();
        for (name, ns) in map.iter_mut() {
            if namespace.is_some_and(|n| n != name) {
                continue;
            }
            let gone: Vec<Local> = ns
                .workloads
                .keys()
                .filter(|(k, _)| *k == kind)
                .cloned()
                .collect();
            for local in gone {
                if let Some(old) = ns.workloads.get(&local) {
                    removed.push(old.materialize().view);
                }
                ns.remove(&local);
            }
        }
        for Fresh(stored) in fresh {
            let key = &stored.bare.key;
            let local = (key.kind, key.name.clone());
            removed.retain(|v| v.key != *key);
            map.entry(key.namespace.clone())
                .or_default()
                .insert(local, stored);
        }
        removed
    }

    /// One workload.
    pub fn get(&self, key: &WorkloadKey) -> Option<Stored> {
        self.read()
            .get(&key.namespace)?
            .workloads
            .get(&(key.kind, key.name.clone()))
            .map(Held::materialize)
    }

    /// The workloads that may track source `kind/name` of `namespace`: those whose interest
    /// names it, those with pattern items for its kind, and the Rollouts following a
    /// Deployment among them.
    pub fn candidates(&self, namespace: &str, kind: SourceKind, name: &str) -> Vec<Stored> {
        let map = self.read();
        let Some(ns) = map.get(namespace) else {
            return Vec::new();
        };
        let mut locals: BTreeSet<&Local> = BTreeSet::new();
        if let Some(named) = ns.named.get(&(kind, ObjectName::from(name))) {
            locals.extend(named.iter());
        }
        if let Some(scans) = ns.scans.get(&kind) {
            locals.extend(scans);
        }
        let mut found: Vec<Stored> = Vec::with_capacity(locals.len());
        let mut followers = BTreeSet::new();
        for local in locals {
            if local.0 == WorkloadKind::Deployment
                && let Some(rollouts) = ns.followers.get(&local.1)
            {
                followers.extend(rollouts.iter().cloned());
            }
            if let Some(stored) = ns.workloads.get(local) {
                found.push(stored.materialize());
            }
        }
        for rollout in followers {
            let local = (WorkloadKind::Rollout, rollout);
            if let Some(stored) = ns.workloads.get(&local)
                && !found
                    .iter()
                    .any(|s| s.view.key.kind == local.0 && s.view.key.name == local.1)
            {
                found.push(stored.materialize());
            }
        }
        found
    }

    /// The Rollouts whose `workloadRef` names Deployment `deployment`.
    pub fn followers(&self, deployment: &WorkloadKey) -> Vec<WorkloadKey> {
        self.read()
            .get(&deployment.namespace)
            .and_then(|ns| ns.followers.get(&deployment.name))
            .map(|names| {
                names
                    .iter()
                    .map(|name| WorkloadKey {
                        kind: WorkloadKind::Rollout,
                        namespace: deployment.namespace.clone(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keys of the workloads of `kind`.
    pub fn keys_of(&self, kind: WorkloadKind) -> Vec<WorkloadKey> {
        self.keys_where(|k| k.kind == kind)
    }

    /// Keys of the workloads in `namespace`.
    pub fn keys_in(&self, namespace: &str) -> Vec<WorkloadKey> {
        self.read()
            .get(namespace)
            .map(|ns| ns.workloads.values().map(|s| s.bare.key.clone()).collect())
            .unwrap_or_default()
    }

    /// Keys of the workloads `keep` accepts.
    pub fn keys_where(&self, keep: impl Fn(&WorkloadKey) -> bool) -> Vec<WorkloadKey> {
        self.read()
            .values()
            .flat_map(|ns| ns.workloads.values().map(|s| &s.bare.key))
            .filter(|k| keep(k))
            .cloned()
            .collect()
    }

    /// The workloads `keep` accepts (the governor counts rollouts with it), without their pod
    /// spec (empty in these views): decoding every spec for a scan would cost more than the
    /// scan; [`Self::get`] has it.
    pub fn views_where(&self, keep: impl Fn(&WorkloadView) -> bool) -> Vec<Arc<WorkloadView>> {
        self.read()
            .values()
            .flat_map(|ns| ns.workloads.values().map(|s| &s.bare))
            .filter(|v| keep(v))
            .cloned()
            .collect()
    }

    /// How many workloads of each kind are stored (diagnostics).
    pub fn count_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for ns in self.read().values() {
            for (kind, _) in ns.workloads.keys() {
                *counts.entry(kind.as_str()).or_default() += 1;
            }
        }
        counts
    }

    /// Number of stored workloads.
    pub fn len(&self) -> usize {
        self.read().values().map(|ns| ns.workloads.len()).sum()
    }

    /// Whether no workload is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectName, Namespace>> {
        self.namespaces
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectName, Namespace>> {
        self.namespaces
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(
        kind: WorkloadKind,
        ns: &str,
        name: &str,
        annotations: &[(&str, &str)],
        spec: serde_json::Value,
    ) -> WorkloadView {
        WorkloadView {
            key: WorkloadKey {
                kind,
                namespace: ns.into(),
                name: name.into(),
            },
            uid: format!("uid-{name}"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pod_spec: serde_json::from_value(spec).unwrap(),
            ..WorkloadView::default()
        }
    }

    fn names(found: &[Stored]) -> Vec<String> {
        let mut names: Vec<String> = found.iter().map(|s| s.view.key.name.to_string()).collect();
        names.sort();
        names
    }

    const CM: SourceKind = SourceKind::ConfigMap;

    fn store() -> WorkloadStore {
        let store = WorkloadStore::new(Policy::default());
        let envfrom = |name: &str| json!({"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": name}}]}]});
        store.upsert(
            view(WorkloadKind::Deployment, "a", "refs", &[], envfrom("cfg")),
            Some(1),
        );
        store.upsert(
            view(
                WorkloadKind::Deployment,
                "a",
                "named",
                &[("configmap.reloader.stakater.com/reload", "cfg")],
                json!({"containers": []}),
            ),
            Some(1),
        );
        store.upsert(
            view(
                WorkloadKind::StatefulSet,
                "a",
                "pattern",
                &[("configmap.reloader.stakater.com/reload", "c.*")],
                json!({"containers": []}),
            ),
            Some(1),
        );
        store.upsert(
            view(
                WorkloadKind::DaemonSet,
                "a",
                "other",
                &[],
                envfrom("unrelated"),
            ),
            Some(1),
        );
        store.upsert(
            view(
                WorkloadKind::Deployment,
                "b",
                "elsewhere",
                &[],
                envfrom("cfg"),
            ),
            Some(1),
        );
        let mut rollout = view(
            WorkloadKind::Rollout,
            "a",
            "follower",
            &[],
            json!({"containers": []}),
        );
        rollout.workload_ref = Some(Ok("refs".into()));
        store.upsert(rollout, Some(1));
        store
    }

    #[test]
    fn candidates_are_the_workloads_that_can_track_the_source() {
        let store = store();
        assert_eq!(
            names(&store.candidates("a", CM, "cfg")),
            ["follower", "named", "pattern", "refs"]
        );
        assert_eq!(
            names(&store.candidates("a", CM, "unrelated")),
            ["other", "pattern"]
        );
        assert_eq!(
            names(&store.candidates("a", SourceKind::Secret, "cfg")),
            Vec::<String>::new()
        );
        assert_eq!(names(&store.candidates("b", CM, "cfg")), ["elsewhere"]);
        assert!(store.candidates("none", CM, "cfg").is_empty());
    }

    #[test]
    fn changes_move_index_entries() {
        let store = store();
        let moved = view(
            WorkloadKind::Deployment,
            "a",
            "refs",
            &[],
            json!({"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "new"}}]}]}),
        );
        assert!(store.upsert(moved.clone(), Some(2)));
        assert!(!store.upsert(moved, Some(2)), "same projection: no change");
        assert_eq!(
            names(&store.candidates("a", CM, "cfg")),
            ["named", "pattern"]
        );
        assert_eq!(
            names(&store.candidates("a", CM, "new")),
            ["follower", "pattern", "refs"]
        );
        assert!(
            !store.upsert(
                view(
                    WorkloadKind::Deployment,
                    "a",
                    "refs",
                    &[],
                    json!({"containers": []})
                ),
                Some(1)
            ),
            "older version ignored"
        );
        let refs = WorkloadKey {
            kind: WorkloadKind::Deployment,
            namespace: "a".into(),
            name: "refs".into(),
        };
        assert_eq!(store.followers(&refs).len(), 1);
        store.remove(&refs, "another-uid");
        assert!(
            store.get(&refs).is_some(),
            "a newer object of the same name stays"
        );
        store.remove(&refs, "uid-refs");
        assert!(store.get(&refs).is_none());
        assert_eq!(names(&store.candidates("a", CM, "new")), ["pattern"]);
    }

    #[test]
    fn a_source_named_by_one_then_more_then_none_keeps_exactly_its_readers() {
        let store = WorkloadStore::new(Policy::default());
        let reader = |name: &str| {
            view(
                WorkloadKind::Deployment,
                "a",
                name,
                &[],
                json!({"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "shared"}}]}]}),
            )
        };
        let key = |name: &str| WorkloadKey {
            kind: WorkloadKind::Deployment,
            namespace: "a".into(),
            name: name.into(),
        };
        let readers = |store: &WorkloadStore| names(&store.candidates("a", CM, "shared"));
        store.upsert(reader("one"), Some(1));
        assert_eq!(readers(&store), ["one"]);
        store.upsert(reader("one"), Some(2));
        assert_eq!(readers(&store), ["one"], "stored again, named once");
        store.upsert(reader("two"), Some(3));
        store.upsert(reader("three"), Some(4));
        assert_eq!(readers(&store), ["one", "three", "two"]);
        store.remove(&key("one"), "uid-one");
        store.remove(&key("three"), "uid-three");
        assert_eq!(readers(&store), ["two"]);
        store.upsert(reader("four"), Some(5));
        assert_eq!(readers(&store), ["four", "two"]);
        store.remove(&key("two"), "uid-two");
        store.remove(&key("four"), "uid-four");
        assert!(readers(&store).is_empty());
        assert!(
            store.read().get("a").is_some_and(|ns| ns.named.is_empty()),
            "no entry is left for a source nobody names"
        );
    }

    #[test]
    fn replace_after_relist_keeps_other_kinds_and_namespaces() {
        let store = store();
        store.replace(WorkloadKind::Deployment, Some("a"), vec![]);
        assert_eq!(
            names(&store.candidates("a", CM, "cfg")),
            ["pattern"],
            "no followers of a gone Deployment either"
        );
        assert_eq!(names(&store.candidates("b", CM, "cfg")), ["elsewhere"]);
        store.replace(
            WorkloadKind::Deployment,
            None,
            vec![store.fresh(
                view(
                    WorkloadKind::Deployment,
                    "c",
                    "new",
                    &[],
                    json!({"containers": []}),
                ),
                None,
            )],
        );
        assert_eq!(store.keys_of(WorkloadKind::Deployment).len(), 1);
        assert_eq!(store.len(), 4);
        assert_eq!(store.count_by_kind()["StatefulSet"], 1);
    }

    #[test]
    fn a_stored_pod_spec_reads_back_whole_and_an_unchanged_one_is_no_change() {
        let store = store();
        let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app",
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}],
            "resources": {"limits": {"memory": "64Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}],
            "volumes": [{"name": "s", "secret": {"secretName": "db"}}]});
        let original = view(WorkloadKind::Deployment, "a", "app", &[], spec);
        assert!(store.upsert(original.clone(), Some(1)));
        let stored = store.get(&original.key).unwrap();
        assert_eq!(*stored.view, original, "the pod spec survives the packing");
        assert!(
            !store.upsert(original.clone(), Some(2)),
            "same object, newer version"
        );
        let mut changed = original.clone();
        changed.pod_spec.containers[0].image = Some("registry.invalid/app:2".into());
        assert!(store.upsert(changed.clone(), Some(3)));
        assert_eq!(*store.get(&original.key).unwrap().view, changed);
        let scanned = store.views_where(|v| v.key == original.key);
        assert!(
            scanned[0].pod_spec.containers.is_empty(),
            "scans carry no spec"
        );
    }
}
