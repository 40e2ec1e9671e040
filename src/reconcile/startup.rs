//! Startup, driven by the kind registry: discover the optional APIs, check RBAC for everything
//! about to be watched or written (one line per gap, naming the rule to add), then start the
//! watches of what is served and allowed.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::Scope;
use crate::kinds::Kind;
use crate::model::digest::SourceKind;
use crate::model::workload::WorkloadKind;
use crate::ops::metrics::DegradedLabels;
use crate::reconcile::Context;
use crate::reconcile::degraded::{self, Degradation};
use crate::reconcile::sync::Watched;
use crate::watch::digested::{DigestedConfigMap, DigestedSecret};
use crate::watch::{self, access};

/// The CSI APIs.
const CSI_GROUP: &str = "secrets-store.csi.x-k8s.io";

/// Whether the API server serves `resource` in `api_version`. Only a 404 counts as absent:
/// on any other error we assume it is served and let the watcher report and retry.
async fn served(ctx: &Context, api_version: &str, resource: &str) -> bool {
    match ctx.client.list_api_group_resources(api_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == resource),
        Err(kube::Error::Api(status)) if status.code == 404 => false,
        Err(e) => {
            tracing::warn!(api_version, resource, error = %e, "cannot check whether the API is served; assuming it is");
            true
        }
    }
}

/// The workload kinds in use with these settings that this cluster serves.
async fn discover(ctx: &Context) -> Vec<&dyn Kind> {
    let mut found = Vec::new();
    if ctx.webhook_mode() {
        // Upstream's webhook mode looks at no workload.
        return found;
    }
    for kind in ctx.kinds.iter() {
        if kind.verbs(&ctx.settings).is_none() {
            continue;
        }
        if let Some(optional) = kind.optional(&ctx.settings) {
            let api = kind.api();
            if !served(ctx, &api.api_version(), api.plural).await {
                if optional.warn {
                    tracing::warn!("{}", optional.absent);
                } else {
                    tracing::info!("{}", optional.absent);
                }
                continue;
            }
        }
        found.push(kind);
    }
    found
}

async fn csi_served(ctx: &Context) -> bool {
    if !ctx.settings.csi {
        return false;
    }
    let served = served(
        ctx,
        &format!("{CSI_GROUP}/v1"),
        "secretproviderclasspodstatuses",
    )
    .await;
    if !served {
        tracing::warn!(
            "--enable-csi-integration=true, but this cluster does not serve \
             secrets-store.csi.x-k8s.io/v1 secretproviderclasspodstatuses; CSI reloads are off. \
             Fix: install the Secrets Store CSI driver and restart kube-reloader"
        );
    }
    served
}

/// What we are about to use, for the RBAC self-check.
fn needs(
    ctx: &Context,
    namespaces: &[Option<String>],
    kinds: &[&dyn Kind],
    csi: bool,
) -> Vec<access::Need> {
    let settings = &ctx.settings;
    let mut needs = Vec::new();
    for ns in namespaces {
        let mut need = |group: &'static str, resource: &'static str, verbs| {
            needs.push(access::Need {
                group,
                resource,
                verbs,
                namespace: ns.clone(),
                name: None,
            })
        };
        if settings.watch_configmaps {
            need("", "configmaps", &["list", "watch"]);
        }
        if settings.watch_secrets {
            need("", "secrets", &["list", "watch"]);
        }
        if csi {
            need(
                CSI_GROUP,
                "secretproviderclasspodstatuses",
                &["list", "watch"],
            );
            need(CSI_GROUP, "secretproviderclasses", &["list", "watch"]);
        }
        if ctx.webhook_mode() {
            continue;
        }
        for kind in kinds {
            if let Some(verbs) = kind.verbs(settings) {
                let api = kind.api();
                need(api.group, api.plural, verbs);
            }
        }
        need("events.k8s.io", "events", &["create"]);
        // Upstream's RBAC grants core Events only: the fallback when events.k8s.io is denied.
        need("", "events", &["create"]);
    }
    if let Scope::Global {
        selector: Some(_), ..
    } = &settings.scope
    {
        needs.push(access::Need {
            group: "",
            resource: "namespaces",
            verbs: &["list", "watch"],
            namespace: None,
            name: None,
        });
    }
    if let Some(lease) = &settings.lease {
        // kube-lease-manager gets, creates and patches the Lease; we watch it by name.
        needs.push(access::Need {
            group: "coordination.k8s.io",
            resource: "leases",
            verbs: &["get", "create", "patch", "list", "watch"],
            namespace: Some(lease.namespace.clone()),
            name: Some(lease.name.clone()),
        });
    }
    if let Some(target) = &settings.meta_info {
        needs.push(access::Need {
            group: "",
            resource: "configmaps",
            verbs: &["get", "create", "update"],
            namespace: Some(target.namespace.clone()),
            name: Some(crate::ops::meta_info::NAME.to_owned()),
        });
    }
    needs
}

