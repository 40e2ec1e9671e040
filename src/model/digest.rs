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

/// A 40-character lowercase hex SHA-1, as upstream writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a digest read back from a workload (env var, annotation); `None` unless it is
    /// 40 lowercase hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 40
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.to_owned()))
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
    sha1_of_entries(&mut entries)
}

/// Digest of a Secret's content: sorted `key=<raw decoded bytes>` entries joined by `;`.
pub fn secret_data<'a>(data: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Digest {
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = data
        .into_iter()
        .map(|(k, v)| (k.as_bytes(), Some(v)))
        .collect();
    sha1_of_entries(&mut entries)
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
    let mut merged: BTreeMap<&str, &[u8]> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        merged.insert(k.as_str(), v.as_bytes());
    }
    secret_data(merged)
}

/// Digest of a SecretProviderClassPodStatus: `id=version` per mounted object plus
/// `SecretProviderClassName=<name>`, sorted and joined by `;`.
pub fn secret_provider_class(class_name: &str, objects: &[(String, String)]) -> Digest {
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = objects
        .iter()
        .map(|(id, version)| (id.as_bytes(), Some(version.as_bytes())))
        .chain(std::iter::once((
            b"SecretProviderClassName".as_slice(),
            Some(class_name.as_bytes()),
        )))
        .collect();
    sha1_of_entries(&mut entries)
}

/// Sorts `key=value` entries bytewise as whole strings (so `a.b=x` < `a=y`), then hashes them
/// joined by `;` without building the joined string. An entry without value is hashed as is.
fn sha1_of_entries(entries: &mut [(&[u8], Option<&[u8]>)]) -> Digest {
    fn bytes<'a>(entry: &(&'a [u8], Option<&'a [u8]>)) -> impl Iterator<Item = &'a u8> + 'a {
        let (key, value) = *entry;
        let eq: &'static [u8] = if value.is_some() { b"=" } else { b"" };
        key.iter()
            .chain(eq.iter())
            .chain(value.unwrap_or_default().iter())
    }
    entries.sort_by(|a, b| -> Ordering { bytes(a).cmp(bytes(b)) });
    let mut hasher = Sha1::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            hasher.update(b";");
        }
        hasher.update(key);
        if let Some(value) = value {
            hasher.update(b"=");
            hasher.update(value);
        }
    }
    Digest(hex::encode(hasher.finalize()))
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
            secret_provider_class("spc", &objects).as_str(),
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

    #[test]
    fn parse_accepts_only_sha1_hex() {
        assert!(Digest::parse("f83e99e324ba68ccc373a58ef1eb42f8ab88646a").is_some());
        assert!(Digest::parse("F83E99E324BA68CCC373A58EF1EB42F8AB88646A").is_none());
        assert!(Digest::parse("abc").is_none());
    }
}
