//! What is kept of one reload source (ConfigMap, Secret, SecretProviderClass): its digest and
//! what the two annotations a decision reads decide. The data itself is hashed on
//! arrival and dropped; a digest per key stays, for key-level triggers.

use std::collections::BTreeMap;

use compact_str::CompactString;

use crate::model::digest::{KeyDigests, Sha1Digest, SourceKind};
use crate::model::interest::SOURCE_KINDS;
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
    /// By kind (in [`SOURCE_KINDS`] order), then name: a key without the kind is 8 bytes smaller.
    entries: [BTreeMap<CompactString, Held>; 3],
    /// Every entry's [`KeyDigests`] in packed form, each at its [`Held::keys`].
    packed: Vec<u8>,
    /// Bytes of `packed` no entry points at (replaced or deleted since the last compaction).
    unused: usize,
}

/// A [`SourceEntry`] as the namespace holds it: its per-key digests as a span of the buffer.
/// 48 bytes: the three flags and whether `data_changed_at` is set share one byte beside the
/// 21-byte digest, where `SourceEntry`'s own fields would pad to 56.
#[derive(Debug, Clone)]
struct Held {
    digest: Option<Sha1Digest>,
    bits: u8,
    keys: Span,
    keyed: KeyedDigests,
    /// `SourceEntry::data_changed_at` when [`CHANGED`] is set.
    data_changed_at: i64,
}

/// [`Held::bits`]: `SourceFlags::ignored`.
const IGNORED: u8 = 1;
/// [`Held::bits`]: `SourceFlags::matched`.
const MATCHED: u8 = 1 << 1;
/// [`Held::bits`]: `SourceEntry::created_while_running`.
const CREATED: u8 = 1 << 2;
/// [`Held::bits`]: `SourceEntry::data_changed_at` is set.
const CHANGED: u8 = 1 << 3;

/// `kind`'s index in `NamespaceSources::entries`: its place in [`SOURCE_KINDS`], which is
/// `SourceKind`'s `Ord` order.
const fn slot(kind: SourceKind) -> usize {
    match kind {
        SourceKind::ConfigMap => 0,
        SourceKind::Secret => 1,
        SourceKind::SecretProviderClass => 2,
    }
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
            entries: [BTreeMap::new(), BTreeMap::new(), BTreeMap::new()],
            packed: Vec::new(),
            unused: 0,
        }
    }

    /// The entry of `kind/name`.
    pub fn get(&self, kind: SourceKind, name: &str) -> Option<SourceEntry> {
        self.entries[slot(kind)]
            .get(name)
            .map(|held| self.entry(held))
    }

    /// The names of every source of `kind`, sorted.
    pub fn names(&self, kind: SourceKind) -> impl Iterator<Item = &str> {
        self.entries[slot(kind)].keys().map(CompactString::as_str)
    }

    /// Every entry, sorted by kind and name.
    pub fn iter(&self) -> impl Iterator<Item = (SourceKind, &str, SourceEntry)> {
        SOURCE_KINDS.into_iter().flat_map(move |kind| {
            self.entries[slot(kind)]
                .iter()
                .map(move |(name, held)| (kind, name.as_str(), self.entry(held)))
        })
    }

    /// Number of entries (tombstones included).
    pub fn len(&self) -> usize {
        self.entries.iter().map(BTreeMap::len).sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(BTreeMap::is_empty)
    }

    /// Number of live (non-tombstone) entries.
    pub fn live(&self) -> usize {
        self.held().filter(|h| h.digest.is_some()).count()
    }

    /// Inserts or replaces the entry of `kind/name`.
    pub fn insert(&mut self, kind: SourceKind, name: &str, entry: SourceEntry) {
        let held = Self::hold(&mut self.packed, entry);
        if let Some(old) = self.entries[slot(kind)].insert(name.into(), held) {
            self.unused += old.keys.len as usize;
        }
        self.compact_if_due();
    }

    /// Removes the entry of `kind/name`.
    pub fn remove(&mut self, kind: SourceKind, name: &str) {
        if let Some(old) = self.entries[slot(kind)].remove(name) {
            self.unused += old.keys.len as usize;
        }
        self.compact_if_due();
    }

    fn held(&self) -> impl Iterator<Item = &Held> {
        self.entries.iter().flat_map(BTreeMap::values)
    }

    fn entry(&self, held: &Held) -> SourceEntry {
        Self::entry_in(&self.packed, held)
    }

    fn entry_in(packed: &[u8], held: &Held) -> SourceEntry {
        let set = |bit: u8| held.bits & bit != 0;
        SourceEntry {
            digest: held.digest,
            keys: KeyDigests::from_packed(packed.get(held.keys.range()).unwrap_or_default()),
            keyed: held.keyed.clone(),
            flags: SourceFlags {
                ignored: set(IGNORED),
                matched: set(MATCHED),
            },
            created_while_running: set(CREATED),
            data_changed_at: set(CHANGED).then_some(held.data_changed_at),
        }
    }

    /// Appends the entry's key digests to the buffer.
    fn hold(packed: &mut Vec<u8>, entry: SourceEntry) -> Held {
        let keys = Self::append(packed, entry.keys.packed());
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        Held {
            digest: entry.digest,
            bits: bit(entry.flags.ignored, IGNORED)
                | bit(entry.flags.matched, MATCHED)
                | bit(entry.created_while_running, CREATED)
                | bit(entry.data_changed_at.is_some(), CHANGED),
            keys,
            keyed: entry.keyed,
            data_changed_at: entry.data_changed_at.unwrap_or_default(),
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
            for held in self.entries.iter_mut().flat_map(BTreeMap::values_mut) {
                let bytes = self.packed.get(held.keys.range()).unwrap_or_default();
                held.keys = Self::append(&mut packed, bytes);
            }
            self.packed = packed;
            self.unused = 0;
        }
    }
}

