//! The level-triggered marker comparison: from the digests a workload's sources have now and
//! the markers the workload carries, decide whether to write nothing, record a baseline, or
//! reload.
//!
//! Markers, in order of trust: our ledger annotation on the workload's metadata (one digest per
//! tracked source, written with every reload and at first sight), then upstream's markers (a
//! `STAKATER_*` env var, or `last-reloaded-from`), so a workload coming from stakater/Reloader
//! is recognised as current and not restarted.

use k8s_openapi::api::core::v1::Container;
use serde::Deserialize;

use crate::model::digest::{self, Digest, SourceKind, env_var_name};
use crate::model::edit::Strategy;
use crate::model::keyed::{DataNow, KeyedDigests};
use crate::model::keys::{self, Judgement, KeySelection};
use crate::model::ledger::Ledger;

/// A source the workload tracks, with its digest now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// ConfigMap, Secret, SecretProviderClass.
    pub kind: SourceKind,
    /// Source name.
    pub name: String,
    /// Its digest now (upstream's SHA-1).
    pub digest: Digest,
    /// A Secret's keyed digests now (empty unless digest keys are configured).
    pub keyed: KeyedDigests,
    /// With key-level triggers: the keys the workload reads and their digest now (`None`:
    /// whole-object behaviour).
    pub keys: Option<KeySelection>,
    /// Index of the container that carries its env var.
    pub container: usize,
    /// Whether the source appeared while we were running (for `--reload-on-create`).
    pub created_while_running: bool,
    /// Unix seconds when we saw its data change while running, if we did.
    pub data_changed_at: Option<i64>,
}

impl Tracked {
    /// Its data now, in every form a recorded value may be in.
    pub fn now(&self) -> DataNow<'_> {
        DataNow {
            sha1: &self.digest,
            keyed: &self.keyed,
        }
    }
}

/// A tracked source that was deleted (only considered with `--reload-on-delete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Source kind.
    pub kind: SourceKind,
    /// Source name.
    pub name: String,
    /// Index of the container that would carry its env var.
    pub container: usize,
}

/// Why a source causes a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its data changed since the workload last saw it.
    Changed,
    /// It was created while we ran, and `--reload-on-create` is on.
    Created,
    /// It was deleted, and `--reload-on-delete` is on.
    Deleted,
}

/// One source's part in a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Source kind.
    pub kind: SourceKind,
    /// Source name.
    pub name: String,
    /// The digest to record (the delete marker for deletions).
    pub digest: Digest,
    /// Container index for the env var / containerRefs.
    pub container: usize,
    /// Why.
    pub cause: Cause,
}

/// What to do with one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Markers already match: write nothing.
    UpToDate,
    /// Record the ledger without touching the pod template (first sight, or tracked set
    /// changed without a data change): no rollout.
    Baseline {
        /// The new ledger annotation value.
        ledger: String,
    },
    /// Write the markers of `changes` into the pod template (one rollout) and the ledger.
    Reload {
        /// The new ledger annotation value.
        ledger: String,
        /// The sources that cause it, sorted by kind and name.
        changes: Vec<Change>,
    },
}

/// What the workload carries now.
#[derive(Debug, Clone, Copy)]
pub struct Markers<'a> {
    /// Value of the ledger annotation on metadata, if any.
    pub ledger: Option<&'a str>,
    /// The pod template's containers (for `STAKATER_*` env vars).
    pub containers: &'a [Container],
    /// Value of `last-reloaded-from` on the pod template, if any.
    pub last_reloaded_from: Option<&'a str>,
    /// The workload's `creationTimestamp`, in Unix seconds.
    pub created_at: Option<i64>,
}

/// Flags that change the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// How reloads are written.
    pub strategy: Strategy,
    /// `--reload-on-create=true`.
    pub reload_on_create: bool,
    /// `--reload-on-delete=true`.
    pub reload_on_delete: bool,
    /// A workload with no record of a source reloads when the source's data changed (as seen
    /// while running) at or after the workload's creation, instead of recording a baseline.
    /// Set for kinds we may not watch (a workload may appear to us only after the change it
    /// missed, as upstream's list-per-change model sees it) or may not record a baseline on.
    pub reload_unrecorded: bool,
    /// `--prune-stale-markers`: a reload also removes the markers of sources no longer tracked.
    pub prune_stale: bool,
    /// `--key-level-triggers`: reload a workload that reads only some keys of a source only
    /// when those keys change (a workload's `kube-reloader.io/key-level` overrides it).
    pub key_level: bool,
}

