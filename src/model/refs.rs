//! Which container of a pod spec uses a source, and so gets upstream's env var.
//!
//! Follows upstream's order exactly: volumes first (the first matching volume, then the first
//! container mounting it), then env references; a match found only in an initContainer puts the
//! env var on `containers[0]`; a named match with no reference also uses `containers[0]`.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

use crate::model::ObjectName;
use crate::model::digest::SourceKind;

/// Index into `spec.containers` of the container that receives the marker for `name`, or
/// `None` when the pod spec does not use the source and a reference is required
/// (`needs_reference`), or the pod has no containers.
pub fn container_for(
    spec: &PodSpec,
    kind: SourceKind,
    name: &str,
    needs_reference: bool,
) -> Option<usize> {
    if spec.containers.is_empty() {
        return None;
    }
    let init = spec.init_containers.as_deref().unwrap_or_default();
    if let Some(volume) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| volume_uses(v, kind, name))
    {
        if let Some(index) = spec.containers.iter().position(|c| mounts(c, &volume.name)) {
            return Some(index);
        }
        if init.iter().any(|c| mounts(c, &volume.name)) {
            return Some(0);
        }
    }
    if kind != SourceKind::SecretProviderClass {
        if let Some(index) = spec.containers.iter().position(|c| env_uses(c, kind, name)) {
            return Some(index);
        }
        if init.iter().any(|c| env_uses(c, kind, name)) {
            return Some(0);
        }
    }
    (!needs_reference).then_some(0)
}

/// Whether the pod spec references the source at all (volumes, projected volumes, env,
/// envFrom, in containers or initContainers).
pub fn references(spec: &PodSpec, kind: SourceKind, name: &str) -> bool {
    container_for(spec, kind, name, true).is_some()
}

