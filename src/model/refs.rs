//! Which container of a pod spec uses a source, and so gets upstream's env var.
//!
//! Follows upstream's order exactly: volumes first (the first matching volume, then the first
//! container mounting it), then env references; a match found only in an initContainer puts the
//! env var on `containers[0]`; a named match with no reference also uses `containers[0]`.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

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
pub fn referenced(spec: &PodSpec) -> Vec<(SourceKind, String)> {
    let mut names = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        if let Some(c) = &volume.config_map {
            names.push((SourceKind::ConfigMap, c.name.clone()));
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            names.push((SourceKind::Secret, name));
        }
        for projection in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(c) = &projection.config_map {
                names.push((SourceKind::ConfigMap, c.name.clone()));
            }
            if let Some(s) = &projection.secret {
                names.push((SourceKind::Secret, s.name.clone()));
            }
        }
        if let Some(class) = volume
            .csi
            .as_ref()
            .and_then(|csi| csi.volume_attributes.as_ref())
            .and_then(|a| a.get("secretProviderClass"))
        {
            names.push((SourceKind::SecretProviderClass, class.clone()));
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
                    names.push((SourceKind::ConfigMap, r.name.clone()));
                }
                if let Some(r) = &from.secret_key_ref {
                    names.push((SourceKind::Secret, r.name.clone()));
                }
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                names.push((SourceKind::ConfigMap, r.name.clone()));
            }
            if let Some(r) = &from.secret_ref {
                names.push((SourceKind::Secret, r.name.clone()));
            }
        }
    }
    names.sort();
    names.dedup();
    names
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
                names.contains(&(kind, name.to_owned())),
                "{kind} {name}: {names:?}"
            );
            if name != "lonely" && kind != SourceKind::SecretProviderClass {
                assert!(references(&s, kind, name), "{name}");
            }
        }
        assert_eq!(names.len(), 7);
    }

    #[test]
    fn no_containers_means_no_target() {
        let s = spec(json!({"containers": []}));
        assert_eq!(container_for(&s, CM, "app", false), None);
    }
}
