//! Keyed digests for Secrets (issue 15, item 3). Upstream's marker for a Secret is an unkeyed
//! SHA-1 of its data, written into the pod template, where anyone who can read the workload can
//! check a guess of a low-entropy value offline. With `--secret-digest-key-secret` the marker
//! becomes HMAC-SHA256(key, upstream's canonical bytes), hex, which cannot be checked without
//! the key.
//!
//! A recorded value says which form it is in, so switching on or off, or rotating the key,
//! rolls nothing by itself:
//!
//! ```text
//! <40 hex>                          upstream's SHA-1 (ledger, env var, last-reloaded-from)
//! hmac-sha256:<key id>:<64 hex>     ledger entry in keyed form (the key id: 8 hex)
//! <64 hex>                          keyed marker in the pod template (no key id there)
//! ```
//!
//! The source cache holds, per Secret, the SHA-1 and the HMAC under every key configured (the
//! current one first, then the previous ones), so a value in any known form is recognised as
//! current when the data is unchanged, and the ledger is then rewritten in the form written
//! now, on metadata only.

use std::fmt;
use std::sync::Arc;

use crate::model::digest::Digest;

/// Data entry of the key Secret holding the key new markers are written with.
pub const KEY_ENTRY: &str = "key";

/// Data entry of the key Secret holding the key used before a rotation: still recognised, so
/// values recorded with it stay verifiable across a restart until they are rewritten.
pub const PREVIOUS_KEY_ENTRY: &str = "previous";

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Keys kept for recognising older values (the current one included): the key Secret's two
/// and the ones this process saw replaced.
const MAX_KEYS: usize = 4;

/// Prefix of a ledger entry in keyed form (never hex, so never mistaken for a SHA-1).
const RECORD_PREFIX: &str = "hmac-sha256:";

/// Names a digest key without revealing anything about it: the first 4 bytes of a SHA-256 of
/// the key under a fixed context, as 8 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 4]);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"kube-reloader digest key id\0");
        context.update(key);
        let full = context.finish();
        let mut id = [0u8; 4];
        for (slot, byte) in id.iter_mut().zip(full.as_ref()) {
            *slot = *byte;
        }
        Self(id)
    }

    /// Reads the 8 hex characters of a recorded value.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key Secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `key` entry.
    #[error("it has no data entry {KEY_ENTRY:?}")]
    Missing,
    /// A key shorter than [`MIN_KEY_LEN`].
    #[error(
        "its entry {entry:?} holds {len} bytes; a digest key needs at least {MIN_KEY_LEN} random bytes"
    )]
    TooShort {
        /// The data entry.
        entry: &'static str,
        /// Its length.
        len: usize,
    },
}

/// One digest key. Its bytes are never printed (`Debug` shows the id only).
pub struct DigestKey {
    id: KeyId,
    key: ring::hmac::Key,
}

impl DigestKey {
    /// A key from the bytes of the key Secret's `entry`.
    pub fn new(entry: &'static str, bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                entry,
                len: bytes.len(),
            });
        }
        Ok(Self {
            id: KeyId::of(bytes),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
        })
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestKey({})", self.id)
    }
}

/// The keys a Secret's data is digested under: the current one first (new markers use it when
/// `write_keyed`), then older ones kept to recognise values recorded with them.
#[derive(Debug, Clone, Default)]
pub struct DigestKeys {
    keys: Vec<Arc<DigestKey>>,
    write_keyed: bool,
}

impl DigestKeys {
    /// `current` then `older` (duplicates dropped, at most a few kept); new markers are keyed
    /// when `write_keyed`, else upstream's SHA-1 (the keys then only verify old values, for
    /// switching off).
    pub fn new(current: DigestKey, older: Vec<DigestKey>, write_keyed: bool) -> Self {
        let mut keys: Vec<Arc<DigestKey>> = Vec::new();
        for key in std::iter::once(current).chain(older) {
            if !keys.iter().any(|k| k.id == key.id) && keys.len() < MAX_KEYS {
                keys.push(Arc::new(key));
            }
        }
        Self { keys, write_keyed }
    }

