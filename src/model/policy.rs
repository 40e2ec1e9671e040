//! Which workloads track which sources: upstream's annotation decision (`ShouldReload`), in the
//! same order and with the same value parsing.

use std::collections::BTreeMap;

use regex::Regex;

use crate::model::annotations::Annotations;
use crate::model::digest::SourceKind;
use crate::model::source::SourceFlags;
use crate::model::workload::WorkloadKind;

/// Opt-out key on SecretProviderClass objects has no flag; these keys are fixed upstream.
pub const SPC_RELOAD: &str = "secretproviderclass.reloader.stakater.com/reload";
/// Typed auto key for SecretProviderClasses (no flag upstream).
pub const SPC_AUTO: &str = "secretproviderclass.reloader.stakater.com/auto";
/// Exclude list for ConfigMaps, read from workload metadata only.
pub const CONFIGMAP_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
/// Exclude list for Secrets, read from workload metadata only.
pub const SECRET_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
/// Exclude list for SecretProviderClasses, read from workload metadata only.
pub const SPC_EXCLUDE: &str = "secretproviderclasses.exclude.reloader.stakater.com/reload";
/// Argo Rollout restart method selector.
pub const ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";
/// Pod-template annotation written by the annotations strategy.
pub const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";

/// The annotation keys upstream lets users rename with `--*-annotation` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationKeys {
    /// `--configmap-annotation`: named ConfigMap list.
    pub configmap_reload: String,
    /// `--secret-annotation`: named Secret list.
    pub secret_reload: String,
    /// `--auto-annotation`: generic auto.
    pub auto: String,
    /// `--configmap-auto-annotation`.
    pub configmap_auto: String,
    /// `--secret-auto-annotation`.
    pub secret_auto: String,
    /// `--auto-search-annotation`, on the workload.
    pub search: String,
    /// `--search-match-annotation`, on the source.
    pub search_match: String,
    /// `--ignore-annotation`, on the source.
    pub ignore: String,
    /// `--pause-deployment-annotation`.
    pub pause_period: String,
    /// `--pause-deployment-time-annotation`.
    pub paused_at: String,
}

impl Default for AnnotationKeys {
    fn default() -> Self {
        Self {
            configmap_reload: "configmap.reloader.stakater.com/reload".into(),
            secret_reload: "secret.reloader.stakater.com/reload".into(),
            auto: "reloader.stakater.com/auto".into(),
            configmap_auto: "configmap.reloader.stakater.com/auto".into(),
            secret_auto: "secret.reloader.stakater.com/auto".into(),
            search: "reloader.stakater.com/search".into(),
            search_match: "reloader.stakater.com/match".into(),
            ignore: "reloader.stakater.com/ignore".into(),
            pause_period: "deployment.reloader.stakater.com/pause-period".into(),
            paused_at: "deployment.reloader.stakater.com/paused-at".into(),
        }
    }
}

/// Settings that shape the decision, from flags.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Annotation keys in effect.
    pub keys: AnnotationKeys,
    /// `--auto-reload-all`.
    pub auto_reload_all: bool,
    /// `--ignored-workload-types` contains `jobs`.
    pub ignore_jobs: bool,
    /// `--ignored-workload-types` contains `cronjobs`.
    pub ignore_cronjobs: bool,
}

/// Why a workload tracks a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Named in the workload's reload list: tracked even if the pod spec never references it.
    Named,
    /// `search: "true"` on the workload and `match: "true"` on the source; needs a reference.
    Search,
    /// Auto, typed auto or `--auto-reload-all`; needs a reference.
    Auto,
}

impl Match {
    /// Whether the pod spec must reference the source for a reload (upstream's AutoReload).
    pub fn needs_reference(self) -> bool {
        !matches!(self, Self::Named)
    }
}

