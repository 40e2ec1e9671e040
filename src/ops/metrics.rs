//! Prometheus metrics, with upstream's names and labels so existing dashboards and alerts keep
//! working, plus the process metrics upstream's load test reads.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Label set of `reloader_reload_executed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuccessLabel {
    /// "true" or "false".
    pub success: &'static str,
}

/// Label set of `reloader_reload_executed_total_by_namespace`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuccessNamespaceLabels {
    /// "true" or "false".
    pub success: &'static str,
    /// The workload's namespace.
    pub namespace: String,
}

/// Label set of `reloader_skipped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the change was skipped.
    pub reason: &'static str,
}

/// Label set of `reloader_reconcile_*`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// success, error or skipped.
    pub result: &'static str,
}

/// Label set of `reloader_action_*`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// Deployment, DaemonSet, StatefulSet, CronJob, ...
    pub workload_kind: &'static str,
    /// success or error.
    pub result: &'static str,
}

/// Label set of `reloader_action_latency_seconds`: upstream's `workload_kind` only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadKindLabel {
    /// Deployment, DaemonSet, StatefulSet, CronJob, ...
    pub workload_kind: &'static str,
}

/// Label set of `reloader_errors_total`: `[("type", ...)]` (a keyword, so not a struct field).
type TypeLabel = Vec<(&'static str, &'static str)>;

/// Label set of `reloader_events_received_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// add, update or delete.
    pub event_type: &'static str,
    /// configmaps, secrets, namespaces.
    pub resource_type: &'static str,
}

/// Label set of `reloader_events_processed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessedLabels {
    /// add, update or delete (upstream always says "unknown"; we say which).
    pub event_type: &'static str,
    /// configmaps, secrets, secretproviderclasspodstatuses.
    pub resource_type: &'static str,
    /// success (handled) or dropped.
    pub result: &'static str,
}

/// Label set of `reloader_workloads_scanned_total` / `_matched_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Deployment, DaemonSet, ...
    pub kind: &'static str,
}

/// Label set of `kube_reloader_notifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// webhook or alert.
    pub kind: &'static str,
    /// success, error (after retries) or dropped (queue full).
    pub result: &'static str,
}

/// Label set of `kube_reloader_degraded`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DegradedLabels {
    /// The kind of object the permission is about (Deployment, CronJob, Event, ...).
    pub kind: &'static str,
    /// The verb that is not granted.
    pub missing: &'static str,
}

/// Label set of `kube_reloader_pending_reloads`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingLabels {
    /// debounce, window, concurrency, rate, canary or halted.
    pub reason: &'static str,
}

/// Label set of `kube_reloader_halted_changes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HaltedLabels {
    /// The source's namespace.
    pub namespace: String,
    /// CONFIGMAP, SECRET or SECRETPROVIDERCLASS.
    pub kind: &'static str,
    /// The source's name.
    pub name: String,
}

/// Label set of `rest_client_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestRequestLabels {
    /// HTTP status code, or "<error>" when no response came.
    pub code: String,
    /// HTTP method.
    pub method: String,
    /// API server host:port.
    pub host: String,
}

/// Label set of `rest_client_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestDurationLabels {
    /// HTTP method, as client-go's `verb` label.
    pub verb: String,
    /// API server host:port.
    pub host: String,
}

fn workqueue_latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

