//! What is kept of one reload source (ConfigMap, Secret, SecretProviderClass): its digest and
//! what the two annotations a decision reads decide. The data itself is hashed on
//! arrival and dropped; a digest per key stays, for key-level triggers.

use std::collections::BTreeMap;

use compact_str::CompactString;

use crate::model::digest::{KeyDigests, Sha1Digest, SourceKind};
use crate::model::keyed::KeyedDigests;

/// What the cache keeps of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Digest of its data; `None` for a tombstone (deleted, kept for `--reload-on-delete`).
    pub digest: Option<Sha1Digest>,
    /// The digest of each key's value (empty for a tombstone and a SecretProviderClass), so a
    /// workload reading only some keys can ignore changes to the others.
    pub keys: KeyDigests,
    /// A Secret's keyed digests, when digest keys are configured (empty otherwise).
    pub keyed: KeyedDigests,
    /// What its ignore and match annotations say (the annotations themselves are dropped).
    pub flags: SourceFlags,
    /// Appeared after the initial sync (for `--reload-on-create`).
    pub created_while_running: bool,
    /// Unix seconds when we saw its data change while running (`None` when unchanged since
    /// start or since it appeared): a workload created before then, with no record of the
    /// source, ran the old data (see `PlanOptions::reload_unrecorded`).
    pub data_changed_at: Option<i64>,
}

impl SourceEntry {
    /// The entry a deleted source leaves for `--reload-on-delete`: no digest, no keys.
    pub fn tombstone(self) -> Self {
        Self {
            digest: None,
            keys: KeyDigests::default(),
            keyed: KeyedDigests::default(),
            ..self
        }
    }
}

/// What a source's two decision annotations say, as two bits instead of their strings (the
/// cache holds one per source): upstream compares both with `"true"` exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceFlags {
    /// Its ignore annotation (`reloader.stakater.com/ignore`) is `"true"`: nothing reloads
    /// for it.
    pub ignored: bool,
    /// Its match annotation (`reloader.stakater.com/match`) is `"true"`: workloads that set
    /// `reloader.stakater.com/search` track it.
    pub matched: bool,
}

/// The sources of one namespace, by kind and name. A cached source holds no allocation of its
/// own: its name is inline up to 24 bytes, and the per-key digests of every source are packed
/// one after the other in one buffer. Tens of thousands of 20–60-byte allocations, made while
/// an initial list decoded, each kept a page of freed decode buffers resident.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSources {
    entries: BTreeMap<(SourceKind, CompactString), Held>,
    /// Every entry's [`KeyDigests`] in packed form, each at its [`Held::keys`].
    packed: Vec<u8>,
    /// Bytes of `packed` no entry points at (replaced or deleted since the last compaction).
    unused: usize,
}

/// A [`SourceEntry`] as the namespace holds it: its per-key digests as a span of the buffer.
#[derive(Debug, Clone)]
struct Held {
    digest: Option<Sha1Digest>,
    keys: Span,
    keyed: KeyedDigests,
    flags: SourceFlags,
    created_while_running: bool,
    data_changed_at: Option<i64>,
}

/// Where one entry's packed key digests are: `start..start + len` of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// Unused bytes the buffer may hold before it is compacted: at least this many, and at least as
/// many as the live ones (so compaction costs O(1) per byte written, amortized).
const COMPACT_AFTER: usize = 4096;