    /// These keys after a change of the key Secret to `next`: its keys first, then the keys
    /// held so far, so values recorded with a key replaced while running stay recognised.
    pub fn rotated(&self, next: DigestKeys) -> DigestKeys {
        let mut keys = next.keys;
        for key in &self.keys {
            if !keys.iter().any(|k| k.id == key.id) && keys.len() < MAX_KEYS {
                keys.push(key.clone());
            }
        }
        Self {
            keys,
            write_keyed: next.write_keyed,
        }
    }

    /// The ids, current first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Whether new Secret markers are keyed.
    pub fn write_keyed(&self) -> bool {
        self.write_keyed && !self.keys.is_empty()
    }

    /// HMAC contexts for one Secret's data, one per key.
    pub fn start(&self) -> KeyedHasher {
        KeyedHasher {
            contexts: self
                .keys
                .iter()
                .map(|k| (k.id, ring::hmac::Context::with_key(&k.key)))
                .collect(),
            write: self.write_keyed(),
        }
    }
}

/// HMACs being computed over one Secret's canonical bytes.
pub struct KeyedHasher {
    contexts: Vec<(KeyId, ring::hmac::Context)>,
    write: bool,
}

impl KeyedHasher {
    /// Feeds canonical bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for (_, context) in &mut self.contexts {
            context.update(bytes);
        }
    }

    /// The digests.
    pub fn finish(self) -> KeyedDigests {
        let entries: Vec<(KeyId, [u8; 32])> = self
            .contexts
            .into_iter()
            .map(|(id, context)| {
                let tag = context.sign();
                let mut out = [0u8; 32];
                for (slot, byte) in out.iter_mut().zip(tag.as_ref()) {
                    *slot = *byte;
                }
                (id, out)
            })
            .collect();
        KeyedDigests::new(entries, self.write)
    }
}

/// The HMACs of one Secret's data under each key configured when it was read (current first);
/// empty for a ConfigMap, a SecretProviderClass, or when no key is configured.
/// Boxed, so that the many sources without them pay one pointer (the cache holds one per
/// source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedDigests(Option<Box<KeyedForms>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyedForms {
    /// Never empty.
    entries: Box<[(KeyId, [u8; 32])]>,
    /// The first entry is the form new markers are written in.
    write: bool,
}

impl KeyedDigests {
    fn new(entries: Vec<(KeyId, [u8; 32])>, write: bool) -> Self {
        Self((!entries.is_empty()).then(|| {
            Box::new(KeyedForms {
                entries: entries.into_boxed_slice(),
                write,
            })
        }))
    }

    fn entries(&self) -> &[(KeyId, [u8; 32])] {
        self.0.as_deref().map(|f| &*f.entries).unwrap_or_default()
    }

    /// The HMAC under `id`, if that key was configured.
    fn get(&self, id: KeyId) -> Option<&[u8; 32]> {
        self.entries()
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, d)| d)
    }

    /// The form new markers are written in, when keyed.
    fn written(&self) -> Option<&(KeyId, [u8; 32])> {
        self.0
            .as_deref()
            .filter(|f| f.write)
            .and_then(|f| f.entries.first())
    }

    /// Whether no key was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// What a recorded whole-object value says about a source's data now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recognition {
    /// It is a digest of the data now, in one of the known forms.
    Same,
    /// It is not (the data changed, or it is no digest at all).
    Differs,
    /// It was recorded with a key that is not configured: it cannot be checked.
    Unverifiable,
}

/// A source's data now, in every form a recorded value may be in.
#[derive(Debug, Clone, Copy)]
pub struct DataNow<'a> {
    /// Upstream's SHA-1.
    pub sha1: &'a Digest,
    /// The HMACs, for a Secret with a digest key configured.
    pub keyed: &'a KeyedDigests,
}

