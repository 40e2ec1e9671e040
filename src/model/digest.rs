//! Upstream-compatible digests of ConfigMap, Secret and SecretProviderClassPodStatus data, and
//! the env-var names they are written under.
//!
//! These must match stakater/Reloader byte for byte: a workload already carrying
//! `STAKATER_FOO_CONFIGMAP=<sha1>` from upstream must not be restarted after switching.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha1::{Digest as _, Sha1};

use crate::model::keyed::{DigestKeys, KeyedDigests};

/// The kind of a reload source, as upstream spells it in env-var suffixes and Event messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// A core/v1 ConfigMap.
    ConfigMap,
    /// A core/v1 Secret.
    Secret,
    /// A secrets-store CSI SecretProviderClass (through its pod statuses).
    SecretProviderClass,
}

impl SourceKind {
    /// `CONFIGMAP`, `SECRET` or `SECRETPROVIDERCLASS`: the env-var suffix and the `type` field
    /// of upstream's `last-reloaded-from` annotation.
    pub fn upstream_type(self) -> &'static str {
        match self {
            Self::ConfigMap => "CONFIGMAP",
            Self::Secret => "SECRET",
            Self::SecretProviderClass => "SECRETPROVIDERCLASS",
        }
    }

    /// Lowercase name used in our own ledger keys and logs.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
            Self::SecretProviderClass => "secretproviderclass",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key_prefix())
    }
}

/// A marker value: a 40-character lowercase hex SHA-1, as upstream writes it, or (a Secret's,
/// with keyed digests on) a 64-character hex HMAC-SHA256 ([`crate::model::keyed`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a digest read back from a workload (env var, annotation); `None` unless it is
    /// 40 (SHA-1) or 64 (HMAC-SHA256) lowercase hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        (matches!(text.len(), 40 | 64)
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.to_owned()))
    }
}

/// Upstream's SHA-1 of a source's data as its 20 bytes: what the source cache holds per source
/// (inline, no allocation); [`Sha1Digest::marker`] gives the hex a workload carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha1Digest([u8; 20]);

impl Sha1Digest {
    /// Reads a 40-character lowercase hex SHA-1 marker.
    pub fn parse(marker: &str) -> Option<Self> {
        let digest = Digest::parse(marker).filter(|d| d.as_str().len() == 40)?;
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(digest.as_str(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The marker: 40 lowercase hex characters, as upstream writes it.
    pub fn marker(&self) -> Digest {
        Digest(hex::encode(self.0))
    }
}

impl fmt::Display for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha1Digest({})", hex::encode(self.0))
    }
}

impl Digest {
    /// The marker of a keyed digest: its hex.
    pub fn of_hmac(tag: &[u8; 32]) -> Self {
        Self(hex::encode(tag))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Upstream's marker for a deleted source under the annotations strategy:
/// `sha1("__RELOADER_EMPTY_DELETE_MARKER__")`.
pub fn delete_marker() -> Digest {
    sha1_of_entries(&mut [(b"__RELOADER_EMPTY_DELETE_MARKER__".as_slice(), None)])
}

/// Digest of a ConfigMap's content: sorted `key=value` entries of `data` and of `binaryData`
/// (values base64-encoded, padded) joined by `;`.
pub fn configmap_data<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
    binary_data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Digest {
    configmap_sha1(data, binary_data).marker()
}

/// [`configmap_data`] as bytes.
fn configmap_sha1<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
    binary_data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Sha1Digest {
    use base64::Engine as _;
    let encoded: Vec<(&str, String)> = binary_data
        .into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = data
        .into_iter()
        .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes())))
        .chain(
            encoded
                .iter()
                .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes()))),
        )
        .collect();
    hash_entries(&mut entries, |_| {})
}

/// Digest of a Secret's content: sorted `key=<raw decoded bytes>` entries joined by `;`.
pub fn secret_data<'a>(data: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Digest {
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = data
        .into_iter()
        .map(|(k, v)| (k.as_bytes(), Some(v)))
        .collect();
    sha1_of_entries(&mut entries)
}

