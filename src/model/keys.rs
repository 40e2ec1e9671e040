//! Key-level triggers (issue 15, item 1): a workload whose every reference to a source names
//! keys (`configMapKeyRef`/`secretKeyRef`, `items`) reloads only when one of those keys'
//! values changes, instead of on any change of the source.
//!
//! The decision is recorded in the ledger in a form of its own, so it can never be mistaken
//! for a whole-object entry (a bare 40-hex SHA-1):
//!
//! ```text
//! keys:<whole-object record>:<digest of the selected keys>:<key>,<key>,...
//! ```
//!
//! (the whole-object record is upstream's SHA-1, or a Secret's keyed digest
//! `hmac-sha256:<key id>:<hex>`, see [`crate::model::keyed`]).
//!
//! The whole-object digest in it is the one the pods were last known to run with (recorded at
//! the last reload or baseline, and left alone while only other keys change), so turning the
//! option off compares it as a whole-object entry: nothing rolls unless some data changed since
//! then. A whole-object entry met with the option on is compared as one (a match is rewritten
//! in the key-level form on metadata only), so turning the option on rolls nothing.

use k8s_openapi::api::core::v1::PodSpec;

use crate::model::annotations::Annotations;
use crate::model::digest::{KEY_DIGEST_LEN, KeyDigests, SourceKind};
use crate::model::keyed::{DataNow, Recognition};
use crate::model::ledger::{LEDGER_ANNOTATION, Ledger};
use crate::model::refs::{self, KeysRead};
use crate::model::workload::WorkloadView;

/// Workload metadata annotation: `"true"` turns key-level triggers on for this workload,
/// `"false"` off, whatever `--key-level-triggers` says.
pub const KEY_LEVEL_ANNOTATION: &str = "kube-reloader.io/key-level";

/// Prefix of a key-level ledger entry (never valid hex, so never a whole-object digest).
const ENTRY_PREFIX: &str = "keys:";

/// A `kube-reloader.io/key-level` value that is neither `"true"` nor `"false"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {KEY_LEVEL_ANNOTATION}={value:?} is not \"true\" or \"false\"")]
pub struct InvalidKeyLevel {
    /// The annotation value.
    pub value: String,
}

/// Whether key-level triggers apply to a workload with these metadata annotations: its
/// annotation if set, else the global flag. An invalid value falls back to the flag (and is
/// returned, to be reported).
pub fn enabled(annotations: &Annotations, global: bool) -> (bool, Option<InvalidKeyLevel>) {
    match annotations.get(KEY_LEVEL_ANNOTATION).map(String::as_str) {
        None => (global, None),
        Some("true") => (true, None),
        Some("false") => (false, None),
        Some(other) => (
            global,
            Some(InvalidKeyLevel {
                value: other.to_owned(),
            }),
        ),
    }
}

/// The keys a workload reads of one source, and one digest over their values now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySelection {
    /// The keys, sorted and deduplicated.
    pub keys: Vec<String>,
    /// 32 hex characters: SHA-256 (truncated) over each key with its value's digest, or an
    /// "absent" mark for a key the source does not have (a key that disappears is a change).
    pub digest: String,
}

impl KeySelection {
    /// The selection of `keys` (sorted, deduplicated) from a source's key digests.
    pub fn of(keys: Vec<String>, digests: &KeyDigests) -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for key in &keys {
            context.update(key.as_bytes());
            match digests.get(key) {
                Some(value) => {
                    context.update(&[0, 1]);
                    context.update(value);
                }
                None => context.update(&[0, 0]),
            }
        }
        let full = context.finish();
        let digest = hex::encode(full.as_ref().get(..KEY_DIGEST_LEN).unwrap_or(full.as_ref()));
        Self { keys, digest }
    }

    /// The keys as the ledger lists them, comma-separated (keys cannot hold `,` or `:`).
    pub fn key_list(&self) -> String {
        self.keys.join(",")
    }

    /// The ledger entry recording this selection, with the whole-object record now.
    pub fn entry(&self, whole: &str) -> String {
        format!("{ENTRY_PREFIX}{whole}:{}:{}", self.digest, self.key_list())
    }
}

/// The key selection a workload's pod spec makes of one source, when key-level triggers are
/// `enabled` for it and every reference names keys; `None` means whole-object behaviour.
pub fn selection(
    enabled: bool,
    spec: &PodSpec,
    kind: SourceKind,
    name: &str,
    digests: &KeyDigests,
) -> Option<KeySelection> {
    if !enabled {
        return None;
    }
    match refs::keys_read(spec, kind, name) {
        KeysRead::Whole => None,
        KeysRead::Keys(keys) => Some(KeySelection::of(keys, digests)),
    }
}

/// A ledger entry, in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A whole-object digest (upstream's marker value): ledger, env var or `last-reloaded-from`.
    Whole(&'a str),
    /// A key-level entry.
    Keys {
        /// The whole-object digest the pods were last known to run with.
        whole: &'a str,
        /// The digest of the selected keys then.
        digest: &'a str,
        /// The keys, comma-separated.
        keys: &'a str,
    },
}