/// Every source the pod spec names (volumes, projected volumes, CSI volumes, env, envFrom; in
/// containers and initContainers), whether or not a container mounts it: an over-approximation
/// of [`references`] for the fan-out index, which the planner then narrows.
pub fn referenced(spec: &PodSpec) -> Vec<(SourceKind, ObjectName)> {
    let mut names: Vec<(SourceKind, ObjectName)> = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        if let Some(c) = &volume.config_map {
            names.push((SourceKind::ConfigMap, ObjectName::from(&c.name)));
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            names.push((SourceKind::Secret, ObjectName::from(name)));
        }
        for projection in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(c) = &projection.config_map {
                names.push((SourceKind::ConfigMap, ObjectName::from(&c.name)));
            }
            if let Some(s) = &projection.secret {
                names.push((SourceKind::Secret, ObjectName::from(&s.name)));
            }
        }
        if let Some(class) = volume
            .csi
            .as_ref()
            .and_then(|csi| csi.volume_attributes.as_ref())
            .and_then(|a| a.get("secretProviderClass"))
        {
            names.push((
                SourceKind::SecretProviderClass,
                ObjectName::from(class.as_str()),
            ));
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for env in container.env.iter().flatten() {
            if let Some(from) = &env.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    names.push((SourceKind::ConfigMap, ObjectName::from(&r.name)));
                }
                if let Some(r) = &from.secret_key_ref {
                    names.push((SourceKind::Secret, ObjectName::from(&r.name)));
                }
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                names.push((SourceKind::ConfigMap, ObjectName::from(&r.name)));
            }
            if let Some(r) = &from.secret_ref {
                names.push((SourceKind::Secret, ObjectName::from(&r.name)));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Which keys of a source a pod spec reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysRead {
    /// At least one reference takes the whole object (envFrom, a volume or projected source
    /// without `items`), or the source is not referenced at all (named only by annotation),
    /// or it has no keys (a SecretProviderClass): any change counts.
    Whole,
    /// Every reference names keys (env `valueFrom` key refs, `items`); sorted, deduplicated.
    Keys(Vec<String>),
}

/// The keys of the source the pod spec reads, over volumes (mounted or not: conservative),
/// projected volume sources, env and envFrom, in containers and initContainers.
pub fn keys_read(spec: &PodSpec, kind: SourceKind, name: &str) -> KeysRead {
    if kind == SourceKind::SecretProviderClass {
        return KeysRead::Whole;
    }
    let mut keys: Vec<String> = Vec::new();
    let mut referenced = false;
    // `items` absent or empty projects every key.
    let mut take = |items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>| -> bool {
        referenced = true;
        match items.filter(|items| !items.is_empty()) {
            Some(items) => {
                keys.extend(items.iter().map(|item| item.key.clone()));
                true
            }
            None => false,
        }
    };
    for volume in spec.volumes.iter().flatten() {
        let direct = match kind {
            SourceKind::ConfigMap => volume
                .config_map
                .as_ref()
                .filter(|c| c.name == name)
                .map(|c| c.items.as_ref()),
            _ => volume
                .secret
                .as_ref()
                .filter(|s| s.secret_name.as_deref() == Some(name))
                .map(|s| s.items.as_ref()),
        };
        if let Some(items) = direct
            && !take(items)
        {
            return KeysRead::Whole;
        }
        for projection in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            let items = match kind {
                SourceKind::ConfigMap => projection
                    .config_map
                    .as_ref()
                    .filter(|c| c.name == name)
                    .map(|c| c.items.as_ref()),
                _ => projection
                    .secret
                    .as_ref()
                    .filter(|s| s.name == name)
                    .map(|s| s.items.as_ref()),
            };
            if let Some(items) = items
                && !take(items)
            {
                return KeysRead::Whole;
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        let whole = container.env_from.iter().flatten().any(|from| match kind {
            SourceKind::ConfigMap => from.config_map_ref.as_ref().is_some_and(|r| r.name == name),
            _ => from.secret_ref.as_ref().is_some_and(|r| r.name == name),
        });
        if whole {
            return KeysRead::Whole;
        }
        for from in container
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value_from.as_ref())
        {
            let key = match kind {
                SourceKind::ConfigMap => from
                    .config_map_key_ref
                    .as_ref()
                    .filter(|r| r.name == name)
                    .map(|r| &r.key),
                _ => from
                    .secret_key_ref
                    .as_ref()
                    .filter(|r| r.name == name)
                    .map(|r| &r.key),
            };
            if let Some(key) = key {
                keys.push(key.clone());
                referenced = true;
            }
        }
    }
    if !referenced {
        return KeysRead::Whole;
    }
    keys.sort();
    keys.dedup();
    KeysRead::Keys(keys)
}

fn volume_uses(volume: &Volume, kind: SourceKind, name: &str) -> bool {
    match kind {
        SourceKind::ConfigMap => {
            volume.config_map.as_ref().is_some_and(|c| c.name == name)
                || volume.projected.as_ref().is_some_and(|p| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.config_map.as_ref().is_some_and(|c| c.name == name))
                })
        }
        SourceKind::Secret => {
            volume
                .secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some(name))
                || volume.projected.as_ref().is_some_and(|p| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.secret.as_ref().is_some_and(|s| s.name == name))
                })
        }
        SourceKind::SecretProviderClass => volume.csi.as_ref().is_some_and(|csi| {
            csi.volume_attributes
                .as_ref()
                .and_then(|a| a.get("secretProviderClass"))
                .is_some_and(|spc| spc == name)
        }),
    }
}

fn mounts(container: &Container, volume: &str) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == volume)
}