/// Length in bytes of one per-key digest: SHA-256 truncated to 128 bits, enough to tell two
/// values of one key apart (these digests only detect change; they are never a marker).
pub const KEY_DIGEST_LEN: usize = 16;

/// The per-key digests of one source, sorted by key: what key-level triggers compare, kept
/// instead of the data (which is dropped after hashing). Packed into one allocation of
/// `[key length (2 bytes)][key][digest]` per key, since the cache holds one per source: 18
/// bytes plus the key's length per key. Empty for a source without keys (a
/// SecretProviderClass) or a tombstone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyDigests(Box<[u8]>);

impl KeyDigests {
    /// From (key, digest) pairs in any order; a repeated key keeps its last digest.
    fn from_unsorted(mut entries: Vec<(&str, [u8; KEY_DIGEST_LEN])>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(b.0));
        // dedup_by keeps the first of a run; reverse the runs' order by scanning from the end.
        entries.reverse();
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.reverse();
        // Kubernetes limits a key to 253 characters; a longer one (never served) is cut.
        let len = |key: &str| key.len().min(usize::from(u16::MAX));
        let size = entries
            .iter()
            .map(|(k, _)| 2 + len(k) + KEY_DIGEST_LEN)
            .sum();
        let mut packed = Vec::with_capacity(size);
        for (key, digest) in &entries {
            let n = len(key);
            packed.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
            packed.extend_from_slice(key.as_bytes().get(..n).unwrap_or_default());
            packed.extend_from_slice(digest);
        }
        Self(packed.into_boxed_slice())
    }

    /// The packed form, for a cache that keeps many sources' digests in one buffer.
    pub(crate) fn packed(&self) -> &[u8] {
        &self.0
    }

    /// From bytes [`KeyDigests::packed`] gave.
    pub(crate) fn from_packed(packed: &[u8]) -> Self {
        Self(packed.into())
    }

    /// The (key, digest) pairs, sorted by key.
    fn iter(&self) -> impl Iterator<Item = (&str, &[u8; KEY_DIGEST_LEN])> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let (key, tail) = tail.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
            let (digest, tail) = tail.split_first_chunk::<KEY_DIGEST_LEN>()?;
            rest = tail;
            // Written from a &str above; a key cut inside a character reads as empty.
            Some((std::str::from_utf8(key).unwrap_or_default(), digest))
        })
    }

    /// The digest of `key`'s value, `None` when the source has no such key.
    pub fn get(&self, key: &str) -> Option<&[u8; KEY_DIGEST_LEN]> {
        self.iter()
            .take_while(|(k, _)| *k <= key)
            .find(|(k, _)| *k == key)
            .map(|(_, digest)| digest)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the source has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// The same digests keyed by `secret` (a Secret's uid): SHA-256 of the secret and each
    /// digest, truncated. A key-level ledger entry sits on the workload, where anyone who can
    /// read the workload can read it; keyed by the uid (which only those who can read the
    /// Secret can see) it cannot be checked offline against a guessed value of one key.
    pub fn keyed(self, secret: &str) -> Self {
        let entries = self
            .iter()
            .map(|(key, digest)| {
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                context.update(b"kube-reloader key digest\0");
                context.update(secret.as_bytes());
                context.update(&[0]);
                context.update(digest.as_slice());
                let full = context.finish();
                let mut out = [0u8; KEY_DIGEST_LEN];
                for (slot, byte) in out.iter_mut().zip(full.as_ref()) {
                    *slot = *byte;
                }
                (key, out)
            })
            .collect();
        Self::from_unsorted(entries)
    }
}

impl fmt::Debug for KeyDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, d)| (k, hex::encode(d))))
            .finish()
    }
}

/// Where a key's value came from: a ConfigMap's `data` (text) or `binaryData`/a Secret's
/// `data` (bytes). Hashed in, so a value moving between the two counts as a change.
#[derive(Clone, Copy)]
enum ValueForm {
    Text = 1,
    Bytes = 2,
}