fn rest_histogram() -> Histogram {
    Histogram::new([0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0])
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn action_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

/// All metrics the controller exposes on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One increment per workload write attempt, labelled by outcome (upstream name).
    reload_executed: Family<SuccessLabel, Counter>,
    /// The same by namespace, only with `METRICS_COUNT_BY_NAMESPACE=enabled`. A gauge only so
    /// the exposed name stays upstream's (a counter would gain a second `_total`); it only grows.
    reload_executed_by_namespace: Option<Family<SuccessNamespaceLabels, Gauge>>,
    /// Source changes that caused no reload, by reason (upstream name).
    skipped: Family<ReasonLabel, Counter>,
    reconcile_total: Family<ResultLabel, Counter>,
    reconcile_duration: Family<ResultLabel, Histogram, fn() -> Histogram>,
    action_total: Family<ActionLabels, Counter>,
    action_latency: Family<WorkloadKindLabel, Histogram, fn() -> Histogram>,
    errors: Family<TypeLabel, Counter>,
    retries: Counter,
    events_received: Family<EventLabels, Counter>,
    events_processed: Family<ProcessedLabels, Counter>,
    workloads_scanned: Family<KindLabel, Counter>,
    workloads_matched: Family<KindLabel, Counter>,
    /// Seconds a key waited in the work queue before a worker took it.
    pub workqueue_latency: Histogram,
    /// Webhook and alert deliveries by outcome.
    pub notifications: Family<NotificationLabels, Counter>,
    /// 1 for each missing permission kube-reloader works around (see `/ready`).
    pub degraded: Family<DegradedLabels, Gauge>,
    /// Reloads the governor holds, by reason.
    pub pending_reloads: Family<PendingLabels, Gauge>,
    /// Reloads reported instead of written (dry-run, `mode: notify`).
    pub would_reload: Counter,
    /// 1 for each source change a failed canary halted.
    pub halted_changes: Family<HaltedLabels, Gauge>,
    /// Watches that have not delivered their first list (Ready waits for 0).
    pub watches_not_synced: Gauge,
    /// 1 while this replica may write (always, without `--enable-ha`).
    pub leader: Gauge,
    /// API requests by status code, method and host (client-go's name).
    pub rest_requests: Family<RestRequestLabels, Counter>,
    /// API request latency by verb and host (client-go's name).
    pub rest_duration: Family<RestDurationLabels, Histogram, fn() -> Histogram>,
    /// Keys added to the work queue.
    pub workqueue_adds: Counter,
    /// Keys waiting in the work queue.
    pub workqueue_depth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Metrics {
    /// Registers every metric. Both `success` values of the reload counter start at zero, as
    /// upstream's do, so `rate()` queries work before the first reload.
    pub fn new(by_namespace: bool) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "kube_reloader_build",
            "Build information of the running kube-reloader",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let reload_executed = Family::<SuccessLabel, Counter>::default();
        registry.register(
            "reloader_reload_executed",
            "Counter of reloads executed by Reloader.",
            reload_executed.clone(),
        );
        let _ = reload_executed.get_or_create(&SuccessLabel { success: "true" });
        let _ = reload_executed.get_or_create(&SuccessLabel { success: "false" });
        let reload_executed_by_namespace = by_namespace.then(|| {
            let family = Family::<SuccessNamespaceLabels, Gauge>::default();
            registry.register(
                "reloader_reload_executed_total_by_namespace",
                "Counter of reloads executed by Reloader by namespace.",
                family.clone(),
            );
            family
        });
        let skipped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reloader_skipped",
            "Number of skipped reloads",
            skipped.clone(),
        );
        let reconcile_total = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloader_reconcile",
            "Total number of reconcile operations by result",
            reconcile_total.clone(),
        );
        let reconcile_duration =
            Family::<ResultLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_histogram,
            );
        registry.register(
            "reloader_reconcile_duration_seconds",
            "Reconcile duration in seconds",
            reconcile_duration.clone(),
        );
        let action_total = Family::<ActionLabels, Counter>::default();
        registry.register(
            "reloader_action",
            "Total number of workload actions by kind and result",
            action_total.clone(),
        );
        let action_latency =
            Family::<WorkloadKindLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                action_histogram,
            );
        registry.register(
            "reloader_action_latency_seconds",
            "Latency of workload actions in seconds",
            action_latency.clone(),
        );
        let errors = Family::<TypeLabel, Counter>::default();
        registry.register(
            "reloader_errors",
            "Total number of errors by type",
            errors.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "reloader_retries",
            "Total number of retries",
            retries.clone(),
        );
        let events_received = Family::<EventLabels, Counter>::default();
        registry.register(
            "reloader_events_received",
            "Total number of events received by type and resource",
            events_received.clone(),
        );
        let events_processed = Family::<ProcessedLabels, Counter>::default();
        registry.register(
            "reloader_events_processed",
            "Total number of events processed by type, resource and result",
            events_processed.clone(),
        );
        let workloads_scanned = Family::<KindLabel, Counter>::default();
        registry.register(
            "reloader_workloads_scanned",
            "Total number of workloads evaluated against a change, by kind",
            workloads_scanned.clone(),
        );
        let workloads_matched = Family::<KindLabel, Counter>::default();
        registry.register(
            "reloader_workloads_matched",
            "Total number of workloads a change was written to, by kind",
            workloads_matched.clone(),
        );
        let workqueue_latency = workqueue_latency_histogram();
        registry.register(
            "reloader_workqueue_latency_seconds",
            "How long an item stays in the workqueue before being processed",
            workqueue_latency.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "kube_reloader_notifications",
            "Webhook and alert deliveries by kind and result (error after retries, dropped when the queue is full)",
            notifications.clone(),
        );
        let degraded = Family::<DegradedLabels, Gauge>::default();
        registry.register(
            "kube_reloader_degraded",
            "1 for each missing RBAC permission kube-reloader works around at a cost (the log and /ready say which rule removes it)",
            degraded.clone(),
        );
        let pending_reloads = Family::<PendingLabels, Gauge>::default();
        registry.register(
            "kube_reloader_pending_reloads",
            "Reloads the rollout governor holds, by reason (debounce, window, concurrency, rate, canary, halted)",
            pending_reloads.clone(),
        );
        for hold in crate::model::governor::Hold::ALL {
            let _ = pending_reloads.get_or_create(&PendingLabels {
                reason: hold.as_str(),
            });
        }
        let would_reload = Counter::default();
        registry.register(
            "kube_reloader_would_reload",
            "Reloads reported instead of written (--dry-run, kube-reloader.io/mode: notify)",
            would_reload.clone(),
        );
        let halted_changes = Family::<HaltedLabels, Gauge>::default();
        registry.register(
            "kube_reloader_halted_changes",
            "1 for each source change halted because a canary's rollout failed",
            halted_changes.clone(),
        );
        let watches_not_synced = Gauge::default();
        registry.register(
            "kube_reloader_watches_not_synced",
            "Watches (or lists) that have not delivered their first list yet; /ready waits for 0",
            watches_not_synced.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "kube_reloader_leader",
            "1 while this replica may write (the leader with --enable-ha, always without)",
            leader.clone(),
        );
        let rest_requests = Family::<RestRequestLabels, Counter>::default();
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests to the Kubernetes API, partitioned by status code, method, and host.",
            rest_requests.clone(),
        );
        let rest_duration =
            Family::<RestDurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                rest_histogram,
            );
        registry.register(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host.",
            rest_duration.clone(),
        );
        let workqueue_adds = Counter::default();
        registry.register(
            "reloader_workqueue_adds",
            "Total number of adds handled by the workqueue",
            workqueue_adds.clone(),
        );
        let workqueue_depth = Gauge::default();
        registry.register(
            "reloader_workqueue_depth",
            "Current depth of the workqueue",
            workqueue_depth.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            reload_executed,
            reload_executed_by_namespace,
            skipped,
            reconcile_total,
            reconcile_duration,
            action_total,
            action_latency,
            errors,
            retries,
            events_received,
            events_processed,
            workloads_scanned,
            workloads_matched,
            workqueue_latency,
            notifications,
            degraded,
            pending_reloads,
            would_reload,
            halted_changes,
            watches_not_synced,
            leader,
            rest_requests,
            rest_duration,
            workqueue_adds,
            workqueue_depth,
        }
    }

    /// Counts one reload write attempt in `namespace`.
    pub fn reload_executed(&self, success: bool, namespace: &str) {
        let success = if success { "true" } else { "false" };
        self.reload_executed
            .get_or_create(&SuccessLabel { success })
            .inc();
        if let Some(family) = &self.reload_executed_by_namespace {
            family
                .get_or_create(&SuccessNamespaceLabels {
                    success,
                    namespace: namespace.to_owned(),
                })
                .inc();
        }
    }

    /// Counts one skipped change (`no_data_change`, ...).
    pub fn skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Records one reconcile (once per workload plan, unlike upstream's double count).
    pub fn reconciled(&self, result: &'static str, seconds: f64) {
        let label = ResultLabel { result };
        self.reconcile_total.get_or_create(&label).inc();
        self.reconcile_duration
            .get_or_create(&label)
            .observe(seconds);
    }

    /// Records one write to a workload.
    pub fn action(&self, workload_kind: &'static str, success: bool, seconds: f64) {
        let labels = ActionLabels {
            workload_kind,
            result: if success { "success" } else { "error" },
        };
        self.action_total.get_or_create(&labels).inc();
        self.action_latency
            .get_or_create(&WorkloadKindLabel { workload_kind })
            .observe(seconds);
    }

    /// Counts a failed reconcile and its scheduled retry.
    pub fn failed_and_retried(&self) {
        self.errors
            .get_or_create(&vec![("type", "handler_error")])
            .inc();
        self.retries.inc();
    }

    /// Counts one watch event.
    pub fn event_received(&self, event_type: &'static str, resource_type: &'static str) {
        self.events_received
            .get_or_create(&EventLabels {
                event_type,
                resource_type,
            })
            .inc();
    }

    /// Counts one source event handled (`success`) or filtered out (`dropped`).
    pub fn event_processed(
        &self,
        event_type: &'static str,
        resource_type: &'static str,
        result: &'static str,
    ) {
        self.events_processed
            .get_or_create(&ProcessedLabels {
                event_type,
                resource_type,
                result,
            })
            .inc();
    }

    /// Counts one workload evaluated by a plan.
    pub fn workload_scanned(&self, kind: &'static str) {
        self.workloads_scanned
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Counts one workload a reload was written to.
    pub fn workload_matched(&self, kind: &'static str) {
        self.workloads_matched
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Renders the registry in the OpenMetrics text format (the process metrics are read from
    /// /proc at this moment).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The standard `process_*` metrics, with the names, types and help texts of the Prometheus
/// clients' process collector (client_golang's, which upstream exposes), read from /proc on
/// each scrape. Off Linux, or when /proc is not readable, they are left out.
#[derive(Debug)]
struct ProcessCollector;

/// One reading of /proc/self.
#[derive(Debug, Clone, Default, PartialEq)]
struct ProcessStats {
    /// User plus system CPU time, seconds (`utime + stime` of /proc/self/stat).
    cpu_seconds: f64,
    /// Virtual memory size, bytes (`vsize`).
    virtual_memory_bytes: f64,
    /// Resident set size, bytes (`rss` pages times the page size).
    resident_memory_bytes: f64,
    /// Process start, seconds since the Unix epoch (`starttime` after boot plus `btime`).
    start_time_seconds: f64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stats) = read_process_stats() {
            let counter = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(stats.cpu_seconds).encode(counter)?;
            for (name, help, value) in [
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    stats.virtual_memory_bytes,
                ),
                (
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    stats.resident_memory_bytes,
                ),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    stats.start_time_seconds,
                ),
            ] {
                let gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(gauge)?;
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            let gauge = encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(entries.count() as f64).encode(gauge)?;
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| max_open_files(&limits))
        {
            let gauge = encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(max).encode(gauge)?;
        }
        Ok(())
    }
}

/// Reads /proc/self/stat and /proc/stat (Linux).
fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    // SAFETY: sysconf only reads a system constant.
    let (page_size, hz) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    if page_size <= 0 || hz <= 0 {
        return None;
    }
    parse_stat(&stat, page_size as f64, hz as f64, boot_time)
}