impl NamespaceSources {
    /// No sources.
    pub const fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            packed: Vec::new(),
            unused: 0,
        }
    }

    /// The entry of `kind/name`.
    pub fn get(&self, kind: SourceKind, name: &str) -> Option<SourceEntry> {
        self.entries
            .get(&(kind, CompactString::from(name)))
            .map(|held| self.entry(held))
    }

    /// The names of every source of `kind`, sorted.
    pub fn names(&self, kind: SourceKind) -> impl Iterator<Item = &str> {
        self.entries
            .range((kind, CompactString::default())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|((_, name), _)| name.as_str())
    }

    /// Every entry, sorted by kind and name.
    pub fn iter(&self) -> impl Iterator<Item = (SourceKind, &str, SourceEntry)> {
        self.entries
            .iter()
            .map(|((kind, name), held)| (*kind, name.as_str(), self.entry(held)))
    }

    /// Number of entries (tombstones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of live (non-tombstone) entries.
    pub fn live(&self) -> usize {
        self.entries.values().filter(|h| h.digest.is_some()).count()
    }

    /// Inserts or replaces the entry of `kind/name`.
    pub fn insert(&mut self, kind: SourceKind, name: &str, entry: SourceEntry) {
        let held = Self::hold(&mut self.packed, entry);
        if let Some(old) = self.entries.insert((kind, name.into()), held) {
            self.unused += old.keys.len as usize;
        }
        self.compact_if_due();
    }

    /// Removes the entry of `kind/name`.
    pub fn remove(&mut self, kind: SourceKind, name: &str) {
        if let Some(old) = self.entries.remove(&(kind, CompactString::from(name))) {
            self.unused += old.keys.len as usize;
        }
        self.compact_if_due();
    }

    fn entry(&self, held: &Held) -> SourceEntry {
        Self::entry_in(&self.packed, held)
    }

    fn entry_in(packed: &[u8], held: &Held) -> SourceEntry {
        SourceEntry {
            digest: held.digest,
            keys: KeyDigests::from_packed(packed.get(held.keys.range()).unwrap_or_default()),
            keyed: held.keyed.clone(),
            flags: held.flags,
            created_while_running: held.created_while_running,
            data_changed_at: held.data_changed_at,
        }
    }

    /// Appends the entry's key digests to the buffer.
    fn hold(packed: &mut Vec<u8>, entry: SourceEntry) -> Held {
        let keys = Self::append(packed, entry.keys.packed());
        Held {
            digest: entry.digest,
            keys,
            keyed: entry.keyed,
            flags: entry.flags,
            created_while_running: entry.created_while_running,
            data_changed_at: entry.data_changed_at,
        }
    }

    fn append(packed: &mut Vec<u8>, bytes: &[u8]) -> Span {
        // A namespace's buffer stays far below 4 GiB (tens of bytes per source); past that,
        // an entry keeps no key digests (whole-object behaviour) rather than a wrong span.
        match (u32::try_from(packed.len()), u32::try_from(bytes.len())) {
            (Ok(start), Ok(len)) if start.checked_add(len).is_some() => {
                packed.extend_from_slice(bytes);
                Span { start, len }
            }
            _ => Span::default(),
        }
    }

    fn compact_if_due(&mut self) {
        let live = self.packed.len().saturating_sub(self.unused);
        if self.unused > COMPACT_AFTER.max(live) {
            let mut packed = Vec::with_capacity(live);
            for held in self.entries.values_mut() {
                let bytes = self.packed.get(held.keys.range()).unwrap_or_default();
                held.keys = Self::append(&mut packed, bytes);
            }
            self.packed = packed;
            self.unused = 0;
        }
    }
}

impl FromIterator<((SourceKind, CompactString), SourceEntry)> for NamespaceSources {
    /// Built from its entries in one pass: the tree's nodes full, the buffer exactly sized.
    fn from_iter<I: IntoIterator<Item = ((SourceKind, CompactString), SourceEntry)>>(
        entries: I,
    ) -> Self {
        let sorted: BTreeMap<_, _> = entries.into_iter().collect();
        let size = sorted.values().map(|e| e.keys.packed().len()).sum();
        let mut packed = Vec::with_capacity(size);
        let entries = sorted
            .into_iter()
            .map(|(key, entry)| (key, Self::hold(&mut packed, entry)))
            .collect();
        Self {
            entries,
            packed,
            unused: 0,
        }
    }
}

impl Extend<((SourceKind, CompactString), SourceEntry)> for NamespaceSources {
    fn extend<I: IntoIterator<Item = ((SourceKind, CompactString), SourceEntry)>>(
        &mut self,
        entries: I,
    ) {
        for ((kind, name), entry) in entries {
            self.insert(kind, &name, entry);
        }
    }
}

impl IntoIterator for NamespaceSources {
    type Item = ((SourceKind, CompactString), SourceEntry);
    type IntoIter = IntoEntries;

    /// Every entry, by value, sorted by kind and name.
    fn into_iter(self) -> IntoEntries {
        IntoEntries {
            entries: self.entries.into_iter(),
            packed: self.packed,
        }
    }
}