impl<'a> Entry<'a> {
    /// Reads a recorded value; anything not in the key-level form is a whole-object digest.
    pub fn parse(text: &'a str) -> Self {
        // From the right: keys and the key digest hold no `:`, a keyed whole-object record does.
        text.strip_prefix(ENTRY_PREFIX)
            .and_then(|rest| {
                let mut parts = rest.rsplitn(3, ':');
                let keys = parts.next()?;
                let digest = parts.next()?;
                Some(Self::Keys {
                    whole: parts.next()?,
                    digest,
                    keys,
                })
            })
            .unwrap_or(Self::Whole(text))
    }

    /// The whole-object digest recorded.
    pub fn whole(self) -> &'a str {
        match self {
            Self::Whole(whole) | Self::Keys { whole, .. } => whole,
        }
    }
}

/// How a recorded value compares with a source now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Nothing the workload reads changed (the record may still be rewritten in the form the
    /// decision uses now, on metadata only).
    Current,
    /// The source changed, but only in keys the workload does not read: no reload, and the
    /// record stays as it is (its whole-object digest is what the pods run with).
    OtherKeysChanged,
    /// What the workload reads changed (or may have: a whole-object record that differs).
    Changed,
}

/// Compares a recorded value with the source now (`whole`, and `selection` when key-level
/// triggers apply). A whole-object record is compared as one in both modes; a key-level record
/// is compared by its key digest when it lists the same keys, else (the pod spec changed what
/// it reads) by its whole-object digest, conservatively.
pub fn judge(recorded: &str, now: DataNow<'_>, selection: Option<&KeySelection>) -> Judgement {
    let entry = Entry::parse(recorded);
    // A record made with a digest key no longer configured cannot be checked: reload (the
    // planner reports it).
    let whole_same = now.recognize(entry.whole()) == Recognition::Same;
    match (entry, selection) {
        (Entry::Keys { digest, keys, .. }, Some(now)) if keys == now.key_list() => {
            if digest != now.digest {
                Judgement::Changed
            } else if whole_same {
                Judgement::Current
            } else {
                Judgement::OtherKeysChanged
            }
        }
        _ if whole_same => Judgement::Current,
        _ => Judgement::Changed,
    }
}

/// Whether a workload will not reload for a change of a source because it reads only other
/// keys (its record is [`Judgement::OtherKeysChanged`]): the rollout governor must not wait for
/// it as a canary of that change.
pub fn ignores_change(
    recorded: Option<&str>,
    now: DataNow<'_>,
    selection: Option<&KeySelection>,
) -> bool {
    recorded.is_some_and(|r| judge(r, now, selection) == Judgement::OtherKeysChanged)
}

/// [`ignores_change`] for a workload (its own pod spec and ledger) and a source now (`whole`,
/// `digests`), with `--key-level-triggers` = `global`. Shared by the governor's canary choice
/// and `explain`.
pub fn workload_ignores_change(
    view: &WorkloadView,
    global: bool,
    (kind, name): (SourceKind, &str),
    now: DataNow<'_>,
    digests: &KeyDigests,
) -> bool {
    let (on, _) = enabled(&view.annotations, global);
    let selection = selection(on, &view.pod_spec, kind, name, digests);
    let ledger = Ledger::parse(view.annotations.get(LEDGER_ANNOTATION).map(String::as_str));
    ignores_change(ledger.get(kind, name), now, selection.as_ref())
}