/// Parses /proc/self/stat. The command (field 2) may hold spaces and parentheses, so the
/// fields are counted after its last `)`: state is field 3, utime 14, stime 15, starttime 22,
/// vsize 23, rss 24 (proc(5)).
fn parse_stat(stat: &str, page_size: f64, hz: f64, boot_time: f64) -> Option<ProcessStats> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse::<f64>().ok() };
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / hz,
        virtual_memory_bytes: field(23)?,
        resident_memory_bytes: field(24)? * page_size,
        start_time_seconds: boot_time + field(22)? / hz,
    })
}

/// `btime` of /proc/stat: boot time, seconds since the Unix epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in /proc/self/limits (absent when unlimited).
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_as_the_prometheus_process_collector_reads_them() {
        // A command with spaces and a parenthesis; utime 250, stime 150, starttime 5000,
        // vsize 123456789, rss 2000 pages.
        let stat = "4242 (kube (re)loader) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 150 0 0 20 0 \
                    8 0 5000 123456789 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let stats = parse_stat(stat, 4096.0, 100.0, 1_700_000_000.0).unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 4.0,
                virtual_memory_bytes: 123456789.0,
                resident_memory_bytes: 2000.0 * 4096.0,
                start_time_seconds: 1_700_000_050.0,
            }
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1.7e9)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63448                63448                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
    }

    #[test]
    fn upstream_names_and_labels() {
        let metrics = Metrics::new(true);
        metrics.reload_executed(true, "team");
        metrics.reconciled("success", 0.002);
        metrics.action("Deployment", true, 0.02);
        metrics.failed_and_retried();
        metrics.event_received("update", "configmaps");
        metrics.skipped("no_data_change");
        metrics.skipped(crate::watch::sources::IGNORED_OR_NOT_SELECTED);
        metrics.event_processed("update", "configmaps", "success");
        metrics.event_processed("update", "configmaps", "dropped");
        metrics.workload_scanned("Deployment");
        metrics.workload_matched("Deployment");
        metrics.workqueue_latency.observe(0.002);
        let text = metrics.encode().unwrap();
        for expected in [
            "reloader_reload_executed_total{success=\"true\"} 1",
            "reloader_reload_executed_total{success=\"false\"} 0",
            "reloader_reload_executed_total_by_namespace{success=\"true\",namespace=\"team\"} 1",
            "reloader_reconcile_total{result=\"success\"} 1",
            "reloader_reconcile_duration_seconds_bucket{le=\"0.005\",result=\"success\"} 1",
            "reloader_action_total{workload_kind=\"Deployment\",result=\"success\"} 1",
            "reloader_action_latency_seconds_count{workload_kind=\"Deployment\"} 1",
            "reloader_errors_total{type=\"handler_error\"} 1",
            "reloader_retries_total 1",
            "reloader_events_received_total{event_type=\"update\",resource_type=\"configmaps\"} 1",
            "reloader_skipped_total{reason=\"no_data_change\"} 1",
            "reloader_skipped_total{reason=\"ignored_or_not_selected\"} 1",
            "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"dropped\"} 1",
            "kube_reloader_build_info{version=",
            "reloader_events_processed_total{event_type=\"update\",resource_type=\"configmaps\",result=\"success\"} 1",
            "reloader_workloads_scanned_total{kind=\"Deployment\"} 1",
            "reloader_workloads_matched_total{kind=\"Deployment\"} 1",
            "reloader_workqueue_latency_seconds_bucket{le=\"0.005\"} 1",
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "# TYPE process_resident_memory_bytes gauge",
            "process_resident_memory_bytes ",
            "# TYPE process_virtual_memory_bytes gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
        ] {
            assert!(text.contains(expected), "missing {expected}:\n{text}");
        }
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name}"))
                .parse()
                .unwrap()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started > 1.0e9 && started <= now + 1.0,
            "{started} vs {now}"
        );
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(
            !Metrics::new(false)
                .encode()
                .unwrap()
                .contains("by_namespace")
        );
    }
}
