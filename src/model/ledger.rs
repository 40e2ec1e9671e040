//! The markers kube-reloader keeps on objects, in one place: the ledger (the digest of every
//! tracked source, on workload metadata), the CronJob Job marker, and the finalizer that keeps
//! a Job being re-created readable until its replacement exists.

use std::collections::BTreeMap;

use crate::model::ObjectName;
use crate::model::digest::SourceKind;
use crate::model::interest::SOURCE_KINDS;

/// Workload metadata annotation holding the digest of every tracked source, as JSON
/// `{"configmap/<name>": "<sha1>", "secret/<name>": "<sha1>"}`. Writing it does not roll pods.
/// With key-level triggers an entry is `keys:<sha1>:<keys digest>:<key>,...` instead (see
/// [`crate::model::keys`]).
pub const LEDGER_ANNOTATION: &str = "kube-reloader.io/digests";

/// Annotation on a Job we created from a CronJob: the CronJob ledger it was created for, so
/// a retry or a restart finds it and does not create a second Job for the same change. (Not
/// the Job's own ledger: the Job may be a tracked workload itself.)
pub const CREATED_FOR_ANNOTATION: &str = "kube-reloader.io/created-for";

/// Finalizer on a Job we are re-creating for a reload: added before the DELETE, removed right
/// before the CREATE, so the old Job (and its spec) stays on the API server while the
/// re-creation is pending, and a restart finishes it.
pub const RECREATE_FINALIZER: &str = "kube-reloader.io/recreate";

/// Field manager of every write, as upstream's, so managed fields show who wrote the markers.
pub const FIELD_MANAGER: &str = "Reloader";

/// Ledger key of a source, e.g. `configmap/app-config`.
pub fn key(kind: SourceKind, name: &str) -> String {
    format!("{}/{name}", kind.key_prefix())
}

/// A parsed ledger: ledger key → digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(BTreeMap<String, String>);

impl Ledger {
    /// Parses an annotation value; a corrupt value reads as empty (and is then rewritten).
    pub fn parse(text: Option<&str>) -> Self {
        Self(
            text.and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
        )
    }

    /// The digest recorded for a source.
    pub fn get(&self, kind: SourceKind, name: &str) -> Option<&str> {
        self.0.get(&key(kind, name)).map(String::as_str)
    }

    /// Records a digest.
    pub fn insert(&mut self, kind: SourceKind, name: &str, digest: &str) {
        self.0.insert(key(kind, name), digest.to_owned());
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sources recorded, as (kind, name).
    pub fn sources(&self) -> Vec<(SourceKind, ObjectName)> {
        self.0
            .keys()
            .filter_map(|k| {
                let (prefix, name) = k.split_once('/')?;
                let kind = SOURCE_KINDS
                    .into_iter()
                    .find(|kind| kind.key_prefix() == prefix)?;
                Some((kind, ObjectName::from(name)))
            })
            .collect()
    }

    /// The annotation value; empty for an empty ledger (the annotation is then removed).
    pub fn render(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&self.0).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_values() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.render(), "");
        ledger.insert(SourceKind::Secret, "db", "b");
        ledger.insert(SourceKind::ConfigMap, "app", "a");
        let text = ledger.render();
        assert_eq!(text, r#"{"configmap/app":"a","secret/db":"b"}"#);
        let back = Ledger::parse(Some(&text));
        assert_eq!(back, ledger);
        assert_eq!(back.get(SourceKind::ConfigMap, "app"), Some("a"));
        assert_eq!(
            back.sources(),
            vec![
                (SourceKind::ConfigMap, "app".into()),
                (SourceKind::Secret, "db".into())
            ]
        );
        assert!(Ledger::parse(Some("{not json")).is_empty());
        assert!(Ledger::parse(None).is_empty());
    }

    #[test]
    fn names_with_slashes_keep_the_first_split() {
        let ledger = Ledger::parse(Some(r#"{"secretproviderclass/a/b":"x","bogus":"y"}"#));
        assert_eq!(
            ledger.sources(),
            vec![(SourceKind::SecretProviderClass, "a/b".into())]
        );
    }
}