impl<'a> DataNow<'a> {
    /// Upstream's digest only (a ConfigMap, a SecretProviderClass, no key configured).
    pub fn sha1(sha1: &'a Digest) -> Self {
        static NONE: std::sync::LazyLock<KeyedDigests> =
            std::sync::LazyLock::new(KeyedDigests::default);
        Self { sha1, keyed: &NONE }
    }

    /// The marker a reload writes into the pod template: the HMAC under the current key, hex,
    /// when markers are keyed, else upstream's SHA-1.
    pub fn marker(self) -> Digest {
        match self.keyed.written() {
            Some((_, hmac)) => Digest::of_hmac(hmac),
            None => self.sha1.clone(),
        }
    }

    /// The whole-object value the ledger records: `hmac-sha256:<key id>:<hex>` when markers are
    /// keyed, else upstream's SHA-1.
    pub fn record(self) -> String {
        match self.keyed.written() {
            Some((id, hmac)) => format!("{RECORD_PREFIX}{id}:{}", hex::encode(hmac)),
            None => self.sha1.as_str().to_owned(),
        }
    }

    /// Compares a recorded whole-object value (ledger, env var, `last-reloaded-from`) with the
    /// data now.
    pub fn recognize(self, recorded: &str) -> Recognition {
        let same = |yes: bool| {
            if yes {
                Recognition::Same
            } else {
                Recognition::Differs
            }
        };
        if let Some((id, hmac)) = split_record(recorded) {
            let (Some(id), Some(hmac)) = (KeyId::parse(id), tag(hmac)) else {
                return Recognition::Differs;
            };
            return match self.keyed.get(id) {
                Some(now) => same(constant_time_eq(now, &hmac)),
                None => Recognition::Unverifiable,
            };
        }
        if recorded.len() == 64 {
            // A keyed marker read from the pod template: no key id, try every key.
            let Some(hmac) = tag(recorded) else {
                return Recognition::Differs;
            };
            if self.keyed.is_empty() {
                return Recognition::Unverifiable;
            }
            return same(
                self.keyed
                    .entries()
                    .iter()
                    .any(|(_, now)| constant_time_eq(now, &hmac)),
            );
        }
        same(recorded == self.sha1.as_str())
    }
}

/// The marker a recorded whole-object value corresponds to: the hex of a keyed record, else the
/// value itself (to compare a ledger with a change's marker).
pub fn record_marker(recorded: &str) -> &str {
    split_record(recorded).map_or(recorded, |(_, hmac)| hmac)
}

/// The key id of a recorded value in keyed form (for reports and `explain`).
pub fn record_key_id(recorded: &str) -> Option<KeyId> {
    split_record(recorded).and_then(|(id, _)| KeyId::parse(id))
}

/// A record in keyed form, as (key id, hmac) text.
fn split_record(recorded: &str) -> Option<(&str, &str)> {
    recorded.strip_prefix(RECORD_PREFIX)?.split_once(':')
}