/// Why a workload does not track a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    /// The workload's kind is in `--ignored-workload-types`.
    IgnoredWorkloadType,
    /// The source carries `reloader.stakater.com/ignore: "true"`.
    SourceIgnored,
    /// The workload's exclude list names the source.
    Excluded,
    /// No annotation opts the workload in for this source.
    NotOptedIn,
}

/// A reload-list item that is not a valid regular expression (skipped, reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern {
    /// The annotation key the item came from.
    pub key: String,
    /// The item as written.
    pub item: String,
    /// The regex compiler's message.
    pub error: String,
}

/// One item of a named reload list.
#[derive(Debug, Clone)]
pub enum ListItem {
    /// A name without regular-expression syntax: matches exactly that name.
    Exact(String),
    /// Any other item, compiled as upstream does (`^item$`).
    Pattern(Regex),
}

/// A workload's named reload list for one source kind, parsed and compiled once each time the
/// workload changes (not per source, not per event).
#[derive(Debug, Clone, Default)]
pub struct NamedList {
    /// The usable items, in order.
    pub items: Vec<ListItem>,
    /// Items that are not valid regular expressions (skipped, reported).
    pub invalid: Vec<InvalidPattern>,
}

impl NamedList {
    /// Parses a comma-separated list from annotation `key`.
    pub fn parse(key: &str, value: &str) -> Self {
        let mut list = Self::default();
        if value.is_empty() {
            return list;
        }
        for item in value.split(',') {
            let item = item.trim();
            if !item.contains(|c: char| r"\.+*?()|[]{}^$".contains(c)) {
                list.items.push(ListItem::Exact(item.to_owned()));
                continue;
            }
            match Regex::new(&format!("^{item}$")) {
                Ok(pattern) => list.items.push(ListItem::Pattern(pattern)),
                Err(error) => list.invalid.push(InvalidPattern {
                    key: key.to_owned(),
                    item: item.to_owned(),
                    error: error.to_string(),
                }),
            }
        }
        list
    }

    /// Whether an item matches `name` (upstream: the first match wins).
    pub fn matches(&self, name: &str) -> bool {
        self.items.iter().any(|item| match item {
            ListItem::Exact(exact) => exact == name,
            ListItem::Pattern(pattern) => pattern.is_match(name),
        })
    }

    /// The exact names listed.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter_map(|item| match item {
            ListItem::Exact(name) => Some(name.as_str()),
            ListItem::Pattern(_) => None,
        })
    }

    /// Whether any item is a pattern (so every source of the kind must be checked).
    pub fn has_patterns(&self) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, ListItem::Pattern(_)))
    }
}

/// A workload's named lists, one per source kind.
#[derive(Debug, Clone, Default)]
pub struct NamedLists {
    configmaps: NamedList,
    secrets: NamedList,
    secret_provider_classes: NamedList,
}

impl NamedLists {
    /// The list for one source kind.
    pub fn get(&self, kind: SourceKind) -> &NamedList {
        match kind {
            SourceKind::ConfigMap => &self.configmaps,
            SourceKind::Secret => &self.secrets,
            SourceKind::SecretProviderClass => &self.secret_provider_classes,
        }
    }

    /// Every invalid item of every list.
    pub fn invalid(&self) -> impl Iterator<Item = &InvalidPattern> {
        [
            &self.configmaps,
            &self.secrets,
            &self.secret_provider_classes,
        ]
        .into_iter()
        .flat_map(|list| list.invalid.iter())
    }
}

/// The annotations of one workload that the decision reads.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadAnnotations<'a> {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// `metadata.annotations`.
    pub metadata: &'a Annotations,
    /// The pod template's `metadata.annotations` (fallback when metadata has none of the keys).
    pub template: &'a Annotations,
}

/// The source being considered.
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    /// ConfigMap, Secret or SecretProviderClass.
    pub kind: SourceKind,
    /// Its name.
    pub name: &'a str,
    /// What its ignore and match annotations say.
    pub flags: SourceFlags,
}