/// SHA-256 (truncated) of one key's value, tagged with the form it came in.
fn key_digest(form: ValueForm, value: &[u8]) -> [u8; KEY_DIGEST_LEN] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&[form as u8]);
    context.update(value);
    let full = context.finish();
    let mut out = [0u8; KEY_DIGEST_LEN];
    // SHA-256 output is 32 bytes, always longer than KEY_DIGEST_LEN.
    for (slot, byte) in out.iter_mut().zip(full.as_ref()) {
        *slot = *byte;
    }
    out
}

/// A ConfigMap's whole-object digest (byte-identical to [`configmap_data`]) and its per-key
/// digests, in one pass over the data: the watcher drops the data after this.
pub fn configmap_content<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
    binary_data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Sha1Digest, KeyDigests) {
    let data: Vec<(&str, &str)> = data.into_iter().collect();
    let binary_data: Vec<(&str, &[u8])> = binary_data.into_iter().collect();
    let keys = data
        .iter()
        .map(|(k, v)| (*k, key_digest(ValueForm::Text, v.as_bytes())))
        .chain(
            binary_data
                .iter()
                .map(|(k, v)| (*k, key_digest(ValueForm::Bytes, v))),
        )
        .collect();
    (
        configmap_sha1(data, binary_data),
        KeyDigests::from_unsorted(keys),
    )
}

/// A Secret's whole-object digest (byte-identical to [`secret_data`]) and its per-key digests.
pub fn secret_content<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Sha1Digest, KeyDigests) {
    let (digest, keys, _) = secret_digests(data, &DigestKeys::default());
    (digest, keys)
}

/// One pass over a Secret's data: upstream's SHA-1, the per-key digests (not yet keyed by the
/// uid) and the HMACs under `digest_keys`.
fn secret_digests<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    digest_keys: &DigestKeys,
) -> (Sha1Digest, KeyDigests, KeyedDigests) {
    let data: Vec<(&str, &[u8])> = data.into_iter().collect();
    let keys = data
        .iter()
        .map(|(k, v)| (*k, key_digest(ValueForm::Bytes, v)))
        .collect();
    let mut entries: Vec<(&[u8], Option<&[u8]>)> =
        data.iter().map(|(k, v)| (k.as_bytes(), Some(*v))).collect();
    let mut keyed = digest_keys.start();
    let digest = hash_entries(&mut entries, |bytes| keyed.update(bytes));
    (digest, KeyDigests::from_unsorted(keys), keyed.finish())
}

/// [`configmap`] with the per-key digests (what the watcher keeps).
pub fn configmap_keyed(cm: &ConfigMap) -> (Sha1Digest, KeyDigests) {
    configmap_content(
        cm.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice())),
    )
}

/// [`secret`] with the per-key digests (what the watcher keeps), keyed by the Secret's uid
/// ([`KeyDigests::keyed`]; a Secret created again under the same name gets new key digests,
/// so its key-level readers reload once even if the data is the same).
pub fn secret_keyed(secret: &Secret) -> (Sha1Digest, KeyDigests) {
    secret_content_keyed(
        merged_secret_data(secret),
        secret.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// [`secret_content`] with the per-key digests keyed by the Secret's `uid`, as
/// [`secret_keyed`]: for callers that have the data but not a `Secret` object.
pub fn secret_content_keyed<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    uid: &str,
) -> (Sha1Digest, KeyDigests) {
    let (digest, keys) = secret_content(data);
    (digest, keys.keyed(uid))
}

/// What the source cache keeps of a Secret's data: upstream's SHA-1, the per-key digests keyed
/// by `uid` ([`secret_content_keyed`]) and, when digest keys are configured, the HMAC of the
/// same canonical bytes under each ([`crate::model::keyed`]), in one pass.
pub fn secret_forms<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    uid: &str,
    digest_keys: &DigestKeys,
) -> (Sha1Digest, KeyDigests, KeyedDigests) {
    let (digest, keys, keyed) = secret_digests(data, digest_keys);
    (digest, keys.keyed(uid), keyed)
}