impl FromIterator<((SourceKind, CompactString), SourceEntry)> for NamespaceSources {
    /// Built from its sorted entries: the trees' nodes full (inserted one by one they stay a
    /// third empty), the buffer exactly sized; of entries with the same kind and name, the last
    /// one counts.
    fn from_iter<I: IntoIterator<Item = ((SourceKind, CompactString), SourceEntry)>>(
        entries: I,
    ) -> Self {
        let sorted: BTreeMap<_, _> = entries.into_iter().collect();
        let size = sorted.values().map(|e| e.keys.packed().len()).sum();
        let mut packed = Vec::with_capacity(size);
        let mut by_kind: [Vec<(CompactString, Held)>; 3] = Default::default();
        for ((kind, name), entry) in sorted {
            by_kind[slot(kind)].push((name, Self::hold(&mut packed, entry)));
        }
        Self {
            entries: by_kind.map(BTreeMap::from_iter),
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
            entries: self.entries.map(BTreeMap::into_iter),
            at: 0,
            packed: self.packed,
        }
    }
}

/// The entries of a [`NamespaceSources`], by value.
#[derive(Debug)]
pub struct IntoEntries {
    /// By kind, in [`SOURCE_KINDS`] order.
    entries: [std::collections::btree_map::IntoIter<CompactString, Held>; 3],
    /// The kind being read.
    at: usize,
    packed: Vec<u8>,
}

