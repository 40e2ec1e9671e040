//! The watchers: they keep the indexes current from the API server and tell the reconciler what
//! changed. Watchers list once at start (and after a watch expires) and then stream changes; only
//! a kind we may list but not watch is listed again per change ([`listing`]).

pub mod access;
pub mod csi;
pub mod custom;
pub mod digest_key;
pub mod digested;
pub mod listing;
pub mod namespaces;
pub mod sources;
pub mod workloads;

use std::collections::HashSet;
use std::sync::RwLock;

use kube::api::Api;

use crate::config::Scope;

/// An API for `namespace`, or for all namespaces: a watch of one namespace or the whole cluster.
pub(crate) fn scoped_api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Which namespaces reconciles may act in, kept current by the namespace watcher when a
/// `--namespace-selector` is set.
#[derive(Debug)]
pub struct NamespaceFilter {
    scope: Scope,
    /// Namespaces matching the selector (only used with a selector).
    selected: RwLock<HashSet<String>>,
}

impl NamespaceFilter {
    /// A filter for `scope`; with a selector, nothing is allowed until the watcher fills it.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            selected: RwLock::new(HashSet::new()),
        }
    }

    /// The configured scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether workloads in `namespace` may be reloaded.
    pub fn allows(&self, namespace: &str) -> bool {
        match &self.scope {
            Scope::Namespaces(list) => list.iter().any(|n| n == namespace),
            Scope::Global { ignored, selector } => {
                if ignored.iter().any(|n| n == namespace) {
                    return false;
                }
                selector.is_none()
                    || self
                        .selected
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .contains(namespace)
            }
        }
    }

    /// Records whether a namespace matches the selector; returns true when that changed.
    pub fn set_selected(&self, namespace: &str, selected: bool) -> bool {
        let mut set = self
            .selected
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if selected {
            set.insert(namespace.to_owned())
        } else {
            set.remove(namespace)
        }
    }

    /// Replaces the selected set after a (re)list; returns the namespaces whose state changed.
    pub fn replace_selected(&self, fresh: HashSet<String>) -> Vec<String> {
        let mut set = self
            .selected
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = set.symmetric_difference(&fresh).cloned().collect();
        *set = fresh;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_scope_with_ignore_and_selector() {
        let plain = NamespaceFilter::new(Scope::Global {
            ignored: vec!["kube-system".into()],
            selector: None,
        });
        assert!(plain.allows("team") && !plain.allows("kube-system"));
        let selected = NamespaceFilter::new(Scope::Global {
            ignored: vec![],
            selector: Some("env=prod".into()),
        });
        assert!(!selected.allows("a"));
        assert!(selected.set_selected("a", true));
        assert!(selected.allows("a"));
        assert_eq!(
            selected
                .replace_selected(HashSet::from(["b".to_owned()]))
                .len(),
            2
        );
        assert!(!selected.allows("a") && selected.allows("b"));
    }

    #[test]
    fn namespaced_scope() {
        let filter = NamespaceFilter::new(Scope::Namespaces(vec!["a".into(), "b".into()]));
        assert!(filter.allows("a") && filter.allows("b") && !filter.allows("c"));
    }
}