/// The gaps among `missing` that kube-reloader works around, recorded in `ctx.degraded`;
/// returns the rest. Pure apart from the recording: which verbs of which kind have a
/// workaround is [`degraded::workaround`]'s answer.
fn work_around(
    ctx: &Context,
    kinds: &[&dyn Kind],
    missing: Vec<access::Missing>,
) -> Vec<access::Missing> {
    let core_events_denied = |ns: &Option<String>| {
        missing.iter().any(|m| {
            m.need.resource == "events" && m.need.group.is_empty() && &m.need.namespace == ns
        })
    };
    let mut rest = Vec::new();
    for gap in &missing {
        let ns = &gap.need.namespace;
        let kind = kinds
            .iter()
            .find(|k| k.api().plural == gap.need.resource && k.api().group == gap.need.group);
        let mut left = Vec::new();
        for verb in &gap.denied {
            let worked_around = match kind {
                // Only with `list`: without it the kind is skipped.
                Some(kind) if !gap.denied.contains(&"list") => {
                    degraded::workaround(kind.kind(), verb)
                        .map(|cost| (kind.kind().as_str(), Some(kind.kind()), cost))
                }
                Some(_) => None,
                None if gap.need.resource == "events"
                    && gap.need.group == "events.k8s.io"
                    && !core_events_denied(ns) =>
                {
                    Some(("Event", None, degraded::CORE_EVENTS))
                }
                None => None,
            };
            match worked_around {
                Some((kind, workload, cost)) => ctx.degraded.add(Degradation {
                    kind,
                    workload,
                    missing: verb,
                    namespace: ns.clone(),
                    rule: access::Missing {
                        need: gap.need.clone(),
                        denied: vec![verb],
                    }
                    .rule(),
                    cost,
                }),
                None => left.push(*verb),
            }
        }
        if !left.is_empty() {
            rest.push(access::Missing {
                need: gap.need.clone(),
                denied: left,
            });
        }
    }
    // The core Events rule is only the fallback's: never a gap of its own (with both denied,
    // the events.k8s.io gap names the API we prefer).
    rest.retain(|m| !(m.need.resource == "events" && m.need.group.is_empty()));
    let degradations = ctx.degraded.all();
    for degradation in &degradations {
        tracing::warn!(
            kind = degradation.kind,
            missing = degradation.missing,
            namespace = degradation.namespace.as_deref().unwrap_or("(all)"),
            "{}",
            degradation.describe()
        );
        ctx.metrics
            .degraded
            .get_or_create(&DegradedLabels {
                kind: degradation.kind,
                missing: degradation.missing,
            })
            .set(1);
    }
    ctx.health
        .set_notes(degradations.iter().map(Degradation::describe).collect());
    if degradations.iter().any(|d| d.kind == "Event") {
        ctx.report.use_core_events();
    }
    rest
}

/// Checks RBAC; reports each gap once with the rule to add.
async fn check_access(
    ctx: &Context,
    kinds: &[&dyn Kind],
    needs: &[access::Need],
) -> Vec<access::Missing> {
    let missing = work_around(ctx, kinds, access::check(&ctx.client, needs).await);
    for gap in &missing {
        let effect = match gap.need.resource {
            "events" => "reload Events will not be published",
            "configmaps" if gap.need.name.is_some() => {
                "the reloader-meta-info ConfigMap cannot be published (RELOADER_NAMESPACE)"
            }
            "jobs" if gap.denied.contains(&"delete") => "Job reloads will fail",
            "leases" => "leader election cannot work, so this replica never writes",
            _ if gap.denied.iter().any(|v| *v == "list" || *v == "watch") => "this kind is skipped",
            _ => "reloads of this kind will fail",
        };
        tracing::error!(
            resource = gap.need.resource,
            namespace = gap.need.namespace.as_deref().unwrap_or("(all)"),
            denied = ?gap.denied,
            "missing RBAC permission: kube-reloader may not {} {}; {effect}. Fix: grant {}",
            gap.denied.join("/"),
            gap.need.resource,
            gap.rule()
        );
    }
    missing
}