/// The annotation keys of one source kind: named list, typed auto, exclude list.
fn kind_keys(keys: &AnnotationKeys, kind: SourceKind) -> (&str, &str, &'static str) {
    match kind {
        SourceKind::ConfigMap => (
            keys.configmap_reload.as_str(),
            keys.configmap_auto.as_str(),
            CONFIGMAP_EXCLUDE,
        ),
        SourceKind::Secret => (
            keys.secret_reload.as_str(),
            keys.secret_auto.as_str(),
            SECRET_EXCLUDE,
        ),
        SourceKind::SecretProviderClass => (SPC_RELOAD, SPC_AUTO, SPC_EXCLUDE),
    }
}

impl Policy {
    /// Upstream reads the four opt-in keys of a source kind from the workload's metadata, or
    /// from its pod template when metadata has none of them (presence, not value).
    fn opt_in_annotations<'a>(
        &self,
        kind: SourceKind,
        workload: WorkloadAnnotations<'a>,
    ) -> &'a Annotations {
        let (named_key, typed_auto_key, _) = kind_keys(&self.keys, kind);
        let opt_in_keys = [
            named_key,
            self.keys.search.as_str(),
            self.keys.auto.as_str(),
            typed_auto_key,
        ];
        if opt_in_keys
            .iter()
            .any(|k| workload.metadata.contains_key(k))
        {
            workload.metadata
        } else {
            workload.template
        }
    }

    /// The workload's named lists, parsed and compiled.
    pub fn named_lists(&self, workload: WorkloadAnnotations<'_>) -> NamedLists {
        let list = |kind: SourceKind| {
            let (named_key, _, _) = kind_keys(&self.keys, kind);
            let value = self
                .opt_in_annotations(kind, workload)
                .get(named_key)
                .map(String::as_str)
                .unwrap_or("");
            NamedList::parse(named_key, value)
        };
        NamedLists {
            configmaps: list(SourceKind::ConfigMap),
            secrets: list(SourceKind::Secret),
            secret_provider_classes: list(SourceKind::SecretProviderClass),
        }
    }

    /// What a source's annotations decide (ignore and match); the annotations themselves are
    /// dropped on arrival.
    pub fn source_flags(&self, annotations: &BTreeMap<String, String>) -> SourceFlags {
        let is_true = |key: &str| annotations.get(key).map(String::as_str) == Some("true");
        SourceFlags {
            ignored: is_true(&self.keys.ignore),
            matched: is_true(&self.keys.search_match),
        }
    }

    /// The (named list, typed auto, exclude) annotation keys for sources of `kind`.
    pub fn keys_for(&self, kind: SourceKind) -> (&str, &str, &'static str) {
        kind_keys(&self.keys, kind)
    }

    /// Decides whether `workload` tracks `source`, in upstream's order: ignored workload type,
    /// ignored source, exclude list, named list, search/match, auto. `lists` are the
    /// workload's [`Policy::named_lists`].
    pub fn evaluate(
        &self,
        source: SourceRef<'_>,
        workload: WorkloadAnnotations<'_>,
        lists: &NamedLists,
    ) -> Result<Match, NoMatch> {
        let ignored_kind = match workload.kind {
            WorkloadKind::Job => self.ignore_jobs,
            WorkloadKind::CronJob => self.ignore_cronjobs,
            _ => false,
        };
        if ignored_kind {
            return Err(NoMatch::IgnoredWorkloadType);
        }
        if source.flags.ignored {
            return Err(NoMatch::SourceIgnored);
        }
        let (_, typed_auto_key, exclude_key) = kind_keys(&self.keys, source.kind);
        let annotations = self.opt_in_annotations(source.kind, workload);
        let get = |key: &str| annotations.get(key).map(String::as_str).unwrap_or("");
        // Exclude is read from metadata only.
        if let Some(excluded) = workload.metadata.get(exclude_key)
            && excluded.split(',').any(|item| item.trim() == source.name)
        {
            return Err(NoMatch::Excluded);
        }
        if lists.get(source.kind).matches(source.name) {
            return Ok(Match::Named);
        }
        if get(&self.keys.search) == "true" && source.flags.matched {
            return Ok(Match::Search);
        }
        let auto = get(&self.keys.auto);
        let typed_auto = get(typed_auto_key);
        if parse_go_bool(auto)
            || parse_go_bool(typed_auto)
            || (auto.is_empty() && typed_auto.is_empty() && self.auto_reload_all)
        {
            return Ok(Match::Auto);
        }
        Err(NoMatch::NotOptedIn)
    }
}

