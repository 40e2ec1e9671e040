//! The startup RBAC self-check: before watching, ask the API server (SelfSubjectAccessReview)
//! whether we may list, watch and patch each kind. A missing permission is reported once, with
//! the exact rule to add, and that kind is skipped, instead of a watch failing forever.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// One kind the controller wants to use, with the verbs it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// API group ("" for core).
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Verbs needed.
    pub verbs: &'static [&'static str],
    /// Namespace, or `None` for cluster-wide.
    pub namespace: Option<String>,
    /// The one object used, when the grant may be limited to it (RBAC `resourceNames`);
    /// `None` for any object. Never applied to `create`, whose requests carry no name.
    pub name: Option<String>,
}

/// The verbs of a [`Need`] that were denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The need.
    pub need: Need,
    /// Which of its verbs are not allowed.
    pub denied: Vec<&'static str>,
}

impl Missing {
    /// The RBAC rule that would grant the missing verbs, in manifest form (two rules when a
    /// named object also needs `create`, which cannot be limited by name).
    pub fn rule(&self) -> String {
        let scope = match &self.need.namespace {
            Some(ns) => format!("a Role in namespace {ns}"),
            None => "a ClusterRole".to_owned(),
        };
        let (named, any): (Vec<&str>, Vec<&str>) = self
            .denied
            .iter()
            .partition(|verb| self.need.name.is_some() && **verb != "create");
        let mut rules = Vec::new();
        if !any.is_empty() {
            rules.push(self.rule_text(None, &any));
        }
        if !named.is_empty() {
            rules.push(self.rule_text(self.need.name.as_deref(), &named));
        }
        format!("{scope} with rule {}", rules.join(" and rule "))
    }

    fn rule_text(&self, name: Option<&str>, verbs: &[&str]) -> String {
        let quoted = |items: &[&str]| {
            items
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let names = name
            .map(|n| format!("resourceNames: [\"{n}\"], "))
            .unwrap_or_default();
        format!(
            "{{apiGroups: [\"{}\"], resources: [\"{}\"], {names}verbs: [{}]}}",
            self.need.group,
            self.need.resource,
            quoted(verbs)
        )
    }
}

/// Asks the API server about every verb of every need; returns what is denied. A review that
/// cannot be made at all counts as allowed (the watch will then report the real error).
pub async fn check(client: &kube::Client, needs: &[Need]) -> Vec<Missing> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for need in needs {
        let mut denied = Vec::new();
        for verb in need.verbs {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(need.group.to_owned()),
                        resource: Some(need.resource.to_owned()),
                        verb: Some((*verb).to_owned()),
                        namespace: need.namespace.clone(),
                        name: need.name.clone().filter(|_| *verb != "create"),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            match api.create(&PostParams::default(), &review).await {
                Ok(result) if result.status.as_ref().is_some_and(|s| !s.allowed) => {
                    denied.push(*verb)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(resource = need.resource, verb, error = %e, "cannot check permissions")
                }
            }
        }
        if !denied.is_empty() {
            missing.push(Missing {
                need: need.clone(),
                denied,
            });
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_scope_group_resource_and_verbs() {
        let missing = Missing {
            need: Need {
                group: "apps",
                resource: "statefulsets",
                verbs: &["list", "watch", "patch"],
                namespace: None,
                name: None,
            },
            denied: vec!["list", "watch"],
        };
        assert_eq!(
            missing.rule(),
            "a ClusterRole with rule {apiGroups: [\"apps\"], resources: [\"statefulsets\"], verbs: [\"list\", \"watch\"]}"
        );
        let namespaced = Missing {
            need: Need {
                group: "",
                resource: "secrets",
                verbs: &["list"],
                namespace: Some("team".into()),
                name: None,
            },
            denied: vec!["list"],
        };
        assert!(namespaced.rule().starts_with("a Role in namespace team"));
    }

    #[test]
    fn a_named_object_gets_resource_names_except_for_create() {
        let lease = Missing {
            need: Need {
                group: "coordination.k8s.io",
                resource: "leases",
                verbs: &["get", "create", "patch"],
                namespace: Some("ops".into()),
                name: Some("lock".into()),
            },
            denied: vec!["get", "create", "patch"],
        };
        assert_eq!(
            lease.rule(),
            "a Role in namespace ops with rule {apiGroups: [\"coordination.k8s.io\"], resources: [\"leases\"], verbs: [\"create\"]} \
             and rule {apiGroups: [\"coordination.k8s.io\"], resources: [\"leases\"], resourceNames: [\"lock\"], verbs: [\"get\", \"patch\"]}"
        );
    }
}
