//! One worker: take a workload key from the queue, plan it (`model::planner`), check this
//! replica may write, carry the intent out through the workload's kind module, report, and
//! apply the error policy. A worker never sleeps: anything that must wait goes back into the
//! queue with a time.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::mpsc;

use crate::kinds::{Finished, Kind, Work, Written};
use crate::model::digest::SourceKind;
use crate::model::patch;
use crate::model::planner::{self, Intent, PlanInput, PodTemplate, Problem};
use crate::model::workload::{WorkloadKey, WorkloadKind, WorkloadView};
use crate::ops::leader::WriteState;
use crate::reconcile::error::{self, WriteError};
use crate::reconcile::governor::{self, Verdict};
use crate::reconcile::{Context, unix_now};

/// What one attempt did.
enum Attempt {
    /// Nothing to write, or not ours to write.
    Skipped,
    /// A write landed.
    Wrote,
    /// A write failed.
    Failed(Box<Failure>),
}

/// A failed write; `reload` is set when it was a reload (the source named in the Event).
struct Failure {
    error: WriteError,
    reload: Option<(ObjectReference, SourceKind)>,
}

impl Attempt {
    fn failed(error: WriteError, reload: Option<(ObjectReference, SourceKind)>) -> Self {
        Self::Failed(Box::new(Failure { error, reload }))
    }
}

/// Runs until the queue closes; `_running` is dropped on exit, which shutdown waits for.
pub async fn run(ctx: std::sync::Arc<Context>, _running: mpsc::Sender<()>) {
    while let Some(key) = ctx.queue.next().await {
        let started = Instant::now();
        let attempt = match ctx.kinds.get(key.kind) {
            Some(kind) => match kind.resume(&ctx, &key) {
                Some(unfinished) if ctx.leadership.write_state() == WriteState::Allowed => {
                    resumed(&ctx, &key, unfinished.await).await
                }
                // Not ours to write (now): the leader finishes it from what the cluster shows.
                Some(_) => Attempt::Skipped,
                None => reconcile(&ctx, kind, &key).await,
            },
            None => {
                tracing::error!(workload = %key, "no module for this kind; skipping it");
                Attempt::Skipped
            }
        };
        finish(&ctx, &key, attempt, started).await;
    }
}

async fn finish(ctx: &Context, key: &WorkloadKey, attempt: Attempt, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    match attempt {
        Attempt::Skipped => {
            ctx.metrics.reconciled("skipped", seconds);
            release(ctx, key, true);
        }
        Attempt::Wrote => {
            ctx.metrics.reconciled("success", seconds);
            release(ctx, key, true);
            // Plan once more from what the write returned: it is current, or waits for a time
            // (a pause period), or continues a sequence (a Job re-creation).
            ctx.enqueue(key.clone());
        }
        Attempt::Failed(failure) => {
            let Failure { error, reload } = *failure;
            let attempt = ctx.queue.record_failure(key);
            let response = error::respond(&error, attempt, error::jitter());
            if response.failed_reload {
                ctx.metrics.reconciled("error", seconds);
                ctx.metrics.failed_and_retried();
                if reload.is_some() {
                    ctx.metrics.reload_executed(false, &key.namespace);
                    ctx.metrics.action(key.kind.as_str(), false, seconds);
                }
                tracing::warn!(
                    workload = %key,
                    error = %error,
                    class = error.class(),
                    fix = error.missing_rule().map(|rule| format!("grant {rule}")).unwrap_or_default(),
                    retry_in_seconds = response.retry_in.map(|d| d.as_secs()).unwrap_or_default(),
                    "reload failed; will retry"
                );
            } else {
                ctx.metrics.reconciled("skipped", seconds);
                tracing::debug!(workload = %key, class = error.class(), error = %error, "write not done; planning again");
            }
            release(ctx, key, false);
            if let Some(delay) = response.retry_in {
                ctx.queue.add_after(key.clone(), delay);
            }
            // The Event is published after the key is released, so a slow Event API never
            // holds the workload.
            if let (true, Some((reference, source))) = (response.failed_reload, reload) {
                ctx.report
                    .reload_failed(&reference, key, source, &error)
                    .await;
            }
        }
    }
}

/// Marks `key` done; when that drained a burst of work (a fan-out, a first start's baselines),
/// gives the memory its requests and responses freed back to the kernel, as after a list.
fn release(ctx: &Context, key: &WorkloadKey, succeeded: bool) {
    if ctx.queue.done(key, succeeded) {
        crate::ops::memory::release_free_memory();
    }
}

