//! The digest-only source cache. A ConfigMap or Secret is hashed the moment it arrives and only
//! `{digest, per-key digests, what its ignore and match annotations say}` is kept: memory does
//! not grow with data size, and Secret bytes are never stored.

use std::collections::HashMap;
use std::sync::RwLock;

use compact_str::CompactString;

use crate::model::digest::SourceKind;
pub use crate::model::source::{NamespaceSources, SourceEntry};

/// What a change to the cache means for workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New (or back after a deletion): workloads must be re-planned.
    Created,
    /// Its data changed: workloads must be re-planned.
    DataChanged,
    /// Only an annotation the decision reads (ignore, match) changed: workloads must be
    /// re-planned, but it is no data change (no webhook).
    AnnotationsChanged,
    /// Only metadata the decision does not read changed (upstream's `no_data_change`).
    NoDataChange,
}

impl Change {
    /// Whether workloads must be re-planned.
    pub fn is_relevant(self) -> bool {
        self != Change::NoDataChange
    }

    /// Upstream's event type of a relevant change with new data: "add" or "update".
    pub fn data_event(self) -> Option<&'static str> {
        match self {
            Change::Created => Some("add"),
            Change::DataChanged => Some("update"),
            Change::AnnotationsChanged | Change::NoDataChange => None,
        }
    }
}

/// `fresh` taking the place of `existing`: what changed, and the entry to keep, which keeps
/// whether the source appeared while running and, unless its data changed now, when it last
/// changed.
fn succeed(existing: &SourceEntry, fresh: SourceEntry) -> (Change, SourceEntry) {
    let change = if existing.digest != fresh.digest {
        Change::DataChanged
    } else if existing.flags != fresh.flags || existing.keyed != fresh.keyed {
        // New keyed digests of the same data (the digest key rotated): re-plan, so ledgers are
        // rewritten in the new form; no data change.
        Change::AnnotationsChanged
    } else {
        Change::NoDataChange
    };
    let data_changed_at = if change == Change::DataChanged {
        fresh.data_changed_at
    } else {
        existing.data_changed_at
    };
    let kept = SourceEntry {
        created_while_running: existing.created_while_running,
        data_changed_at,
        ..fresh
    };
    (change, kept)
}

/// All sources in scope, by namespace.
#[derive(Debug, Default)]
pub struct SourceCache {
    by_namespace: RwLock<HashMap<String, NamespaceSources>>,
}

impl SourceCache {
    /// Inserts or updates a source.
    pub fn upsert(
        &self,
        kind: SourceKind,
        namespace: &str,
        name: &str,
        entry: SourceEntry,
    ) -> Change {
        let mut map = self.write();
        let slot = map.entry(namespace.to_owned()).or_default();
        match slot.get(kind, name) {
            Some(existing) if existing.digest.is_some() => {
                let (change, next) = succeed(&existing, entry);
                // Most updates change nothing kept here (metadata the cache drops): leave the
                // key-digest buffer alone.
                if next != existing {
                    slot.insert(kind, name, next);
                }
                change
            }
            _ => {
                // Appearing is not a change of data a running workload could have read.
                let entry = SourceEntry {
                    data_changed_at: None,
                    ..entry
                };
                slot.insert(kind, name, entry);
                Change::Created
            }
        }
    }

    /// Removes a source, or turns it into a tombstone when `keep_tombstone`.
    pub fn remove(&self, kind: SourceKind, namespace: &str, name: &str, keep_tombstone: bool) {
        let mut map = self.write();
        let Some(slot) = map.get_mut(namespace) else {
            return;
        };
        if keep_tombstone {
            if let Some(entry) = slot.get(kind, name) {
                slot.insert(kind, name, entry.tombstone());
            }
        } else {
            slot.remove(kind, name);
            if slot.is_empty() {
                map.remove(namespace);
            }
        }
    }