/// The entries of a [`NamespaceSources`], by value.
#[derive(Debug)]
pub struct IntoEntries {
    entries: std::collections::btree_map::IntoIter<(SourceKind, CompactString), Held>,
    packed: Vec<u8>,
}

impl Iterator for IntoEntries {
    type Item = ((SourceKind, CompactString), SourceEntry);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, held) = self.entries.next()?;
        Some((key, NamespaceSources::entry_in(&self.packed, &held)))
    }
}

impl<const N: usize> From<[((SourceKind, CompactString), SourceEntry); N]> for NamespaceSources {
    fn from(entries: [((SourceKind, CompactString), SourceEntry); N]) -> Self {
        entries.into_iter().collect()
    }
}

/// What a source's data is digested into on arrival (the data itself is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// Upstream's SHA-1.
    pub digest: Sha1Digest,
    /// The digest of each key's value.
    pub keys: KeyDigests,
    /// A Secret's keyed digests (empty for a ConfigMap, or without digest keys).
    pub keyed: KeyedDigests,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest;

    const CM: SourceKind = SourceKind::ConfigMap;
    const SECRET: SourceKind = SourceKind::Secret;

    /// A source whose one key `key` holds `value`, hashed as the watcher hashes it.
    fn entry(key: &str, value: &str) -> SourceEntry {
        let (digest, keys) = digest::configmap_content([(key, value)], []);
        SourceEntry {
            digest: Some(digest),
            keys,
            keyed: KeyedDigests::default(),
            flags: SourceFlags::default(),
            created_while_running: false,
            data_changed_at: None,
        }
    }

    #[test]
    fn entries_read_back_as_inserted() {
        let mut sources = NamespaceSources::new();
        let a = entry("a", "1");
        let b = SourceEntry {
            flags: SourceFlags {
                ignored: true,
                matched: false,
            },
            created_while_running: true,
            data_changed_at: Some(7),
            ..entry("config.yaml", "x: 1")
        };
        sources.insert(CM, "a", a.clone());
        sources.insert(SECRET, "b-with-a-name-longer-than-24-bytes", b.clone());
        assert_eq!(sources.get(CM, "a"), Some(a.clone()));
        assert_eq!(
            sources.get(SECRET, "b-with-a-name-longer-than-24-bytes"),
            Some(b.clone())
        );
        assert_eq!(sources.get(SECRET, "a"), None, "kinds are apart");
        assert!(sources.get(CM, "a").is_some());
        assert_eq!(sources.names(CM).collect::<Vec<_>>(), ["a"]);
        assert_eq!(sources.len(), 2);
        let collected: NamespaceSources = sources.clone().into_iter().collect();
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            sources.iter().collect::<Vec<_>>()
        );
        sources.insert(CM, "a", a.clone().tombstone());
        assert_eq!(sources.live(), 1);
        assert_eq!(sources.get(CM, "a").map(|e| e.keys.len()), Some(0));
        sources.remove(CM, "a");
        assert_eq!(sources.get(CM, "a"), None);
        assert_eq!(
            sources.get(SECRET, "b-with-a-name-longer-than-24-bytes"),
            Some(b)
        );
    }

    #[test]
    fn updates_compact_the_buffer_and_keep_every_entry() {
        let mut sources: NamespaceSources = (0..50)
            .map(|i| ((CM, format!("s-{i}").into()), entry("k", &i.to_string())))
            .collect();
        let size = sources.packed.len();
        assert_eq!(sources.unused, 0, "built in one pass");
        // Every source updated many times: garbage grows, and compaction bounds it.
        for round in 0..200 {
            for i in (0..50).step_by(7) {
                sources.insert(CM, &format!("s-{i}"), entry("k", &format!("{i}/{round}")));
            }
            assert!(
                sources.unused <= COMPACT_AFTER.max(size),
                "{}",
                sources.unused
            );
        }
        for i in 0..50 {
            let expected = if i % 7 == 0 {
                entry("k", &format!("{i}/199"))
            } else {
                entry("k", &i.to_string())
            };
            assert_eq!(sources.get(CM, &format!("s-{i}")), Some(expected), "s-{i}");
        }
        assert!(sources.packed.len() <= size + COMPACT_AFTER.max(size) + 64);
    }
}