#[derive(Deserialize)]
struct LastReloadedFrom {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    hash: String,
}

/// Decides what to write for one workload. Pure: same inputs, same answer.
pub fn plan(
    tracked: &[Tracked],
    deleted: &[Deleted],
    markers: Markers<'_>,
    options: PlanOptions,
) -> Decision {
    let old_ledger = Ledger::parse(markers.ledger);
    let last = markers
        .last_reloaded_from
        .and_then(|text| serde_json::from_str::<LastReloadedFrom>(text).ok());
    let env_value = |kind: SourceKind, name: &str| -> Option<&str> {
        let var = env_var_name(name, kind);
        markers
            .containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == var)
            .and_then(|e| e.value.as_deref())
    };

    let mut ledger = Ledger::default();
    let mut changes = Vec::new();
    // Key-level records kept as they are unless a reload happens (only other keys changed).
    let mut kept = Vec::new();
    for source in tracked {
        let previous = old_ledger
            .get(source.kind, &source.name)
            .or_else(|| env_value(source.kind, &source.name))
            .or_else(|| {
                last.as_ref()
                    .filter(|l| l.kind == source.kind.upstream_type() && l.name == source.name)
                    .map(|l| l.hash.as_str())
            });
        let cause = match previous {
            None if source.created_while_running && options.reload_on_create => {
                Some(Cause::Created)
            }
            None if options.reload_unrecorded
                && source
                    .data_changed_at
                    .zip(markers.created_at)
                    .is_some_and(|(changed, created)| created <= changed) =>
            {
                Some(Cause::Changed)
            }
            None => None,
            Some(previous) => match keys::judge(previous, source.now(), source.keys.as_ref()) {
                Judgement::Current => None,
                Judgement::OtherKeysChanged => {
                    kept.push((source.kind, source.name.as_str(), previous));
                    None
                }
                Judgement::Changed => Some(Cause::Changed),
            },
        };
        if let Some(cause) = cause {
            changes.push(Change {
                kind: source.kind,
                name: source.name.clone(),
                digest: source.now().marker(),
                container: source.container,
                cause,
            });
        }
        ledger.insert(
            source.kind,
            &source.name,
            &keys::record(source.now(), source.keys.as_ref()),
        );
    }
    if options.reload_on_delete {
        let marker = digest::delete_marker();
        for gone in deleted {
            let known = old_ledger.get(gone.kind, &gone.name);
            let reload = match options.strategy {
                // Upstream removes the env var; nothing to do when it is not there.
                Strategy::EnvVars => env_value(gone.kind, &gone.name).is_some(),
                Strategy::Annotations => known.is_some_and(|k| k != marker.as_str()),
            };
            if reload {
                changes.push(Change {
                    kind: gone.kind,
                    name: gone.name.clone(),
                    digest: marker.clone(),
                    container: gone.container,
                    cause: Cause::Deleted,
                });
            }
            if options.strategy == Strategy::Annotations && known.is_some() {
                ledger.insert(gone.kind, &gone.name, marker.as_str());
            }
        }
    }
    changes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    if !changes.is_empty() {
        // The pods restart and read everything as it is now: every record is fresh.
        return Decision::Reload {
            ledger: ledger.render(),
            changes,
        };
    }
    for (kind, name, previous) in kept {
        ledger.insert(kind, name, previous);
    }
    let ledger_text = ledger.render();
    if ledger == old_ledger && (markers.ledger.is_some() || ledger.is_empty()) {
        Decision::UpToDate
    } else {
        Decision::Baseline {
            ledger: ledger_text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

    const A: &str = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";
    const B: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

    fn tracked(kind: SourceKind, name: &str, digest: &str) -> Tracked {
        Tracked {
            kind,
            name: name.into(),
            digest: Digest::parse(digest).unwrap(),
            keyed: KeyedDigests::default(),
            keys: None,
            container: 0,
            created_while_running: false,
            data_changed_at: None,
        }
    }

    fn env_options() -> PlanOptions {
        PlanOptions {
            strategy: Strategy::EnvVars,
            reload_on_create: false,
            reload_on_delete: false,
            reload_unrecorded: false,
            prune_stale: true,
            key_level: false,
        }
    }

    fn container(env: &[(&str, &str)]) -> Container {
        Container {
            name: "app".into(),
            env: Some(
                env.iter()
                    .map(|(n, v)| EnvVar {
                        name: n.to_string(),
                        value: Some(v.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn markers<'a>(ledger: Option<&'a str>, containers: &'a [Container]) -> Markers<'a> {
        Markers {
            ledger,
            containers,
            last_reloaded_from: None,
            created_at: None,
        }
    }

    #[test]
    fn without_a_record_a_change_after_creation_reloads_only_where_asked() {
        // (workload created at, source changed at, option on, reloads)
        let table = [
            (Some(100), Some(200), true, true),
            (Some(200), Some(200), true, true),
            (Some(300), Some(200), true, false),
            (Some(100), None, true, false),
            (None, Some(200), true, false),
            (Some(100), Some(200), false, false),
        ];
        for (created_at, changed_at, on, reloads) in table {
            let source = Tracked {
                data_changed_at: changed_at,
                ..tracked(SourceKind::ConfigMap, "cfg", A)
            };
            let options = PlanOptions {
                reload_unrecorded: on,
                ..env_options()
            };
            let containers = [container(&[])];
            let marks = Markers {
                created_at,
                ..markers(None, &containers)
            };
            let decision = plan(std::slice::from_ref(&source), &[], marks, options);
            assert_eq!(
                matches!(decision, Decision::Reload { .. }),
                reloads,
                "{created_at:?} {changed_at:?} {on}: {decision:?}"
            );
            // A record always wins: the same digest recorded is current.
            let recorded = format!("{{\"configmap/cfg\":\"{A}\"}}");
            let marks = Markers {
                created_at,
                ..markers(Some(&recorded), &containers)
            };
            assert_eq!(plan(&[source], &[], marks, options), Decision::UpToDate);
        }
    }

    #[test]
    fn first_sight_records_a_baseline_without_rollout() {
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "cfg", A)],
            &[],
            markers(None, &[]),
            env_options(),
        );
        assert_eq!(
            decision,
            Decision::Baseline {
                ledger: format!("{{\"configmap/cfg\":\"{A}\"}}")
            }
        );
    }

    #[test]
    fn unchanged_ledger_means_no_write() {
        let ledger = format!("{{\"configmap/cfg\":\"{A}\"}}");
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "cfg", A)],
            &[],
            markers(Some(&ledger), &[]),
            env_options(),
        );
        assert_eq!(decision, Decision::UpToDate);
    }

    #[test]
    fn changed_digest_reloads_and_updates_the_ledger() {
        let ledger = format!("{{\"configmap/cfg\":\"{A}\",\"secret/db\":\"{A}\"}}");
        let decision = plan(
            &[
                tracked(SourceKind::ConfigMap, "cfg", B),
                tracked(SourceKind::Secret, "db", A),
            ],
            &[],
            markers(Some(&ledger), &[]),
            env_options(),
        );
        let Decision::Reload { ledger, changes } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(
            ledger,
            format!("{{\"configmap/cfg\":\"{B}\",\"secret/db\":\"{A}\"}}")
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].name.as_str(), changes[0].cause),
            ("cfg", Cause::Changed)
        );
    }

    #[test]
    fn two_sources_changed_together_give_one_reload() {
        let ledger = format!("{{\"configmap/cfg\":\"{A}\",\"secret/db\":\"{A}\"}}");
        let decision = plan(
            &[
                tracked(SourceKind::Secret, "db", B),
                tracked(SourceKind::ConfigMap, "cfg", B),
            ],
            &[],
            markers(Some(&ledger), &[]),
            env_options(),
        );
        let Decision::Reload { changes, .. } = decision else {
            panic!("{decision:?}")
        };
        let names: Vec<_> = changes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cfg", "db"], "sorted by kind then name");
    }

    #[test]
    fn upstream_env_var_with_current_digest_is_not_restarted() {
        let containers = [container(&[("STAKATER_CFG_CONFIGMAP", A)])];
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "cfg", A)],
            &[],
            markers(None, &containers),
            env_options(),
        );
        assert!(
            matches!(decision, Decision::Baseline { .. }),
            "{decision:?}"
        );
        let stale = [container(&[("STAKATER_CFG_CONFIGMAP", B)])];
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "cfg", A)],
            &[],
            markers(None, &stale),
            env_options(),
        );
        assert!(matches!(decision, Decision::Reload { .. }), "{decision:?}");
    }

    /// Secret `db` with data `x=<value>`, digested under `keys` as the watcher does.
    fn keyed_secret(value: &[u8], keys: &crate::model::keyed::DigestKeys) -> Tracked {
        let (sha1, _, keyed) = digest::secret_forms([("x", value)], "uid", keys);
        Tracked {
            keyed,
            ..tracked(SourceKind::Secret, "db", sha1.marker().as_str())
        }
    }

    #[test]
    fn keyed_digests_switch_on_rotate_and_off_without_a_rollout() {
        use crate::model::keyed::{DigestKey, DigestKeys};
        let key = |k: &[u8]| DigestKey::new("key", k).unwrap();
        let (k1, k2) = (&[1u8; 32][..], &[2u8; 32][..]);
        let on = DigestKeys::new(key(k1), vec![], true);
        let rotated = on.rotated(DigestKeys::new(key(k2), vec![], true));
        let off = DigestKeys::new(key(k2), vec![key(k1)], false);
        let ledger_of = |decision: &Decision| match decision {
            Decision::Baseline { ledger } | Decision::Reload { ledger, .. } => ledger.clone(),
            Decision::UpToDate => panic!("expected a write, got {decision:?}"),
        };
        // Upstream's SHA-1 in the env var, keys switched on: recognised, recorded keyed.
        let upstream = keyed_secret(b"1", &DigestKeys::default());
        let env = [container(&[(
            "STAKATER_DB_SECRET",
            upstream.digest.as_str(),
        )])];
        let now = keyed_secret(b"1", &on);
        let first = plan(
            std::slice::from_ref(&now),
            &[],
            markers(None, &env),
            env_options(),
        );
        assert!(matches!(first, Decision::Baseline { .. }), "{first:?}");
        let recorded = ledger_of(&first);
        assert!(recorded.contains("hmac-sha256:"), "{recorded}");
        assert!(!recorded.contains(upstream.digest.as_str()));
        assert_eq!(
            plan(
                std::slice::from_ref(&now),
                &[],
                markers(Some(&recorded), &env),
                env_options()
            ),
            Decision::UpToDate
        );
        // The key rotates: the old record is still current, and rewritten under the new key.
        let after = plan(
            &[keyed_secret(b"1", &rotated)],
            &[],
            markers(Some(&recorded), &env),
            env_options(),
        );
        assert!(matches!(after, Decision::Baseline { .. }), "{after:?}");
        let rerecorded = ledger_of(&after);
        assert_ne!(rerecorded, recorded);
        // The data changes: one reload, the marker is the HMAC under the current key.
        let changed = plan(
            &[keyed_secret(b"2", &rotated)],
            &[],
            markers(Some(&rerecorded), &env),
            env_options(),
        );
        let Decision::Reload { changes, ledger } = &changed else {
            panic!("expected a reload, got {changed:?}");
        };
        let marker = changes[0].digest.as_str().to_owned();
        assert_eq!(marker.len(), 64);
        assert!(ledger.contains(&marker));
        // Switched off with the keys still readable: recognised, recorded as SHA-1 again.
        let env = [container(&[("STAKATER_DB_SECRET", marker.as_str())])];
        let switched_off = plan(
            &[keyed_secret(b"2", &off)],
            &[],
            markers(Some(ledger), &env),
            env_options(),
        );
        let sha1 = keyed_secret(b"2", &DigestKeys::default()).digest;
        assert_eq!(
            switched_off,
            Decision::Baseline {
                ledger: format!("{{\"secret/db\":\"{sha1}\"}}")
            }
        );
        // Without any key, a keyed record cannot be checked: one reload.
        let blind = plan(
            &[keyed_secret(b"2", &DigestKeys::default())],
            &[],
            markers(Some(ledger), &env),
            env_options(),
        );
        assert!(matches!(blind, Decision::Reload { .. }), "{blind:?}");
    }

    #[test]
    fn upstream_last_reloaded_from_counts_as_a_marker() {
        let annotation = format!(
            "{{\"type\":\"SECRET\",\"name\":\"db\",\"namespace\":\"ns\",\"hash\":\"{A}\",\"containerRefs\":[\"app\"],\"observedAt\":1}}"
        );
        let m = Markers {
            ledger: None,
            containers: &[],
            last_reloaded_from: Some(&annotation),
            created_at: None,
        };
        let decision = plan(
            &[tracked(SourceKind::Secret, "db", A)],
            &[],
            m,
            env_options(),
        );
        assert!(
            matches!(decision, Decision::Baseline { .. }),
            "{decision:?}"
        );
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "db", B)],
            &[],
            m,
            env_options(),
        );
        assert!(
            matches!(decision, Decision::Baseline { .. }),
            "type must match too: {decision:?}"
        );
    }

    #[test]
    fn reload_on_create_only_for_sources_born_while_running() {
        let mut born = tracked(SourceKind::ConfigMap, "cfg", A);
        born.created_while_running = true;
        let on = PlanOptions {
            reload_on_create: true,
            ..env_options()
        };
        assert!(matches!(
            plan(&[born.clone()], &[], markers(None, &[]), on),
            Decision::Reload { .. }
        ));
        assert!(matches!(
            plan(&[born], &[], markers(None, &[]), env_options()),
            Decision::Baseline { .. }
        ));
        let old = tracked(SourceKind::ConfigMap, "cfg", A);
        assert!(matches!(
            plan(&[old], &[], markers(None, &[]), on),
            Decision::Baseline { .. }
        ));
    }

    #[test]
    fn reload_on_delete_removes_env_var_or_writes_the_delete_marker() {
        let gone = Deleted {
            kind: SourceKind::ConfigMap,
            name: "cfg".into(),
            container: 0,
        };
        let with_env = [container(&[("STAKATER_CFG_CONFIGMAP", A)])];
        let ledger = format!("{{\"configmap/cfg\":\"{A}\"}}");
        let env_on = PlanOptions {
            reload_on_delete: true,
            ..env_options()
        };
        let Decision::Reload {
            ledger: new_ledger,
            changes,
        } = plan(
            &[],
            std::slice::from_ref(&gone),
            markers(Some(&ledger), &with_env),
            env_on,
        )
        else {
            panic!()
        };
        assert_eq!(changes[0].cause, Cause::Deleted);
        assert_eq!(new_ledger, "", "env-vars: the entry goes with the env var");
        // No env var: nothing to remove, so no rollout; the stale ledger entry is dropped.
        assert_eq!(
            plan(
                &[],
                std::slice::from_ref(&gone),
                markers(Some(&ledger), &[]),
                env_on
            ),
            Decision::Baseline {
                ledger: String::new()
            }
        );
        let ann_on = PlanOptions {
            strategy: Strategy::Annotations,
            reload_on_create: false,
            reload_on_delete: true,
            reload_unrecorded: false,
            prune_stale: true,
            key_level: false,
        };
        let Decision::Reload {
            ledger: new_ledger,
            changes,
        } = plan(
            &[],
            std::slice::from_ref(&gone),
            markers(Some(&ledger), &[]),
            ann_on,
        )
        else {
            panic!()
        };
        assert_eq!(changes[0].digest, digest::delete_marker());
        assert!(new_ledger.contains("aae45badef99284e4dae01d6046154ea9d99532f"));
        // Once the marker is recorded, a second pass writes nothing.
        assert_eq!(
            plan(&[], &[gone], markers(Some(&new_ledger), &[]), ann_on),
            Decision::UpToDate
        );
    }

    #[test]
    fn nothing_tracked_and_no_ledger_is_up_to_date() {
        assert_eq!(
            plan(&[], &[], markers(None, &[]), env_options()),
            Decision::UpToDate
        );
    }

    #[test]
    fn corrupt_ledger_is_rewritten() {
        let decision = plan(
            &[tracked(SourceKind::ConfigMap, "cfg", A)],
            &[],
            markers(Some("{not json"), &[]),
            env_options(),
        );
        assert!(
            matches!(decision, Decision::Baseline { .. }),
            "{decision:?}"
        );
    }
}