/// A 32-byte tag from its hex.
fn tag(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// Equality of two tags in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"0123456789abcdef0123456789abcdef";
    const KEY_B: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn keys(current: &[u8], older: &[&[u8]], write: bool) -> DigestKeys {
        DigestKeys::new(
            DigestKey::new(KEY_ENTRY, current).unwrap(),
            older
                .iter()
                .map(|k| DigestKey::new(PREVIOUS_KEY_ENTRY, k).unwrap())
                .collect(),
            write,
        )
    }

    fn digests(keys: &DigestKeys, data: &[u8]) -> KeyedDigests {
        let mut hasher = keys.start();
        hasher.update(data);
        hasher.finish()
    }

    fn sha1() -> Digest {
        Digest::parse("f83e99e324ba68ccc373a58ef1eb42f8ab88646a").unwrap()
    }

    #[test]
    fn the_marker_is_hmac_sha256_of_the_canonical_bytes_in_hex() {
        // Computed apart, with ring's HMAC over upstream's canonical bytes of {password: hunter2}.
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY_A),
            b"password=hunter2",
        );
        let sha1 = sha1();
        let keyed = digests(&keys(KEY_A, &[], true), b"password=hunter2");
        let now = DataNow {
            sha1: &sha1,
            keyed: &keyed,
        };
        assert_eq!(now.marker().as_str(), hex::encode(expected.as_ref()));
        assert_eq!(now.marker().as_str().len(), 64);
        let id = KeyId::of(KEY_A);
        assert_eq!(
            now.record(),
            format!("hmac-sha256:{id}:{}", hex::encode(expected.as_ref()))
        );
    }

    #[test]
    fn every_known_form_of_unchanged_data_is_recognised() {
        let sha1 = sha1();
        let old = digests(&keys(KEY_A, &[], true), b"x=1");
        let rotated = digests(&keys(KEY_B, &[KEY_A], true), b"x=1");
        let changed = digests(&keys(KEY_B, &[KEY_A], true), b"x=2");
        let before = DataNow {
            sha1: &sha1,
            keyed: &old,
        };
        let after = DataNow {
            sha1: &sha1,
            keyed: &rotated,
        };
        // (recorded, now, expected)
        let rows = [
            (sha1.as_str().to_owned(), after, Recognition::Same),
            (before.record(), after, Recognition::Same),
            (
                before.marker().as_str().to_owned(),
                after,
                Recognition::Same,
            ),
            (after.record(), after, Recognition::Same),
            ("0".repeat(40), after, Recognition::Differs),
            ("hmac-sha256:zz:00".to_owned(), after, Recognition::Differs),
            (
                before.record(),
                DataNow::sha1(&sha1),
                Recognition::Unverifiable,
            ),
            (
                before.marker().as_str().to_owned(),
                DataNow::sha1(&sha1),
                Recognition::Unverifiable,
            ),
            (
                after.record(),
                DataNow {
                    sha1: &sha1,
                    keyed: &changed,
                },
                Recognition::Differs,
            ),
        ];
        for (recorded, now, expected) in rows {
            assert_eq!(now.recognize(&recorded), expected, "{recorded}");
        }
        // A key not configured any more cannot verify what it recorded.
        let only_b = digests(&keys(KEY_B, &[], true), b"x=1");
        let now = DataNow {
            sha1: &sha1,
            keyed: &only_b,
        };
        assert_eq!(now.recognize(&before.record()), Recognition::Unverifiable);
        assert_eq!(record_key_id(&before.record()), Some(KeyId::of(KEY_A)));
        assert_eq!(record_key_id(sha1.as_str()), None);
        assert_eq!(record_marker(&before.record()), before.marker().as_str());
        assert_eq!(record_marker(sha1.as_str()), sha1.as_str());
    }

    #[test]
    fn switched_off_the_keys_verify_but_upstreams_digest_is_written() {
        let sha1 = sha1();
        let keyed = digests(&keys(KEY_A, &[], false), b"x=1");
        let on = digests(&keys(KEY_A, &[], true), b"x=1");
        let now = DataNow {
            sha1: &sha1,
            keyed: &keyed,
        };
        assert_eq!(now.marker(), sha1);
        assert_eq!(now.record(), sha1.as_str());
        let was = DataNow {
            sha1: &sha1,
            keyed: &on,
        };
        assert_eq!(now.recognize(&was.record()), Recognition::Same);
    }

    #[test]
    fn rotation_keeps_the_replaced_key_for_recognition() {
        let first = keys(KEY_A, &[], true);
        let next = first.rotated(keys(KEY_B, &[], true));
        assert_eq!(next.ids(), vec![KeyId::of(KEY_B), KeyId::of(KEY_A)]);
        let again = next.rotated(keys(KEY_B, &[], true));
        assert_eq!(again.ids(), next.ids(), "no duplicates");
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert_eq!(
            DigestKey::new(KEY_ENTRY, b"short").unwrap_err(),
            KeyError::TooShort {
                entry: KEY_ENTRY,
                len: 5
            }
        );
        let key = DigestKey::new(KEY_ENTRY, KEY_A).unwrap();
        let printed = format!("{key:?} {:?}", keys(KEY_A, &[KEY_B], true));
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains(&KeyId::of(KEY_A).to_string()));
    }
}