/// Reports work a kind finished from memory.
async fn resumed(
    ctx: &Context,
    key: &WorkloadKey,
    result: Result<Option<Finished>, WriteError>,
) -> Attempt {
    match result {
        Ok(Some(finished)) => {
            let reference = ctx.kinds.object_reference(&finished.view);
            ctx.metrics.reload_executed(true, &key.namespace);
            for change in &finished.changes {
                ctx.report.reloaded(&reference, key, change).await;
            }
            Attempt::Wrote
        }
        Ok(None) => Attempt::Skipped,
        Err(error) => Attempt::failed(error, None),
    }
}

/// Plans one workload from memory and carries out what the plan says.
async fn reconcile(ctx: &Context, kind: &dyn Kind, key: &WorkloadKey) -> Attempt {
    if !ctx.sync.is_active(key.kind) || !ctx.filter.allows(&key.namespace) {
        ctx.governor.forget(ctx, key);
        return Attempt::Skipped;
    }
    let Some(stored) = ctx.workloads.get(key) else {
        ctx.governor.forget(ctx, key);
        return Attempt::Skipped;
    };
    let view = &stored.view;
    let target = match &view.workload_ref {
        None => Ok(None),
        Some(Err(problem)) => Err(problem.clone()),
        Some(Ok(name)) => {
            let deployment = WorkloadKey {
                kind: WorkloadKind::Deployment,
                namespace: key.namespace.clone(),
                name: name.as_str().into(),
            };
            ctx.workloads.get(&deployment).map(Some).ok_or_else(|| {
                format!(
                    "spec.workloadRef names Deployment {name:?}, which does not exist \
                     (or kube-reloader may not watch Deployments here)"
                )
            })
        }
    };
    let pod = match &target {
        Ok(Some(target)) => Ok(PodTemplate::referenced(&target.view)),
        Ok(None) => Ok(PodTemplate::of(view)),
        Err(problem) => Err(problem.as_str()),
    };
    let now = unix_now();
    let recorded = kind.recorded(ctx, view);
    let mut options = ctx.plan_options_for(key.kind);
    // Nothing is recorded on a workload in dry-run or notify mode: judge a change against
    // its creation time, as for a kind we may not patch.
    if governor::reports_only(ctx, view) {
        options.reload_unrecorded = true;
    }
    let plan = ctx.sources.with_namespace(&key.namespace, |sources| {
        planner::plan(&PlanInput {
            view,
            version: stored.version,
            interest: &stored.interest,
            pod,
            sources,
            policy: &ctx.settings.policy,
            recorded: recorded.as_deref(),
            options,
            now,
        })
    });
    // Built only when an Event may be published: most plans write nothing.
    let reference = || ctx.kinds.object_reference(view);
    if !plan.problems.is_empty() {
        let reference = reference();
        for problem in &plan.problems {
            report_problem(ctx, &reference, view, problem).await;
        }
    }
    if plan.intent.writes() {
        match ctx.leadership.write_state() {
            WriteState::Allowed => {}
            WriteState::Follower => {
                ctx.governor.forget(ctx, key);
                tracing::debug!(workload = %key, "not the leader; the leader writes");
                return Attempt::Skipped;
            }
            WriteState::Fenced => {
                // Elected, but the lease is not confirmed fresh: never risk two writers.
                ctx.queue.add_after(key.clone(), Duration::from_secs(1));
                return Attempt::Skipped;
            }
        }
    }
    let keys = &ctx.settings.policy.keys;
    let patched = |result: Result<(), WriteError>, what: &str| match result {
        Ok(()) => {
            tracing::info!(workload = %key, "{what}");
            Attempt::Wrote
        }
        Err(error) => Attempt::failed(error, None),
    };
    if !matches!(plan.intent, Intent::Reload(_) | Intent::RequeueAt(_)) {
        ctx.governor.forget(ctx, key);
    }
    match plan.intent {
        Intent::UpToDate => Attempt::Skipped,
        Intent::RequeueAt(at) => {
            let wait = u64::try_from(at.saturating_sub(now)).unwrap_or_default();
            ctx.queue.add_after(key.clone(), Duration::from_secs(wait));
            Attempt::Skipped
        }
        // Without `patch` there is no baseline to record: a change is judged against the
        // workload's creation time instead (`PlanOptions::reload_unrecorded`).
        Intent::Baseline { .. } if ctx.degraded.lacks(key.kind, "patch") => Attempt::Skipped,
        // Dry-run and notify mode write nothing to the workload, not even metadata.
        Intent::Baseline { .. } | Intent::Resume | Intent::ForgetPause
            if governor::reports_only(ctx, view) =>
        {
            Attempt::Skipped
        }
        Intent::Baseline { ledger } => match kind.patch(ctx, key, patch::baseline(&ledger)).await {
            Ok(()) => {
                tracing::debug!(workload = %key, "recorded the current digests (no rollout)");
                Attempt::Wrote
            }
            Err(error) => Attempt::failed(error, None),
        },
        Intent::Resume => patched(
            kind.patch(ctx, key, patch::resume(&keys.paused_at)).await,
            "pause period over; resumed the Deployment",
        ),
        Intent::ForgetPause => patched(
            kind.patch(ctx, key, patch::forget_pause(&keys.paused_at))
                .await,
            "the Deployment was resumed by someone else; dropped our paused-at marker",
        ),
        Intent::Reload(reload) => {
            match governor::admit(ctx, view, &reload, &reference, now).await {
                Verdict::Go => {}
                Verdict::Wait(delay) => {
                    ctx.queue.add_after(key.clone(), delay);
                    return Attempt::Skipped;
                }
                Verdict::Hold => return Attempt::Skipped,
            }
            ctx.metrics.workload_matched(key.kind.as_str());
            let started = Instant::now();
            let pod = pod.unwrap_or_else(|_| PodTemplate::of(view));
            let work = Work {
                view,
                pod,
                reload: &reload,
                now,
            };
            let result = kind.reload(ctx, work).await;
            ctx.governor.written(key);
            match result {
                Ok(Written::Yes) => {
                    ctx.governor.forget(ctx, key);
                    ctx.metrics.reload_executed(true, &key.namespace);
                    ctx.metrics
                        .action(key.kind.as_str(), true, started.elapsed().as_secs_f64());
                    let reference = reference();
                    for change in &reload.changes {
                        ctx.report.reloaded(&reference, key, change).await;
                    }
                    Attempt::Wrote
                }
                Ok(Written::Nothing) => Attempt::Skipped,
                Err(error) => {
                    let source = reload
                        .changes
                        .first()
                        .map(|c| c.kind)
                        .unwrap_or(SourceKind::ConfigMap);
                    Attempt::failed(error, Some((reference(), source)))
                }
            }
        }
    }
}

