//! ConfigMaps and Secrets decoded straight into what the source cache keeps: their digest and
//! a few metadata fields. The data is hashed while the list page or watch event is decoded, so
//! no full object (decoded values, managedFields, labels) is ever built: a page of 10 KiB
//! Secrets then costs its response text and a few hundred bytes per object, not twice its size.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use std::sync::{Arc, PoisonError, RwLock};

use crate::model::digest;
use crate::model::keyed::{DigestKeys, KeyedDigests};
use crate::model::source::SourceContent;

/// The digest keys Secrets are digested under as they are decoded. Process-wide because the
/// decode runs inside kube-runtime's watcher, which takes no context; set by
/// [`install_digest_keys`] before the Secret watches start and on each change of the key
/// Secret (the watches then list again).
static DIGEST_KEYS: RwLock<Option<Arc<DigestKeys>>> = RwLock::new(None);

/// Makes `keys` the digest keys of every Secret decoded from now on.
pub fn install_digest_keys(keys: DigestKeys) {
    *DIGEST_KEYS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
}

/// The digest keys installed (none: upstream's SHA-1 only).
pub fn digest_keys() -> Arc<DigestKeys> {
    DIGEST_KEYS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

/// The metadata fields a source decision reads; everything else (managedFields, labels,
/// ownerReferences, ...) is skipped without being built.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

impl From<WireMeta> for ObjectMeta {
    fn from(wire: WireMeta) -> Self {
        ObjectMeta {
            name: wire.name,
            namespace: wire.namespace,
            uid: wire.uid,
            resource_version: wire.resource_version,
            annotations: wire.annotations,
            ..ObjectMeta::default()
        }
    }
}

/// A JSON string, borrowed from the response text when it has no escapes (the common case
/// for base64 values), owned otherwise.
struct Text<'de>(Cow<'de, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// The entries of a `data`/`binaryData` map, as text borrowed where possible.
struct Entries<'de>(Vec<(Text<'de>, Text<'de>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EntriesVisitor<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_any(EntriesVisitor(std::marker::PhantomData))
    }
}

/// Decodes base64 values; the API server only stores valid base64 there, so a value that is
/// not (which no API server sends) is hashed as its text rather than failing the whole page.
fn decoded<'a>(entries: &'a [(Text<'_>, Text<'_>)]) -> Vec<(&'a str, Cow<'a, [u8]>)> {
    use base64::Engine as _;
    entries
        .iter()
        .map(|(key, value)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.0.as_bytes())
                .map_or(Cow::Borrowed(value.0.as_bytes()), Cow::Owned);
            (key.0.as_ref(), bytes)
        })
        .collect()
}