impl Iterator for IntoEntries {
    type Item = ((SourceKind, CompactString), SourceEntry);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(entries) = self.entries.get_mut(self.at) {
            if let Some((name, held)) = entries.next() {
                let entry = NamespaceSources::entry_in(&self.packed, &held);
                return Some(((SOURCE_KINDS[self.at], name), entry));
            }
            self.at += 1;
        }
        None
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
    fn inserts_updates_and_removals_read_back_as_a_map_does() {
        // A model map beside the namespace, through updates of listed entries, creations,
        // removals and re-creations, and the buffer compactions they trigger.
        let listed: Vec<_> = (0..200)
            .map(|i| {
                (
                    (SECRET, CompactString::from(format!("s{i:03}"))),
                    entry("k", "0"),
                )
            })
            .collect();
        let mut model: BTreeMap<(SourceKind, CompactString), SourceEntry> =
            listed.iter().cloned().collect();
        let mut sources: NamespaceSources = listed.into_iter().collect();
        let mut seed = 7_u64;
        for step in 0..3000_u32 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let kind = if seed >> 60 == 0 { CM } else { SECRET };
            let name = CompactString::from(format!("s{:03}", (seed >> 33) % 400));
            if (seed >> 20).is_multiple_of(3) {
                sources.remove(kind, &name);
                model.remove(&(kind, name.clone()));
            } else {
                let value = step.to_string();
                let e = entry("k", &value);
                sources.insert(kind, &name, e.clone());
                model.insert((kind, name.clone()), e);
            }
            if step.is_multiple_of(97) {
                let read: Vec<_> = sources
                    .iter()
                    .map(|(k, n, e)| ((k, CompactString::from(n)), e))
                    .collect();
                assert_eq!(
                    read,
                    model.clone().into_iter().collect::<Vec<_>>(),
                    "step {step}"
                );
            }
            assert_eq!(sources.len(), model.len(), "step {step}");
            assert_eq!(
                sources.get(kind, &name),
                model.get(&(kind, name.clone())).cloned(),
                "step {step}"
            );
        }
        assert_eq!(
            sources.names(SECRET).collect::<Vec<_>>(),
            model
                .keys()
                .filter(|(k, _)| *k == SECRET)
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
        );
        let owned: Vec<_> = sources.into_iter().collect();
        assert_eq!(owned, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn of_entries_with_the_same_name_the_last_counts() {
        let sources = NamespaceSources::from([
            ((CM, "a".into()), entry("k", "1")),
            ((CM, "b".into()), entry("k", "2")),
            ((CM, "a".into()), entry("k", "3")),
            ((CM, "a".into()), entry("k", "4")),
        ]);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources.get(CM, "a"), Some(entry("k", "4")));
        assert_eq!(sources.get(CM, "b"), Some(entry("k", "2")));
    }

    #[test]
    fn every_flag_and_change_time_reads_back() {
        let mut sources = NamespaceSources::new();
        let mut expected = Vec::new();
        for (i, (ignored, matched, created, changed)) in [
            (false, false, false, None),
            (true, false, false, None),
            (false, true, false, Some(0)),
            (false, false, true, Some(-1)),
            (true, true, true, Some(i64::MAX)),
        ]
        .into_iter()
        .enumerate()
        {
            let entry = SourceEntry {
                flags: SourceFlags { ignored, matched },
                created_while_running: created,
                data_changed_at: changed,
                ..entry("k", "v")
            };
            let name = format!("s{i}");
            sources.insert(SECRET, &name, entry.clone());
            expected.push((SECRET, name, entry));
        }
        let read: Vec<_> = sources
            .iter()
            .map(|(kind, name, entry)| (kind, name.to_owned(), entry))
            .collect();
        assert_eq!(read, expected);
        // A cached source's size beside its name: what the tree's leaves hold per entry.
        assert!(std::mem::size_of::<Held>() <= 48);
    }

    #[test]
    fn kinds_iterate_in_order_whatever_the_insertion_order() {
        let sources = NamespaceSources::from([
            (
                (SourceKind::SecretProviderClass, "c".into()),
                entry("k", "1"),
            ),
            ((SECRET, "b".into()), entry("k", "2")),
            ((CM, "z".into()), entry("k", "3")),
            ((CM, "a".into()), entry("k", "4")),
        ]);
        let order: Vec<_> = sources.iter().map(|(k, n, _)| (k, n)).collect();
        assert_eq!(
            order,
            [
                (CM, "a"),
                (CM, "z"),
                (SECRET, "b"),
                (SourceKind::SecretProviderClass, "c")
            ]
        );
        let owned: Vec<_> = sources.into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            owned,
            [
                (CM, "a".into()),
                (CM, "z".into()),
                (SECRET, "b".into()),
                (SourceKind::SecretProviderClass, "c".into())
            ]
        );
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