async fn report_problem(
    ctx: &Context,
    reference: &ObjectReference,
    view: &WorkloadView,
    problem: &Problem,
) {
    let key = &view.key;
    let (what, note) = match problem {
        Problem::InvalidPattern(item) => (
            format!("{}={}", item.key, item.item),
            format!(
                "Skipping invalid item {:?} of annotation {} on {} {}/{}: {}. Each item is a \
                 regular expression matched against the whole name; fix or remove the item.",
                item.item,
                item.key,
                key.kind.as_str(),
                key.namespace,
                key.name,
                item.error
            ),
        ),
        Problem::WorkloadRef(problem) => (
            format!("workloadRef={problem}"),
            format!(
                "Cannot reload {} {}/{}: {problem}. Fix: point spec.workloadRef at an existing Deployment.",
                key.kind.as_str(),
                key.namespace,
                key.name
            ),
        ),
        Problem::UnverifiableDigest { source, key_id } => (
            format!("digest-key={source}:{key_id}"),
            format!(
                "{} {}/{}: its ledger records Secret {source:?} digested with key id {key_id}, \
                 which is not configured; it cannot be checked, so the workload reloads once. \
                 Fix: keep the old key under \"previous\" in the --secret-digest-key-secret \
                 Secret while rotating (or, to switch keyed digests off, run with \
                 --secret-digest=sha1 before removing the key Secret).",
                key.kind.as_str(),
                key.namespace,
                key.name
            ),
        ),
        Problem::InvalidKeyLevel(invalid) => (
            format!("key-level={}", invalid.value),
            format!(
                "{} {}/{}: {invalid}; --key-level-triggers decides instead. Fix: set it to \"true\" \
                 or \"false\", or remove it.",
                key.kind.as_str(),
                key.namespace,
                key.name
            ),
        ),
        Problem::InvalidPause(invalid) => (
            format!("pause={}", invalid.value),
            format!(
                "Deployment {}/{}: annotation {}: {invalid}; its reloads go without a pause \
                 until it is fixed or removed.",
                key.namespace, key.name, ctx.settings.policy.keys.pause_period
            ),
        ),
    };
    ctx.report.problem_once(reference, key, what, note).await;
}