/// Go's `strconv.ParseBool` truth values; anything it rejects counts as false.
pub fn parse_go_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    struct Case {
        kind: SourceKind,
        name: &'static str,
        source: &'static [(&'static str, &'static str)],
        metadata: &'static [(&'static str, &'static str)],
        template: &'static [(&'static str, &'static str)],
        expected: Result<Match, NoMatch>,
    }

    struct Evaluation {
        result: Result<Match, NoMatch>,
        invalid: Vec<InvalidPattern>,
    }

    fn run(policy: &Policy, case: &Case, workload_kind: WorkloadKind) -> Evaluation {
        let source = map(case.source);
        let metadata = map(case.metadata).into();
        let template = map(case.template).into();
        let workload = WorkloadAnnotations {
            kind: workload_kind,
            metadata: &metadata,
            template: &template,
        };
        let lists = policy.named_lists(workload);
        let result = policy.evaluate(
            SourceRef {
                kind: case.kind,
                name: case.name,
                flags: policy.source_flags(&source),
            },
            workload,
            &lists,
        );
        Evaluation {
            result,
            invalid: lists.invalid().cloned().collect(),
        }
    }

    const CM: SourceKind = SourceKind::ConfigMap;
    const SECRET: SourceKind = SourceKind::Secret;

    #[test]
    fn source_flags_are_exactly_true() {
        let policy = Policy::default();
        let ignore = "reloader.stakater.com/ignore";
        let matches = "reloader.stakater.com/match";
        #[rustfmt::skip]
        let cases: [(&[(&str, &str)], SourceFlags); 7] = [
            (&[], SourceFlags::default()),
            (&[(ignore, "true")], SourceFlags { ignored: true, matched: false }),
            (&[(matches, "true")], SourceFlags { ignored: false, matched: true }),
            (&[(ignore, "true"), (matches, "true")], SourceFlags { ignored: true, matched: true }),
            // Upstream compares with "true" exactly: Go's other truth values do not count.
            (&[(ignore, "True"), (matches, "1")], SourceFlags::default()),
            (&[(ignore, " true"), (matches, "yes")], SourceFlags::default()),
            (&[("reloader.stakater.com/auto", "true")], SourceFlags::default()),
        ];
        for (annotations, expected) in cases {
            assert_eq!(
                policy.source_flags(&map(annotations)),
                expected,
                "{annotations:?}"
            );
        }
    }

    #[test]
    fn decision_table() {
        use Match::*;
        use NoMatch::*;
        #[rustfmt::skip]
        let cases = [
            // Named lists: anchored regex items, trimmed.
            Case { kind: CM, name: "b", source: &[], metadata: &[("configmap.reloader.stakater.com/reload", "a, b")], template: &[], expected: Ok(Named) },
            Case { kind: CM, name: "app-config-x", source: &[], metadata: &[("configmap.reloader.stakater.com/reload", "app-config-.*")], template: &[], expected: Ok(Named) },
            Case { kind: CM, name: "xapp", source: &[], metadata: &[("configmap.reloader.stakater.com/reload", "app")], template: &[], expected: Err(NotOptedIn) },
            Case { kind: CM, name: "app", source: &[], metadata: &[("configmap.reloader.stakater.com/reload", ",, app ,")], template: &[], expected: Ok(Named) },
            // A Secret change never looks at configmap keys.
            Case { kind: SECRET, name: "a", source: &[], metadata: &[("configmap.reloader.stakater.com/reload", "a")], template: &[], expected: Err(NotOptedIn) },
            Case { kind: SECRET, name: "a", source: &[], metadata: &[("secret.reloader.stakater.com/reload", "a")], template: &[], expected: Ok(Named) },
            // Ignore on the source wins over everything.
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/ignore", "true")], metadata: &[("configmap.reloader.stakater.com/reload", "a")], template: &[], expected: Err(SourceIgnored) },
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/ignore", "True")], metadata: &[("configmap.reloader.stakater.com/reload", "a")], template: &[], expected: Ok(Named) },
            // Exclude: exact names on metadata, overrides named/search/auto.
            Case { kind: CM, name: "a", source: &[], metadata: &[("configmaps.exclude.reloader.stakater.com/reload", "x, a"), ("reloader.stakater.com/auto", "true")], template: &[], expected: Err(Excluded) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("configmaps.exclude.reloader.stakater.com/reload", "a.*"), ("reloader.stakater.com/auto", "true")], template: &[], expected: Ok(Auto) },
            Case { kind: CM, name: "a", source: &[], metadata: &[], template: &[("configmaps.exclude.reloader.stakater.com/reload", "a"), ("reloader.stakater.com/auto", "true")], expected: Ok(Auto) },
            // Search needs match on the source, both literally "true".
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/match", "true")], metadata: &[("reloader.stakater.com/search", "true")], template: &[], expected: Ok(Search) },
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/match", "True")], metadata: &[("reloader.stakater.com/search", "true")], template: &[], expected: Err(NotOptedIn) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/search", "true")], template: &[], expected: Err(NotOptedIn) },
            // Auto parses like Go's ParseBool.
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/auto", "True")], template: &[], expected: Ok(Auto) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/auto", "1")], template: &[], expected: Ok(Auto) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/auto", "t")], template: &[], expected: Ok(Auto) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/auto", "yes")], template: &[], expected: Err(NotOptedIn) },
            // Typed auto only for its own kind.
            Case { kind: CM, name: "a", source: &[], metadata: &[("secret.reloader.stakater.com/auto", "true")], template: &[], expected: Err(NotOptedIn) },
            Case { kind: SECRET, name: "a", source: &[], metadata: &[("secret.reloader.stakater.com/auto", "true")], template: &[], expected: Ok(Auto) },
            // Pod-template fallback only when metadata has none of the four keys.
            Case { kind: CM, name: "a", source: &[], metadata: &[("unrelated", "x")], template: &[("reloader.stakater.com/auto", "true")], expected: Ok(Auto) },
            Case { kind: CM, name: "a", source: &[], metadata: &[("reloader.stakater.com/auto", "false")], template: &[("reloader.stakater.com/auto", "true")], expected: Err(NotOptedIn) },
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/match", "true")], metadata: &[], template: &[("reloader.stakater.com/search", "true")], expected: Ok(Search) },
            // Named beats search and auto (first match wins).
            Case { kind: CM, name: "a", source: &[("reloader.stakater.com/match", "true")], metadata: &[("configmap.reloader.stakater.com/reload", "a"), ("reloader.stakater.com/search", "true")], template: &[], expected: Ok(Named) },
        ];
        let policy = Policy::default();
        for (i, case) in cases.iter().enumerate() {
            let got = run(&policy, case, WorkloadKind::Deployment);
            assert_eq!(
                got.result, case.expected,
                "case {i}: {} {:?}",
                case.name, case.metadata
            );
            assert!(got.invalid.is_empty(), "case {i}");
        }
    }

    #[test]
    fn invalid_regex_items_are_skipped_and_reported() {
        let case = Case {
            kind: CM,
            name: "good",
            source: &[],
            metadata: &[("configmap.reloader.stakater.com/reload", "bad[, good")],
            template: &[],
            expected: Ok(Match::Named),
        };
        let got = run(&Policy::default(), &case, WorkloadKind::Deployment);
        assert_eq!(got.result, Ok(Match::Named));
        assert_eq!(got.invalid.len(), 1);
        assert_eq!(got.invalid[0].item, "bad[");
        assert_eq!(got.invalid[0].key, "configmap.reloader.stakater.com/reload");
    }

    #[test]
    fn literal_items_match_exactly_and_patterns_are_anchored() {
        let list = NamedList::parse("k", "app-config, web.*, bad[, ");
        assert_eq!(list.exact_names().collect::<Vec<_>>(), ["app-config", ""]);
        assert!(list.has_patterns());
        assert!(list.matches("app-config") && list.matches("web-1"));
        assert!(!list.matches("app-config-2") && !list.matches("xweb"));
        assert_eq!(list.invalid.len(), 1);
        let plain = NamedList::parse("k", "a,b");
        assert!(!plain.has_patterns());
        assert!(NamedList::parse("k", "").items.is_empty());
    }

    #[test]
    fn auto_reload_all_opts_in_unannotated_workloads_only() {
        let policy = Policy {
            auto_reload_all: true,
            ..Policy::default()
        };
        let unannotated = Case {
            kind: CM,
            name: "a",
            source: &[],
            metadata: &[],
            template: &[],
            expected: Ok(Match::Auto),
        };
        assert_eq!(
            run(&policy, &unannotated, WorkloadKind::Deployment).result,
            Ok(Match::Auto)
        );
        for value in ["false", "no", "0"] {
            let metadata: &'static [(&'static str, &'static str)] = match value {
                "false" => &[("reloader.stakater.com/auto", "false")],
                "no" => &[("reloader.stakater.com/auto", "no")],
                _ => &[("configmap.reloader.stakater.com/auto", "0")],
            };
            let case = Case {
                kind: CM,
                name: "a",
                source: &[],
                metadata,
                template: &[],
                expected: Err(NoMatch::NotOptedIn),
            };
            assert_eq!(
                run(&policy, &case, WorkloadKind::Deployment).result,
                Err(NoMatch::NotOptedIn),
                "{value}"
            );
        }
    }

    #[test]
    fn ignored_workload_types() {
        let policy = Policy {
            ignore_jobs: true,
            ..Policy::default()
        };
        let case = Case {
            kind: CM,
            name: "a",
            source: &[],
            metadata: &[("reloader.stakater.com/auto", "true")],
            template: &[],
            expected: Ok(Match::Auto),
        };
        assert_eq!(
            run(&policy, &case, WorkloadKind::Job).result,
            Err(NoMatch::IgnoredWorkloadType)
        );
        assert_eq!(
            run(&policy, &case, WorkloadKind::CronJob).result,
            Ok(Match::Auto)
        );
    }

    #[test]
    fn custom_keys_replace_the_defaults() {
        let policy = Policy {
            keys: AnnotationKeys {
                configmap_reload: "example.com/reload".into(),
                ..AnnotationKeys::default()
            },
            ..Policy::default()
        };
        let custom = Case {
            kind: CM,
            name: "a",
            source: &[],
            metadata: &[("example.com/reload", "a")],
            template: &[],
            expected: Ok(Match::Named),
        };
        assert_eq!(
            run(&policy, &custom, WorkloadKind::Deployment).result,
            Ok(Match::Named)
        );
        let default_key = Case {
            kind: CM,
            name: "a",
            source: &[],
            metadata: &[("configmap.reloader.stakater.com/reload", "a")],
            template: &[],
            expected: Err(NoMatch::NotOptedIn),
        };
        assert_eq!(
            run(&policy, &default_key, WorkloadKind::Deployment).result,
            Err(NoMatch::NotOptedIn)
        );
    }

    #[test]
    fn go_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_go_bool(t), "{t}");
        }
        for f in ["0", "f", "false", "yes", "", "tRuE", " true"] {
            assert!(!parse_go_bool(f), "{f}");
        }
    }
}