/// The value to record for a source now: the key-level form when a selection applies, else
/// the whole-object record ([`DataNow::record`]).
pub fn record(now: DataNow<'_>, selection: Option<&KeySelection>) -> String {
    match selection {
        Some(selection) => selection.entry(&now.record()),
        None => now.record(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::{Digest, configmap_content};

    const W1: &str = "f83e99e324ba68ccc373a58ef1eb42f8ab88646a";
    const W2: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

    fn keys_of(data: &[(&str, &str)]) -> KeyDigests {
        configmap_content(data.iter().copied(), []).1
    }

    fn select(keys: &[&str], data: &[(&str, &str)]) -> KeySelection {
        KeySelection::of(keys.iter().map(|k| k.to_string()).collect(), &keys_of(data))
    }

    fn digest(text: &str) -> Digest {
        Digest::parse(text).unwrap()
    }

    #[test]
    fn the_annotation_overrides_the_flag_and_an_invalid_value_is_reported() {
        let with = |v: &str| Annotations::from([(KEY_LEVEL_ANNOTATION.to_owned(), v.to_owned())]);
        // (annotations, flag, enabled, invalid)
        let rows = [
            (Annotations::default(), false, false, false),
            (Annotations::default(), true, true, false),
            (with("true"), false, true, false),
            (with("false"), true, false, false),
            (with("yes"), true, true, true),
            (with("True"), false, false, true),
        ];
        for (annotations, flag, on, invalid) in rows {
            let (got, problem) = enabled(&annotations, flag);
            assert_eq!(
                (got, problem.is_some()),
                (on, invalid),
                "{annotations:?} {flag}"
            );
        }
        let (_, problem) = enabled(&with("yes"), false);
        assert_eq!(
            problem.map(|p| p.to_string()).as_deref(),
            Some("annotation kube-reloader.io/key-level=\"yes\" is not \"true\" or \"false\"")
        );
    }

    #[test]
    fn the_selection_digest_moves_only_with_the_selected_keys() {
        let base = select(&["a"], &[("a", "1"), ("b", "2")]);
        assert_eq!(base.digest.len(), 32);
        assert_eq!(
            base,
            select(&["a"], &[("a", "1"), ("b", "3")]),
            "b is not read"
        );
        assert_ne!(base, select(&["a"], &[("a", "9"), ("b", "2")]), "a changed");
        assert_ne!(base, select(&["a"], &[("b", "2")]), "a disappeared");
        let absent = select(&["a"], &[("b", "2")]);
        assert_ne!(absent, select(&["a"], &[("a", "")]), "empty is not absent");
        assert_ne!(
            select(&["a", "b"], &[("a", "1"), ("b", "2")]).digest,
            select(&["a", "b"], &[("a", "2"), ("b", "1")]).digest,
            "values stay with their keys"
        );
    }

    #[test]
    fn entries_round_trip_and_never_pass_for_a_whole_digest() {
        let selection = select(&["a", "b.c"], &[("a", "1")]);
        let text = selection.entry(digest(W1).as_str());
        assert!(Digest::parse(&text).is_none());
        assert_eq!(
            Entry::parse(&text),
            Entry::Keys {
                whole: W1,
                digest: &selection.digest,
                keys: "a,b.c"
            }
        );
        assert_eq!(Entry::parse(W1), Entry::Whole(W1));
        assert_eq!(Entry::parse("keys:broken"), Entry::Whole("keys:broken"));
        assert_eq!(record(DataNow::sha1(&digest(W1)), None), W1);
        assert_eq!(record(DataNow::sha1(&digest(W1)), Some(&selection)), text);
    }

    /// Every (recorded form, mode now) pair, including switching the option on and off.
    #[test]
    fn judgement_table() {
        let a1 = select(&["a"], &[("a", "1"), ("b", "1")]);
        let a2 = select(&["a"], &[("a", "2"), ("b", "1")]);
        let ab1 = select(&["a", "b"], &[("a", "1"), ("b", "1")]);
        let keyed = |whole: &str, s: &KeySelection| s.entry(digest(whole).as_str());
        // (what, recorded, whole now, selection now, judgement)
        let rows: Vec<(&str, String, &str, Option<&KeySelection>, Judgement)> = vec![
            ("whole, same", W1.into(), W1, None, Judgement::Current),
            ("whole, changed", W1.into(), W2, None, Judgement::Changed),
            (
                "switched on, unchanged: no rollout",
                W1.into(),
                W1,
                Some(&a1),
                Judgement::Current,
            ),
            (
                "switched on, changed meanwhile: reloads as before",
                W1.into(),
                W2,
                Some(&a1),
                Judgement::Changed,
            ),
            (
                "keys, same",
                keyed(W1, &a1),
                W1,
                Some(&a1),
                Judgement::Current,
            ),
            (
                "keys, other key changed",
                keyed(W1, &a1),
                W2,
                Some(&a1),
                Judgement::OtherKeysChanged,
            ),
            (
                "keys, read key changed",
                keyed(W1, &a1),
                W2,
                Some(&a2),
                Judgement::Changed,
            ),
            (
                "keys read changed, data same",
                keyed(W1, &a1),
                W1,
                Some(&ab1),
                Judgement::Current,
            ),
            (
                "keys read changed, data changed",
                keyed(W1, &a1),
                W2,
                Some(&ab1),
                Judgement::Changed,
            ),
            (
                "switched off, unchanged: no rollout",
                keyed(W1, &a1),
                W1,
                None,
                Judgement::Current,
            ),
            (
                "switched off, other keys changed meanwhile: one reload",
                keyed(W1, &a1),
                W2,
                None,
                Judgement::Changed,
            ),
        ];
        for (what, recorded, whole, selection, expected) in rows {
            assert_eq!(
                judge(&recorded, DataNow::sha1(&digest(whole)), selection),
                expected,
                "{what}"
            );
            assert_eq!(
                ignores_change(Some(&recorded), DataNow::sha1(&digest(whole)), selection),
                expected == Judgement::OtherKeysChanged,
                "{what}"
            );
        }
        assert!(
            !ignores_change(None, DataNow::sha1(&digest(W1)), Some(&a1)),
            "no record"
        );
    }

    #[test]
    fn a_key_level_entry_holds_a_keyed_whole_object_record() {
        let whole = format!("hmac-sha256:0a1b2c3d:{}", "e".repeat(64));
        let selection = select(&["a", "b"], &[("a", "1"), ("b", "2")]);
        let text = selection.entry(&whole);
        assert_eq!(
            Entry::parse(&text),
            Entry::Keys {
                whole: &whole,
                digest: &selection.digest,
                keys: "a,b",
            }
        );
    }
}