    /// Replaces every entry of `kind` (in `namespace`, or everywhere when `None`) with `fresh`
    /// after a (re)list, and returns the namespaces where something relevant changed.
    /// Objects that vanished during a watch gap become tombstones when `keep_tombstones`.
    pub fn replace(
        &self,
        kind: SourceKind,
        namespace: Option<&str>,
        fresh: HashMap<(String, String), SourceEntry>,
        keep_tombstones: bool,
    ) -> Vec<String> {
        let mut map = self.write();
        let mut changed = std::collections::BTreeSet::new();
        let mut by_namespace: HashMap<String, Vec<(String, SourceEntry)>> = HashMap::new();
        for ((ns, name), entry) in fresh {
            by_namespace.entry(ns).or_default().push((name, entry));
        }
        let touched: std::collections::BTreeSet<String> = map
            .keys()
            .filter(|ns| namespace.is_none_or(|n| n == ns.as_str()))
            .chain(by_namespace.keys())
            .cloned()
            .collect();
        for ns in touched {
            let mut listed: HashMap<CompactString, SourceEntry> = by_namespace
                .remove(&ns)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, entry)| (CompactString::from(name), entry))
                .collect();
            let old = map.remove(&ns).unwrap_or_default();
            let mut next = Vec::with_capacity(old.len() + listed.len());
            for ((k, name), entry) in old {
                if k != kind {
                    next.push(((k, name), entry));
                    continue;
                }
                match listed.remove(&name) {
                    Some(new) => {
                        // A tombstone listed again counts as a data change here.
                        let (change, merged) = succeed(&entry, new);
                        if change.is_relevant() {
                            changed.insert(ns.clone());
                        }
                        next.push(((k, name), merged));
                    }
                    None if entry.digest.is_none() => {
                        if keep_tombstones {
                            next.push(((k, name), entry));
                        }
                    }
                    None => {
                        changed.insert(ns.clone());
                        if keep_tombstones {
                            next.push(((k, name), entry.tombstone()));
                        }
                    }
                }
            }
            for (name, mut entry) in listed {
                entry.data_changed_at = None;
                changed.insert(ns.clone());
                next.push(((kind, name), entry));
            }
            // Built again from its sorted entries, every node of the tree is full (inserted
            // one by one they stay a third empty) and the key-digest buffer holds no garbage:
            // what an initial list of tens of thousands of sources costs most.
            if !next.is_empty() {
                map.insert(ns, next.into_iter().collect());
            }
        }
        changed.into_iter().collect()
    }

    /// Runs `f` on the sources of one namespace, under the read lock (the namespace is not
    /// copied; each entry `f` reads is).
    pub fn with_namespace<T>(&self, namespace: &str, f: impl FnOnce(&NamespaceSources) -> T) -> T {
        static EMPTY: NamespaceSources = NamespaceSources::new();
        let map = self.read();
        f(map.get(namespace).unwrap_or(&EMPTY))
    }

    /// A copy of the sources of one namespace (tests and diagnostics).
    pub fn namespace(&self, namespace: &str) -> Vec<((SourceKind, String), SourceEntry)> {
        self.with_namespace(namespace, |slot| {
            slot.iter()
                .map(|(kind, name, entry)| ((kind, name.to_owned()), entry))
                .collect()
        })
    }

    /// One source's entry.
    pub fn get(&self, kind: SourceKind, namespace: &str, name: &str) -> Option<SourceEntry> {
        self.read()
            .get(namespace)
            .and_then(|slot| slot.get(kind, name))
    }

    /// Number of live (non-tombstone) sources, for metrics and tests.
    pub fn len(&self) -> usize {
        self.read().values().map(NamespaceSources::live).sum()
    }

    /// Whether the cache holds no live source.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, NamespaceSources>> {
        self.by_namespace
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, NamespaceSources>> {
        self.by_namespace
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::Sha1Digest;

    fn entry(digest: &str) -> SourceEntry {
        SourceEntry {
            digest: Sha1Digest::parse(&digest.repeat(40)[..40]),
            keys: Default::default(),
            keyed: Default::default(),
            flags: Default::default(),
            created_while_running: false,
            data_changed_at: Some(7),
        }
    }

    #[test]
    fn the_time_of_a_data_change_is_kept_until_the_next_one() {
        let cache = SourceCache::default();
        let at = |cache: &SourceCache| cache.namespace("ns")[0].1.data_changed_at;
        cache.upsert(SourceKind::ConfigMap, "ns", "a", entry("1"));
        assert_eq!(at(&cache), None, "appearing is not a change");
        cache.upsert(SourceKind::ConfigMap, "ns", "a", entry("2"));
        assert_eq!(at(&cache), Some(7));
        let later = SourceEntry {
            data_changed_at: Some(9),
            ..entry("2")
        };
        cache.upsert(SourceKind::ConfigMap, "ns", "a", later.clone());
        assert_eq!(at(&cache), Some(7), "same data: the change time stays");
        let fresh = HashMap::from([(
            ("ns".to_owned(), "a".to_owned()),
            SourceEntry {
                data_changed_at: Some(11),
                ..entry("3")
            },
        )]);
        cache.replace(SourceKind::ConfigMap, None, fresh, false);
        assert_eq!(at(&cache), Some(11), "a relist that finds new data");
    }

    #[test]
    fn upsert_reports_data_changes_only() {
        let cache = SourceCache::default();
        assert_eq!(
            cache.upsert(SourceKind::ConfigMap, "ns", "a", entry("1")),
            Change::Created
        );
        assert_eq!(
            cache.upsert(SourceKind::ConfigMap, "ns", "a", entry("1")),
            Change::NoDataChange
        );
        assert_eq!(
            cache.upsert(SourceKind::ConfigMap, "ns", "a", entry("2")),
            Change::DataChanged
        );
        let mut annotated = entry("2");
        annotated.flags.matched = true;
        assert_eq!(
            cache.upsert(SourceKind::ConfigMap, "ns", "a", annotated),
            Change::AnnotationsChanged
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn replace_after_relist_finds_changes_and_vanished_objects() {
        let cache = SourceCache::default();
        cache.upsert(SourceKind::ConfigMap, "a", "same", entry("1"));
        cache.upsert(SourceKind::ConfigMap, "b", "gone", entry("1"));
        cache.upsert(SourceKind::Secret, "c", "other-kind", entry("1"));
        let fresh = HashMap::from([
            (("a".to_owned(), "same".to_owned()), entry("1")),
            (("d".to_owned(), "new".to_owned()), entry("3")),
        ]);
        let changed = cache.replace(SourceKind::ConfigMap, None, fresh, false);
        assert_eq!(changed, vec!["b".to_owned(), "d".to_owned()]);
        assert_eq!(cache.namespace("b"), vec![]);
        assert_eq!(cache.namespace("c").len(), 1, "other kinds untouched");
    }

    #[test]
    fn a_large_list_is_stored_whole_beside_other_kinds() {
        let cache = SourceCache::default();
        cache.upsert(SourceKind::Secret, "ns", "s-0500", entry("9"));
        cache.upsert(SourceKind::ConfigMap, "ns", "c-0001", entry("1"));
        let fresh: HashMap<_, _> = (0..1000)
            .map(|i| (("ns".to_owned(), format!("c-{i:04}")), entry("2")))
            .collect();
        cache.replace(SourceKind::ConfigMap, Some("ns"), fresh, false);
        let all = cache.namespace("ns");
        assert_eq!(all.len(), 1001);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        let digest = |kind, name| cache.get(kind, "ns", name).and_then(|e| e.digest);
        assert_eq!(digest(SourceKind::ConfigMap, "c-0001"), entry("2").digest);
        assert_eq!(digest(SourceKind::ConfigMap, "c-0999"), entry("2").digest);
        assert_eq!(digest(SourceKind::Secret, "s-0500"), entry("9").digest);
    }

    #[test]
    fn tombstones_for_reload_on_delete() {
        let cache = SourceCache::default();
        cache.upsert(SourceKind::Secret, "ns", "s", entry("1"));
        cache.remove(SourceKind::Secret, "ns", "s", true);
        assert_eq!(cache.namespace("ns")[0].1.digest, None);
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.upsert(SourceKind::Secret, "ns", "s", entry("2")),
            Change::Created,
            "a tombstone coming back is a creation"
        );
    }
}
