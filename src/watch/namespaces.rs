//! The namespace watch of `--namespace-selector`: keeps the set of selected namespaces, and
//! plans the workloads of a namespace that starts matching.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::reconcile::Context;
use crate::reconcile::sync::Watched;

/// Watches the namespaces matching `selector` until the process stops.
pub async fn run(ctx: Arc<Context>, selector: String) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut fresh = HashSet::new();
    let mut first = true;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(ns)) => {
                fresh.insert(ns.name_any());
            }
            Ok(watcher::Event::InitDone) => {
                let changed = ctx.filter.replace_selected(std::mem::take(&mut fresh));
                if std::mem::replace(&mut first, false) {
                    ctx.synced(&Watched::Namespaces);
                } else {
                    for ns in changed {
                        ctx.namespace_changed(&ns);
                    }
                }
            }
            Ok(watcher::Event::Apply(ns)) => {
                if ctx.filter.set_selected(&ns.name_any(), true) {
                    tracing::info!(namespace = %ns.name_any(), "namespace now matches --namespace-selector");
                    ctx.namespace_changed(&ns.name_any());
                }
            }
            Ok(watcher::Event::Delete(ns)) => {
                ctx.filter.set_selected(&ns.name_any(), false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "namespace watch error; retrying with backoff")
            }
        }
    }
}