fn env_uses(container: &Container, kind: SourceKind, name: &str) -> bool {
    let env = container.env.iter().flatten().any(|e| {
        e.value_from.as_ref().is_some_and(|from| match kind {
            SourceKind::ConfigMap => from
                .config_map_key_ref
                .as_ref()
                .is_some_and(|r| r.name == name),
            SourceKind::Secret => from.secret_key_ref.as_ref().is_some_and(|r| r.name == name),
            SourceKind::SecretProviderClass => false,
        })
    });
    env || container.env_from.iter().flatten().any(|from| match kind {
        SourceKind::ConfigMap => from.config_map_ref.as_ref().is_some_and(|r| r.name == name),
        SourceKind::Secret => from.secret_ref.as_ref().is_some_and(|r| r.name == name),
        SourceKind::SecretProviderClass => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    const CM: SourceKind = SourceKind::ConfigMap;
    const SECRET: SourceKind = SourceKind::Secret;

    #[test]
    fn volume_mount_picks_the_mounting_container() {
        let s = spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "cfg", "mountPath": "/c"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "app"}}]
        }));
        assert_eq!(container_for(&s, CM, "app", true), Some(1));
        assert_eq!(container_for(&s, CM, "other", true), None);
        assert_eq!(
            container_for(&s, CM, "other", false),
            Some(0),
            "named match without reference"
        );
        assert_eq!(
            container_for(&s, SECRET, "app", true),
            None,
            "kinds do not mix"
        );
    }

    #[test]
    fn projected_and_secret_volumes() {
        let s = spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "p", "mountPath": "/p"}, {"name": "s", "mountPath": "/s"}]}],
            "volumes": [
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "pc"}}, {"secret": {"name": "ps"}}]}},
                {"name": "s", "secret": {"secretName": "tls"}}
            ]
        }));
        assert_eq!(container_for(&s, CM, "pc", true), Some(1));
        assert_eq!(container_for(&s, SECRET, "ps", true), Some(1));
        assert_eq!(container_for(&s, SECRET, "tls", true), Some(1));
    }

    #[test]
    fn env_and_env_from() {
        let s = spec(json!({
            "containers": [
                {"name": "a"},
                {"name": "b", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "keyed", "key": "k"}}}]},
                {"name": "c", "envFrom": [{"secretRef": {"name": "whole"}}]}
            ]
        }));
        assert_eq!(container_for(&s, CM, "keyed", true), Some(1));
        assert_eq!(container_for(&s, SECRET, "whole", true), Some(2));
        assert!(references(&s, SECRET, "whole"));
        assert!(!references(&s, CM, "whole"));
    }

    #[test]
    fn init_container_reference_uses_the_first_container() {
        let s = spec(json!({
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "boot"}}],
                                "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "containers": [{"name": "main"}, {"name": "side"}],
            "volumes": [{"name": "v", "secret": {"secretName": "init-secret"}}]
        }));
        assert_eq!(container_for(&s, CM, "boot", true), Some(0));
        assert_eq!(container_for(&s, SECRET, "init-secret", true), Some(0));
    }

    #[test]
    fn volume_found_but_unmounted_falls_back_to_env() {
        let s = spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "envFrom": [{"configMapRef": {"name": "app"}}]}],
            "volumes": [{"name": "unused", "configMap": {"name": "app"}}]
        }));
        assert_eq!(container_for(&s, CM, "app", true), Some(1));
    }

    #[test]
    fn secret_provider_class_only_through_csi_volumes() {
        let s = spec(json!({
            "containers": [{"name": "a", "volumeMounts": [{"name": "vault", "mountPath": "/mnt"}]}],
            "volumes": [{"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io",
                         "volumeAttributes": {"secretProviderClass": "spc"}}}]
        }));
        assert_eq!(
            container_for(&s, SourceKind::SecretProviderClass, "spc", true),
            Some(0)
        );
        assert_eq!(
            container_for(&s, SourceKind::SecretProviderClass, "other", true),
            None
        );
    }

    /// `referenced` names everything `container_for` can find (and unmounted volumes too).
    #[test]
    fn referenced_covers_every_reference() {
        let s = spec(json!({
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "boot"}}]}],
            "containers": [
                {"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}}]},
                {"name": "b", "envFrom": [{"secretRef": {"name": "whole"}}], "volumeMounts": [{"name": "p", "mountPath": "/p"}]}
            ],
            "volumes": [
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "pc"}}, {"secret": {"name": "ps"}}]}},
                {"name": "unused", "configMap": {"name": "lonely"}},
                {"name": "v", "csi": {"driver": "d", "volumeAttributes": {"secretProviderClass": "spc"}}}
            ]
        }));
        let names = referenced(&s);
        for (kind, name) in [
            (CM, "boot"),
            (SECRET, "key"),
            (SECRET, "whole"),
            (CM, "pc"),
            (SECRET, "ps"),
            (CM, "lonely"),
            (SourceKind::SecretProviderClass, "spc"),
        ] {
            assert!(
                names.contains(&(kind, ObjectName::from(name))),
                "{kind} {name}: {names:?}"
            );
            if name != "lonely" && kind != SourceKind::SecretProviderClass {
                assert!(references(&s, kind, name), "{name}");
            }
        }
        assert_eq!(names.len(), 7);
    }

    /// (what, pod spec, kind, name, keys read)
    #[test]
    fn keys_read_table() {
        let keys = |k: &[&str]| KeysRead::Keys(k.iter().map(|s| s.to_string()).collect());
        let rows: Vec<(&str, serde_json::Value, SourceKind, &str, KeysRead)> = vec![
            (
                "env key refs in containers and initContainers",
                json!({"initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "z"}}}]}],
                       "containers": [{"name": "a", "env": [
                           {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                           {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                           {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "q"}}}]}]}),
                CM,
                "cfg",
                keys(&["a", "z"]),
            ),
            (
                "volume with items plus a projected secret with items",
                json!({"containers": [{"name": "a"}],
                       "volumes": [
                           {"name": "v", "secret": {"secretName": "db", "items": [{"key": "pw", "path": "p"}]}},
                           {"name": "p", "projected": {"sources": [{"secret": {"name": "db", "items": [{"key": "user", "path": "u"}]}}]}}]}),
                SECRET,
                "db",
                keys(&["pw", "user"]),
            ),
            (
                "envFrom takes the whole object",
                json!({"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "cfg"}}],
                       "env": [{"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]}]}),
                CM,
                "cfg",
                KeysRead::Whole,
            ),
            (
                "a volume without items takes the whole object",
                json!({"containers": [{"name": "a", "env": [{"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]}],
                       "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}),
                CM,
                "cfg",
                KeysRead::Whole,
            ),
            (
                "empty items project every key",
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "v", "configMap": {"name": "cfg", "items": []}}]}),
                CM,
                "cfg",
                KeysRead::Whole,
            ),
            (
                "a projected source without items takes the whole object",
                json!({"containers": [{"name": "a"}],
                       "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}}, {"configMap": {"name": "cfg"}}]}}]}),
                CM,
                "cfg",
                KeysRead::Whole,
            ),
            (
                "named only by annotation: whole",
                json!({"containers": [{"name": "a"}]}),
                CM,
                "cfg",
                KeysRead::Whole,
            ),
            (
                "kinds do not mix: a Secret key ref does not name ConfigMap keys",
                json!({"containers": [{"name": "a", "env": [
                    {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "cfg", "key": "s"}}},
                    {"name": "Z", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "c"}}}]}]}),
                CM,
                "cfg",
                keys(&["c"]),
            ),
            (
                "a SecretProviderClass is always whole",
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "v", "csi": {"driver": "d", "volumeAttributes": {"secretProviderClass": "spc"}}}]}),
                SourceKind::SecretProviderClass,
                "spc",
                KeysRead::Whole,
            ),
        ];
        for (what, value, kind, name, expected) in rows {
            assert_eq!(keys_read(&spec(value), kind, name), expected, "{what}");
        }
    }

    #[test]
    fn no_containers_means_no_target() {
        let s = spec(json!({"containers": []}));
        assert_eq!(container_for(&s, CM, "app", false), None);
    }
}