/// [`secret_forms`] of a Secret object (`stringData` folded in), keyed by its uid.
pub fn secret_forms_of(
    secret: &Secret,
    digest_keys: &DigestKeys,
) -> (Sha1Digest, KeyDigests, KeyedDigests) {
    secret_forms(
        merged_secret_data(secret),
        secret.metadata.uid.as_deref().unwrap_or_default(),
        digest_keys,
    )
}

/// Digest of a ConfigMap object. Labels, annotations and `immutable` do not count.
pub fn configmap(cm: &ConfigMap) -> Digest {
    configmap_data(
        cm.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice())),
    )
}

/// Digest of a Secret object (`data`; `type`, labels and annotations do not count). The API
/// server folds `stringData` into `data`, so objects read from the API never carry it; for
/// manifests read from files, `stringData` entries override `data` as the API server would.
pub fn secret(secret: &Secret) -> Digest {
    secret_data(merged_secret_data(secret))
}

/// A Secret's `data` with `stringData` folded in, as the API server would.
fn merged_secret_data(secret: &Secret) -> BTreeMap<&str, &[u8]> {
    let mut merged: BTreeMap<&str, &[u8]> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        merged.insert(k.as_str(), v.as_bytes());
    }
    merged
}

/// Digest of a SecretProviderClassPodStatus: `id=version` per mounted object plus
/// `SecretProviderClassName=<name>`, sorted and joined by `;`.
pub fn secret_provider_class(class_name: &str, objects: &[(String, String)]) -> Sha1Digest {
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = objects
        .iter()
        .map(|(id, version)| (id.as_bytes(), Some(version.as_bytes())))
        .chain(std::iter::once((
            b"SecretProviderClassName".as_slice(),
            Some(class_name.as_bytes()),
        )))
        .collect();
    hash_entries(&mut entries, |_| {})
}

/// Sorts `key=value` entries bytewise as whole strings (so `a.b=x` < `a=y`), then hashes them
/// joined by `;` without building the joined string. An entry without value is hashed as is.
fn sha1_of_entries(entries: &mut [(&[u8], Option<&[u8]>)]) -> Digest {
    hash_entries(entries, |_| {}).marker()
}

/// [`sha1_of_entries`], also handing every canonical byte to `also` (the keyed digests).
fn hash_entries(entries: &mut [(&[u8], Option<&[u8]>)], mut also: impl FnMut(&[u8])) -> Sha1Digest {
    fn bytes<'a>(entry: &(&'a [u8], Option<&'a [u8]>)) -> impl Iterator<Item = &'a u8> + 'a {
        let (key, value) = *entry;
        let eq: &'static [u8] = if value.is_some() { b"=" } else { b"" };
        key.iter()
            .chain(eq.iter())
            .chain(value.unwrap_or_default().iter())
    }
    entries.sort_by(|a, b| -> Ordering { bytes(a).cmp(bytes(b)) });
    let mut hasher = Sha1::new();
    let mut update = |bytes: &[u8]| {
        hasher.update(bytes);
        also(bytes);
    };
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            update(b";");
        }
        update(key);
        if let Some(value) = value {
            update(b"=");
            update(value);
        }
    }
    Sha1Digest(hasher.finalize().into())
}