/// Discovers, checks and starts every watch. Runs once, right after the engine starts.
pub async fn run(ctx: Arc<Context>) {
    let namespaces: Vec<Option<String>> = match &ctx.settings.scope {
        Scope::Global { .. } => vec![None],
        Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
    };
    let kinds = discover(&ctx).await;
    let csi = csi_served(&ctx).await;
    let denied = check_access(&ctx, &kinds, &needs(&ctx, &namespaces, &kinds, csi)).await;
    let allowed = |resource: &str, ns: &Option<String>| {
        !denied.iter().any(|m| {
            m.need.resource == resource
                && &m.need.namespace == ns
                && m.denied.iter().any(|v| *v == "list" || *v == "watch")
        })
    };
    let listed_only = |kind: WorkloadKind, ns: &Option<String>| {
        ctx.degraded
            .all()
            .iter()
            .any(|d| d.workload == Some(kind) && d.missing == "watch" && &d.namespace == ns)
    };
    let settings = &ctx.settings;
    // Every watch is registered before any starts, so an early first list cannot declare the
    // sources (or everything) synced while other watches are still to come.
    let mut planned: Vec<(Watched, &'static str, String, BoxFuture<'static, ()>)> = Vec::new();
    for ns in &namespaces {
        let label = |what: &str| {
            format!(
                "watch {what} in {}",
                ns.as_deref().unwrap_or("all namespaces")
            )
        };
        if settings.watch_configmaps && allowed("configmaps", ns) {
            planned.push((
                Watched::Sources("configmaps", ns.clone()),
                "configmaps",
                label("configmaps"),
                Box::pin(watch::sources::run::<DigestedConfigMap>(
                    ctx.clone(),
                    ns.clone(),
                    SourceKind::ConfigMap,
                    DigestedConfigMap::content,
                )),
            ));
        }
        if settings.watch_secrets && allowed("secrets", ns) {
            planned.push((
                Watched::Sources("secrets", ns.clone()),
                "secrets",
                label("secrets"),
                Box::pin(watch::sources::run::<DigestedSecret>(
                    ctx.clone(),
                    ns.clone(),
                    SourceKind::Secret,
                    DigestedSecret::content,
                )),
            ));
        }
        if csi
            && allowed("secretproviderclasspodstatuses", ns)
            && allowed("secretproviderclasses", ns)
        {
            planned.push((
                Watched::Sources("secretproviderclasses", ns.clone()),
                "secretproviderclasses",
                label("secretproviderclasses"),
                Box::pin(watch::csi::watch_classes(ctx.clone(), ns.clone())),
            ));
            planned.push((
                Watched::Sources("secretproviderclasspodstatuses", ns.clone()),
                "secretproviderclasspodstatuses",
                label("secretproviderclasspodstatuses"),
                Box::pin(watch::csi::watch_pod_statuses(ctx.clone(), ns.clone())),
            ));
        }
        // A kind is watched when allowed and when the kinds it requires are. Jobs watched only
        // for CronJobs (`--ignored-workload-types=jobs`) need a watched CronJob kind.
        let mut watched: BTreeSet<WorkloadKind> = kinds
            .iter()
            .filter(|k| allowed(k.api().plural, ns))
            .map(|k| k.kind())
            .collect();
        let before = watched.clone();
        watched.retain(|kind| {
            ctx.kinds
                .get(*kind)
                .is_some_and(|k| k.requires().iter().all(|r| before.contains(r)))
        });
        if settings.policy.ignore_jobs && !watched.contains(&WorkloadKind::CronJob) {
            watched.remove(&WorkloadKind::Job);
        }
        for kind in kinds.iter().filter(|k| watched.contains(&k.kind())) {
            let plural = kind.api().plural;
            let task = if listed_only(kind.kind(), ns) {
                let lister = ctx.listers.register(kind.kind(), ns.clone());
                kind.list(ctx.clone(), ns.clone(), lister)
            } else {
                kind.watch(ctx.clone(), ns.clone())
            };
            planned.push((
                Watched::Kind(kind.kind(), ns.clone()),
                plural,
                label(plural),
                task,
            ));
        }
    }
    if let Scope::Global {
        selector: Some(selector),
        ..
    } = &settings.scope
        && allowed("namespaces", &None)
    {
        planned.push((
            Watched::Namespaces,
            "namespaces",
            "watch namespaces".to_owned(),
            Box::pin(watch::namespaces::run(ctx.clone(), selector.clone())),
        ));
    }
    // The Secret watches wait for the digest keys (they are not a watch of their own for
    // readiness: the Secret watches only sync once the keys are in).
    if let Some(key) = settings.secret_digest.clone()
        && settings.watch_secrets
    {
        ctx.supervisor.spawn(
            format!("watch digest key secret {}/{}", key.namespace, key.name),
            watch::digest_key::run(ctx.clone(), key),
        );
    }
    for (watched, resource, _, _) in &planned {
        ctx.expect(watched.clone(), resource);
    }
    for (_, _, name, task) in planned {
        ctx.supervisor.spawn(name, task);
    }
    ctx.waiting_for();
    if ctx.leadership.is_ha() {
        ctx.supervisor
            .spawn("follow leadership", follow_leadership(ctx.clone()));
    }
}

/// Each time this replica becomes the leader, waits until its lease is confirmed and then
/// re-plans every workload: whatever changed while another replica led (or nobody did) is
/// caught up, and what is current costs nothing.
async fn follow_leadership(ctx: Arc<Context>) {
    let mut leadership = ctx.leadership.clone();
    loop {
        leadership.became_leader().await;
        let started = std::time::Instant::now();
        while ctx.leadership.write_state() == crate::ops::leader::WriteState::Fenced {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if ctx.leadership.write_state() == crate::ops::leader::WriteState::Allowed {
            tracing::info!(
                confirmed_after_ms = started.elapsed().as_millis() as u64,
                "became the leader; re-planning every workload"
            );
            for key in ctx.workloads.keys_where(|k| ctx.sync.is_active(k.kind)) {
                ctx.enqueue(key);
            }
        }
    }
}