macro_rules! digested_source {
    ($name:ident, $kind:literal, $plural:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name {
            /// Name, namespace, uid, resourceVersion and annotations only.
            pub metadata: ObjectMeta,
            /// What its data was digested into.
            pub content: SourceContent,
        }

        impl $name {
            /// The digests the source cache keeps (the watcher's hash function).
            pub fn content(&self) -> SourceContent {
                self.content.clone()
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = "v1";
            const GROUP: &'static str = "";
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

digested_source!(
    DigestedSecret,
    "Secret",
    "secrets",
    "A Secret as the source cache sees it: its metadata and the digest of its data, which is \
     hashed while decoding and never kept."
);
digested_source!(
    DigestedConfigMap,
    "ConfigMap",
    "configmaps",
    "A ConfigMap as the source cache sees it: its metadata and the digest of its data and \
     binaryData."
);

impl<'de> Deserialize<'de> for DigestedSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(default)]
            metadata: WireMeta,
            #[serde(default, borrow)]
            data: Option<Entries<'a>>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let entries = wire.data.map(|d| d.0).unwrap_or_default();
        let values = decoded(&entries);
        let (digest, keys, keyed) = digest::secret_forms(
            values.iter().map(|(k, v)| (*k, v.as_ref())),
            wire.metadata.uid.as_deref().unwrap_or_default(),
            &digest_keys(),
        );
        Ok(Self {
            metadata: wire.metadata.into(),
            content: SourceContent {
                digest,
                keys,
                keyed,
            },
        })
    }
}

impl<'de> Deserialize<'de> for DigestedConfigMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(default)]
            metadata: WireMeta,
            #[serde(default, borrow)]
            data: Option<Entries<'a>>,
            #[serde(default, borrow)]
            binary_data: Option<Entries<'a>>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let data = wire.data.map(|d| d.0).unwrap_or_default();
        let binary = wire.binary_data.map(|d| d.0).unwrap_or_default();
        let binary = decoded(&binary);
        let (digest, keys) = digest::configmap_content(
            data.iter().map(|(k, v)| (k.0.as_ref(), v.0.as_ref())),
            binary.iter().map(|(k, v)| (*k, v.as_ref())),
        );
        Ok(Self {
            metadata: wire.metadata.into(),
            content: SourceContent {
                digest,
                keys,
                keyed: KeyedDigests::default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db",
        "namespace":"prod","uid":"u-1","resourceVersion":"42","labels":{"app":"x"},
        "annotations":{"reloader.stakater.com/match":"true"},
        "managedFields":[{"manager":"kubectl","fieldsV1":{"f:data":{"f:a":{}}}}]},
        "type":"Opaque","data":{"password":"aHVudGVyMg==","a.b":"eA==","a":"eQ=="}}"#;

    const CONFIGMAP: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app",
        "namespace":"prod"},"data":{"config.yaml":"line1\nline2 \"quoted\"","config":"v"},
        "binaryData":{"blob":"AAEC/w=="}}"#;

    #[test]
    fn secret_digest_matches_the_full_object() {
        let full: Secret = serde_json::from_str(SECRET).unwrap();
        let lite: DigestedSecret = serde_json::from_str(SECRET).unwrap();
        assert_eq!(
            (lite.content.digest, lite.content.keys),
            digest::secret_keyed(&full)
        );
        assert_eq!(lite.metadata.name.as_deref(), Some("db"));
        assert_eq!(lite.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(lite.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(lite.metadata.annotations, full.metadata.annotations);
        assert!(lite.metadata.managed_fields.is_none());
        assert!(lite.metadata.labels.is_none());
    }

    #[test]
    fn configmap_digest_matches_the_full_object_with_escapes_and_binary_data() {
        let full: ConfigMap = serde_json::from_str(CONFIGMAP).unwrap();
        let lite: DigestedConfigMap = serde_json::from_str(CONFIGMAP).unwrap();
        assert_eq!(
            (lite.content.digest, lite.content.keys),
            digest::configmap_keyed(&full)
        );
    }

    #[test]
    fn objects_without_data_or_with_null_data_hash_as_empty() {
        for text in [
            r#"{"metadata":{"name":"e"}}"#,
            r#"{"metadata":{"name":"e"},"data":null}"#,
            r#"{"metadata":{"name":"e"},"data":{}}"#,
        ] {
            let lite: DigestedSecret = serde_json::from_str(text).unwrap();
            let full: Secret = serde_json::from_str(text).unwrap();
            assert_eq!(
                (lite.content.digest, lite.content.keys),
                digest::secret_keyed(&full),
                "{text}"
            );
            let lite: DigestedConfigMap = serde_json::from_str(text).unwrap();
            let full: ConfigMap = serde_json::from_str(text).unwrap();
            assert_eq!(
                (lite.content.digest, lite.content.keys),
                digest::configmap_keyed(&full),
                "{text}"
            );
        }
    }

    #[test]
    fn a_list_page_and_a_watch_event_decode() {
        let page = format!(r#"{{"metadata":{{"resourceVersion":"7"}},"items":[{SECRET}]}}"#);
        let list: kube::core::ObjectList<DigestedSecret> = serde_json::from_str(&page).unwrap();
        assert_eq!(list.items.len(), 1);
        let event = format!(r#"{{"type":"MODIFIED","object":{SECRET}}}"#);
        let event: kube::core::WatchEvent<DigestedSecret> = serde_json::from_str(&event).unwrap();
        assert!(matches!(event, kube::core::WatchEvent::Modified(_)));
    }

    #[test]
    fn debug_output_carries_no_data() {
        let lite: DigestedSecret = serde_json::from_str(SECRET).unwrap();
        let text = format!("{lite:?}");
        assert!(
            !text.contains("aHVudGVyMg") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