/// Upstream's env-var name: `STAKATER_<NAME>_<TYPE>`, where NAME is the uppercased resource name
/// with every run of characters outside `[A-Z0-9]` turned into one `_` (leading runs dropped,
/// a trailing run kept). Different names can collide (`a-b`, `a.b` and `a_b` all give `A_B`),
/// exactly as upstream.
pub fn env_var_name(name: &str, kind: SourceKind) -> String {
    let mut out = String::with_capacity(name.len() + 30);
    out.push_str("STAKATER_");
    let mut last_kept = false;
    for byte in name.bytes() {
        let upper = byte.to_ascii_uppercase();
        if upper.is_ascii_uppercase() || upper.is_ascii_digit() {
            out.push(char::from(upper));
            last_kept = true;
        } else if last_kept {
            out.push('_');
            last_kept = false;
        }
    }
    out.push('_');
    out.push_str(kind.upstream_type());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::ByteString;
    use std::collections::BTreeSet;

    fn cm(data: &[(&str, &str)], binary: &[(&str, &[u8])]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn sec(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn empty_data_hashes_to_sha1_of_nothing() {
        let empty = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        assert_eq!(configmap(&ConfigMap::default()).as_str(), empty);
        assert_eq!(secret(&Secret::default()).as_str(), empty);
        assert_eq!(configmap(&cm(&[], &[])).as_str(), empty);
    }

    #[test]
    fn worked_example_from_upstream() {
        // printf 'a=1;b=2' | sha1sum
        let expected = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";
        assert_eq!(
            configmap(&cm(&[("b", "2"), ("a", "1")], &[])).as_str(),
            expected
        );
        assert_eq!(secret(&sec(&[("a", b"1"), ("b", b"2")])).as_str(), expected);
    }

    #[test]
    fn sorts_whole_entries_bytewise() {
        // 'a.b=x' sorts before 'a=y' because '.' < '='; printf 'a.b=x;a=y' | sha1sum
        assert_eq!(
            configmap(&cm(&[("a", "y"), ("a.b", "x")], &[])).as_str(),
            hex::encode(Sha1::digest(b"a.b=x;a=y"))
        );
    }

    #[test]
    fn binary_data_is_base64_and_merged_with_data() {
        // printf 'bin=AAEC;txt=hi' | sha1sum
        assert_eq!(
            configmap(&cm(&[("txt", "hi")], &[("bin", &[0, 1, 2])])).as_str(),
            hex::encode(Sha1::digest(b"bin=AAEC;txt=hi"))
        );
    }

    #[test]
    fn secret_bytes_need_not_be_utf8() {
        let mut expected = b"k=".to_vec();
        expected.extend_from_slice(&[0xff, 0xfe, b'x']);
        assert_eq!(
            secret(&sec(&[("k", &[0xff, 0xfe, b'x'])])).as_str(),
            hex::encode(Sha1::digest(&expected))
        );
    }

    #[test]
    fn string_data_counts_like_data() {
        let mut with_string_data = sec(&[("a", b"old")]);
        with_string_data.string_data = Some([("a".to_owned(), "1".to_owned())].into());
        assert_eq!(secret(&with_string_data), secret(&sec(&[("a", b"1")])));
    }

    #[test]
    fn known_upstream_constants() {
        assert_eq!(
            delete_marker().as_str(),
            "aae45badef99284e4dae01d6046154ea9d99532f"
        );
        assert_eq!(
            hex::encode(Sha1::digest(b"www.stakater.com")),
            "abd4ed82fb04548388a6cf3c339fd9dc84d275df"
        );
    }

    #[test]
    fn provider_class_digest_includes_the_class_name() {
        let objects = vec![
            ("b".to_owned(), "v2".to_owned()),
            ("a".to_owned(), "v1".to_owned()),
        ];
        assert_eq!(
            secret_provider_class("spc", &objects).marker().as_str(),
            hex::encode(Sha1::digest(b"SecretProviderClassName=spc;a=v1;b=v2"))
        );
    }

    #[test]
    fn env_var_names_match_upstream() {
        for (name, kind, expected) in [
            (
                "foo-config",
                SourceKind::ConfigMap,
                "STAKATER_FOO_CONFIG_CONFIGMAP",
            ),
            (
                "www.stakater.com",
                SourceKind::Secret,
                "STAKATER_WWW_STAKATER_COM_SECRET",
            ),
            (
                "my..cfg",
                SourceKind::ConfigMap,
                "STAKATER_MY_CFG_CONFIGMAP",
            ),
            ("-lead", SourceKind::ConfigMap, "STAKATER_LEAD_CONFIGMAP"),
            ("trail-", SourceKind::ConfigMap, "STAKATER_TRAIL__CONFIGMAP"),
            (
                "spc",
                SourceKind::SecretProviderClass,
                "STAKATER_SPC_SECRETPROVIDERCLASS",
            ),
        ] {
            assert_eq!(env_var_name(name, kind), expected, "{name}");
        }
        // Documented upstream collision.
        let names: Vec<String> = ["a-b", "a.b", "a_b"]
            .iter()
            .map(|n| env_var_name(n, SourceKind::ConfigMap))
            .collect();
        assert!(
            names.iter().all(|n| n == "STAKATER_A_B_CONFIGMAP"),
            "{names:?}"
        );
    }

    /// The whole-object digest of `*_content` is the one upstream writes; the per-key digests
    /// move only with their own key. (what, before, after, whole changes, keys that change)
    #[test]
    fn content_digests_match_upstream_and_move_per_key() {
        type Cm<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a [u8])]);
        let rows: [(&str, Cm, Cm, &[&str]); 5] = [
            (
                "one key changes",
                (&[("a", "1"), ("b", "2")], &[]),
                (&[("a", "1"), ("b", "3")], &[]),
                &["b"],
            ),
            (
                "a key disappears",
                (&[("a", "1"), ("b", "2")], &[]),
                (&[("b", "2")], &[]),
                &["a"],
            ),
            (
                "a key appears",
                (&[("b", "2")], &[]),
                (&[("a", "1"), ("b", "2")], &[]),
                &["a"],
            ),
            (
                "text moves to binary",
                (&[("a", "1")], &[]),
                (&[], &[("a", b"1")]),
                &["a"],
            ),
            (
                "binary value changes",
                (&[("t", "x")], &[("bin", &[0, 1])]),
                (&[("t", "x")], &[("bin", &[0, 2])]),
                &["bin"],
            ),
        ];
        for (what, before, after, moved) in rows {
            let content = |(data, binary): Cm| {
                configmap_content(
                    data.iter().map(|(k, v)| (*k, *v)),
                    binary.iter().map(|(k, v)| (*k, *v)),
                )
            };
            let (whole_before, keys_before) = content(before);
            let (whole_after, keys_after) = content(after);
            assert_eq!(
                whole_before.marker(),
                configmap(&cm(before.0, before.1)),
                "{what}"
            );
            assert_eq!(
                whole_after.marker(),
                configmap(&cm(after.0, after.1)),
                "{what}"
            );
            assert_ne!(whole_before, whole_after, "{what}");
            let all: BTreeSet<&str> = keys_before.keys().chain(keys_after.keys()).collect();
            let changed: Vec<&str> = all
                .into_iter()
                .filter(|k| keys_before.get(k) != keys_after.get(k))
                .collect();
            assert_eq!(changed, moved, "{what}");
        }
        let (whole, keys) = secret_content([("b", b"2".as_slice()), ("a", b"1".as_slice())]);
        assert_eq!(whole.marker(), secret(&sec(&[("a", b"1"), ("b", b"2")])));
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(keys.len(), 2);
        assert!(keys.get("c").is_none());
        assert!(secret_content([]).1.is_empty());
        // The same bytes in a ConfigMap's binaryData and a Secret give the same key digest.
        let (_, binary) = configmap_content([], [("k", b"v".as_slice())]);
        assert_eq!(
            binary.get("k"),
            secret_content([("k", b"v".as_slice())]).1.get("k")
        );
    }

    #[test]
    fn string_data_counts_in_keyed_secret_digests() {
        let mut with_string_data = sec(&[("a", b"old")]);
        with_string_data.string_data = Some([("a".to_owned(), "1".to_owned())].into());
        assert_eq!(
            secret_keyed(&with_string_data),
            secret_keyed(&sec(&[("a", b"1")]))
        );
        assert_eq!(
            secret_keyed(&with_string_data).0.marker(),
            secret(&with_string_data)
        );
    }

    #[test]
    fn packed_key_digests_read_back_every_key() {
        let d = |n: u8| [n; KEY_DIGEST_LEN];
        let long = "k".repeat(253);
        let keys = KeyDigests::from_unsorted(vec![
            ("b", d(1)),
            (long.as_str(), d(2)),
            ("a.b", d(3)),
            ("b", d(4)),
            ("", d(5)),
        ]);
        assert_eq!(keys.len(), 4, "the repeated key is kept once");
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            ["", "a.b", "b", long.as_str()]
        );
        assert_eq!(
            keys.get("b"),
            Some(&d(4)),
            "the last digest of a repeated key"
        );
        assert_eq!(keys.get(&long), Some(&d(2)));
        assert_eq!(keys.get(""), Some(&d(5)));
        assert_eq!(keys.get("a"), None);
        assert_eq!(keys.get("c"), None);
        assert!(KeyDigests::from_unsorted(Vec::new()).is_empty());
    }

    #[test]
    fn sha1_bytes_give_back_the_marker() {
        let hex = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";
        let sha1 = Sha1Digest::parse(hex).unwrap();
        assert_eq!(sha1.marker().as_str(), hex);
        assert_eq!(
            configmap_sha1([("a", "b")], []).marker(),
            configmap_data([("a", "b")], [])
        );
        assert!(
            Sha1Digest::parse(&"a".repeat(64)).is_none(),
            "an HMAC is no SHA-1"
        );
        assert!(Sha1Digest::parse("F83E99E324BA68CCC373A58EF1EB42F8AB88646A").is_none());
    }

    #[test]
    fn secret_key_digests_are_keyed_by_the_uid() {
        let with_uid = |uid: &str| {
            let mut s = sec(&[("pin", b"1234"), ("cert", b"long")]);
            s.metadata.uid = Some(uid.to_owned());
            secret_keyed(&s)
        };
        let (whole, keys) = with_uid("u-1");
        let (_, plain) =
            secret_content([("pin", b"1234".as_slice()), ("cert", b"long".as_slice())]);
        assert_eq!(
            whole.marker(),
            secret(&sec(&[("pin", b"1234"), ("cert", b"long")])),
            "marker unchanged"
        );
        assert_ne!(keys.get("pin"), plain.get("pin"), "not the unkeyed digest");
        assert_eq!(keys, with_uid("u-1").1, "stable for one Secret");
        assert_ne!(
            keys.get("pin"),
            with_uid("u-2").1.get("pin"),
            "another Secret, other digests"
        );
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["cert", "pin"]);
    }

    #[test]
    fn parse_accepts_only_sha1_hex() {
        assert!(Digest::parse("f83e99e324ba68ccc373a58ef1eb42f8ab88646a").is_some());
        assert!(Digest::parse("F83E99E324BA68CCC373A58EF1EB42F8AB88646A").is_none());
        assert!(Digest::parse("abc").is_none());
    }

    #[test]
    fn secret_forms_hash_upstreams_bytes_once_for_every_form() {
        use crate::model::keyed::{DataNow, DigestKey, KEY_ENTRY};
        let data: [(&str, &[u8]); 2] = [("user", b"admin"), ("password", b"hunter2")];
        let key = b"0123456789abcdef0123456789abcdef";
        let keys = DigestKeys::new(DigestKey::new(KEY_ENTRY, key).unwrap(), vec![], true);
        let (sha1, per_key, keyed) = secret_forms(data, "uid-1", &keys);
        assert_eq!(sha1.marker(), secret_data(data));
        assert_eq!(per_key, secret_content_keyed(data, "uid-1").1);
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            b"password=hunter2;user=admin",
        );
        let now = DataNow {
            sha1: &sha1.marker(),
            keyed: &keyed,
        };
        assert_eq!(now.marker().as_str(), hex::encode(expected.as_ref()));
        assert!(Digest::parse(now.marker().as_str()).is_some());
        let (_, _, none) = secret_forms(data, "uid-1", &DigestKeys::default());
        assert!(none.is_empty());
    }
}
