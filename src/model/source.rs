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

/// The sources of one namespace, by kind and name (a name of up to 24 bytes is stored inline,
/// without an allocation of its own: the cache holds tens of thousands).
pub type NamespaceSources = BTreeMap<(SourceKind, CompactString), SourceEntry>;

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
