//! Command-line flags and environment variables, validated into [`Settings`] before anything starts.
//!
//! Flag names follow stakater/Reloader where it has them, so existing manifests keep working.
//! Bad values fail here, at startup, with a message that names the flag and what it accepts.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::model::Strategy;
use crate::model::governor::{Limits, parse_period};
use crate::model::pause::parse_go_duration;
use crate::model::policy::{AnnotationKeys, Policy};
use crate::model::window::Window;

use crate::error::Error;

mod values;

use values::{go_bool, parse_listen_addr, parse_log_level, selector, split_list};

/// The kube-reloader command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-reloader",
    version,
    about = "Rolls Deployments, StatefulSets, DaemonSets and more when the ConfigMaps and Secrets they use change.",
    long_about = "Rolls Deployments, StatefulSets, DaemonSets and more when the ConfigMaps and Secrets they \
                  use change. A drop-in replacement for stakater/Reloader: same annotations, flags, env-var \
                  names and hash values.\n\nConnects with KUBECONFIG, ~/.kube/config or the in-cluster \
                  service account, in that order."
)]
pub struct Cli {
    /// A helper command instead of running the controller.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log format: "json" for JSON lines, "" or "text" for human-readable text.
    #[arg(long, default_value = "")]
    pub log_format: String,

    /// Log level: trace, debug, info, warn(ing), error, fatal or panic (fatal and panic log as error).
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Address of the HTTP server for /live, /ready and /metrics, as host:port or :port.
    #[arg(long, default_value = ":9090", env = "KUBE_RELOADER_HTTP_ADDR")]
    pub http_addr: String,

    /// Seconds to wait for the Kubernetes API server to answer at startup before giving up.
    #[arg(long, default_value_t = 30, env = "KUBE_RELOADER_API_TIMEOUT_SECONDS")]
    pub api_timeout_seconds: u64,

    /// How a reload is written: "env-vars" (a STAKATER_* env var on one container) or
    /// "annotations" (reloader.stakater.com/last-reloaded-from on the pod template).
    #[arg(long, default_value = "env-vars")]
    pub reload_strategy: String,

    /// Treat every workload as `reloader.stakater.com/auto: "true"` unless it sets an auto key.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub auto_reload_all: bool,

    /// Reload when a referenced ConfigMap or Secret is created (exactly "true" enables).
    #[arg(long, default_value = "false")]
    pub reload_on_create: String,

    /// Reload when a referenced ConfigMap or Secret is deleted (exactly "true" enables).
    #[arg(long, default_value = "false")]
    pub reload_on_delete: String,

    /// With --reload-on-create, treat sources that exist at startup as just created.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub sync_after_restart: bool,

    /// Do not watch these source types: "configmaps" or "secrets" (not both).
    #[arg(long, action = ArgAction::Append)]
    pub resources_to_ignore: Vec<String>,

    /// Never reload these workload types: "jobs" and/or "cronjobs".
    #[arg(long, action = ArgAction::Append)]
    pub ignored_workload_types: Vec<String>,

    /// Watch only these namespaces (comma-separated or repeated); wins over KUBERNETES_NAMESPACE.
    #[arg(long, action = ArgAction::Append)]
    pub namespaces: Vec<String>,

    /// Ignore changes in these namespaces (global mode only).
    #[arg(long, action = ArgAction::Append)]
    pub namespaces_to_ignore: Vec<String>,

    /// Only namespaces whose labels match this selector (global mode only); `k:v` means `k=v`,
    /// `k:*` means "k exists".
    #[arg(long, action = ArgAction::Append)]
    pub namespace_selector: Vec<String>,

    /// Only ConfigMaps and Secrets matching this label selector (applied by the API server).
    #[arg(long, action = ArgAction::Append)]
    pub resource_label_selector: Vec<String>,

    /// Reload Argo Rollouts too (exactly "true" enables).
    #[arg(
        long = "is-Argo-Rollouts",
        alias = "is-argo-rollouts",
        default_value = "false"
    )]
    pub is_argo_rollouts: String,

    /// Send every qualifying change to this URL (POST `{"webhook":"update successful"}`)
    /// instead of reloading workloads.
    #[arg(long, default_value = "")]
    pub webhook_url: String,

    /// Serve diagnostics (/debug/state, /debug/pprof/) on --pprof-addr; off by default.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub enable_pprof: bool,

    /// Address of the diagnostics listener, as host:port or :port.
    #[arg(long, default_value = ":6060")]
    pub pprof_addr: String,

    /// Reload when a secrets-store CSI SecretProviderClassPodStatus reports new object versions.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub enable_csi_integration: bool,

    /// Leader election on a Lease so several replicas can run (needs POD_NAME and POD_NAMESPACE).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub enable_ha: bool,

    /// Name of the leader-election Lease (upstream's, so a mixed fleet shares one lock).
    #[arg(long, default_value = "stakater-reloader-lock")]
    pub ha_lease_name: String,

    /// Leader-election Lease duration in whole seconds (upstream: 15).
    #[arg(long, default_value_t = 15)]
    pub ha_lease_duration_seconds: u64,

    /// `METRICS_COUNT_BY_NAMESPACE=enabled` adds reloads-by-namespace counts (upstream's switch).
    #[arg(
        long,
        env = "METRICS_COUNT_BY_NAMESPACE",
        hide = true,
        default_value = ""
    )]
    pub metrics_count_by_namespace: String,

    /// This replica's identity for leader election (the pod name, from the downward API).
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,

    /// The host name, naming this instance in Events when POD_NAME is not set.
    #[arg(long, env = "HOSTNAME", hide = true)]
    pub hostname: Option<String>,

    /// Watch only this namespace when --namespaces is not given (upstream's KUBERNETES_NAMESPACE).
    #[arg(long, env = "KUBERNETES_NAMESPACE", hide = true)]
    pub kubernetes_namespace: Option<String>,

    /// `RUST_LOG`: a tracing filter that overrides --log-level (e.g. "warn,kube_reloader=debug").
    #[arg(long, env = "RUST_LOG", hide = true)]
    pub log_filter: Option<String>,

    /// How long in-flight write sequences may run after SIGTERM before the process exits
    /// (a Go duration such as "10s"); new work stops at once.
    #[arg(long, default_value = "10s")]
    pub shutdown_grace_period: String,

    /// Rollout governor: reload a workload once its tracked sources have been quiet this long
    /// (a Go duration; at the latest 5 periods after the first pending change). Per workload:
    /// annotation kube-reloader.io/debounce.
    #[arg(long, default_value = "0s")]
    pub debounce: String,

    /// Rollout governor: at most this many of our rollouts in progress at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_rollouts: u32,

    /// Rollout governor: at most this many of our rollouts in progress per namespace (0: no
    /// limit).
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_rollouts_per_namespace: u32,

    /// Rollout governor: at most this many reloads started per minute (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_reloads_per_minute: u32,

    /// Rollout governor: when a source change reaches more than --canary workloads, reload
    /// that many first and the rest only once their rollouts completed; a failed canary halts
    /// the change.
    #[arg(long)]
    pub health_gate: bool,

    /// Rollout governor: canaries per change with --health-gate.
    #[arg(long, default_value_t = 1)]
    pub canary: u32,

    /// Rollout governor: a rollout not complete after this long counts as failed (health gate)
    /// and no longer counts against --max-concurrent-rollouts (a Go duration).
    #[arg(long, default_value = "10m")]
    pub rollout_timeout: String,

    /// Rollout governor: reload only inside this window, "[DAYS] HH:MM-HH:MM [TZ]" (e.g.
    /// "Mon-Fri 22:00-06:00 Europe/Berlin"). Per workload: kube-reloader.io/reload-window.
    #[arg(long, default_value = "")]
    pub reload_window: String,

    /// With a reload, also remove the STAKATER_* env vars and `last-reloaded-from` of sources
    /// the workload no longer tracks (never in a write of their own: that would roll the pods).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub prune_stale_markers: bool,

    /// Reload a workload whose every reference to a source names keys (configMapKeyRef /
    /// secretKeyRef, volume or projected `items`) only when one of those keys changes. Per
    /// workload: kube-reloader.io/key-level: "true" / "false".
    #[arg(long, env = "KUBE_RELOADER_KEY_LEVEL_TRIGGERS", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub key_level_triggers: bool,

    /// Keyed digests for Secrets: NAMESPACE/NAME of a Secret whose data entry "key" holds at
    /// least 16 random bytes (and, while rotating, "previous" the old key). A Secret's marker
    /// becomes HMAC-SHA256 of its data under that key, which cannot be checked offline.
    #[arg(
        long,
        env = "KUBE_RELOADER_SECRET_DIGEST_KEY_SECRET",
        default_value = ""
    )]
    pub secret_digest_key_secret: String,

    /// The form new Secret markers are written in: "hmac-sha256" (the default with
    /// --secret-digest-key-secret) or "sha1" (upstream's; with the key Secret still set, values
    /// recorded keyed are verified and rewritten, which is how keyed digests are switched off).
    #[arg(long, env = "KUBE_RELOADER_SECRET_DIGEST", default_value = "")]
    pub secret_digest: String,

    /// Rollout governor: write nothing to workloads; publish a WouldReload Event for each reload
    /// instead. Per workload: kube-reloader.io/mode: notify.
    #[arg(long)]
    pub dry_run: bool,

    /// For tests only: wait this long before every API write (a Go duration), to widen the
    /// window between a plan and its write.
    #[arg(long, default_value = "0s", hide = true)]
    pub test_write_delay: String,

    /// `ALERT_ON_RELOAD=true`: announce each reload to ALERT_WEBHOOK_URL (upstream's switch).
    #[arg(long, env = "ALERT_ON_RELOAD", hide = true)]
    pub alert_on_reload: Option<String>,
    /// `ALERT_WEBHOOK_URL`: where alerts go.
    #[arg(long, env = "ALERT_WEBHOOK_URL", hide = true)]
    pub alert_webhook_url: Option<String>,
    /// `ALERT_SINK`: slack, teams, gchat or raw.
    #[arg(long, env = "ALERT_SINK", hide = true)]
    pub alert_sink: Option<String>,
    /// `ALERT_ADDITIONAL_INFO`: a prefix for every alert text.
    #[arg(long, env = "ALERT_ADDITIONAL_INFO", hide = true)]
    pub alert_additional_info: Option<String>,
    /// `ALERT_WEBHOOK_PROXY`: an HTTP proxy for alerts.
    #[arg(long, env = "ALERT_WEBHOOK_PROXY", hide = true)]
    pub alert_webhook_proxy: Option<String>,

    /// Namespace of the leader-election Lease (the pod's namespace, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,

    /// Where to publish the `reloader-meta-info` ConfigMap (upstream's `RELOADER_NAMESPACE`).
    #[arg(long, env = "RELOADER_NAMESPACE", hide = true)]
    pub reloader_namespace: Option<String>,

    /// The Deployment running us, for the meta-info ConfigMap (`RELOADER_DEPLOYMENT_NAME`).
    #[arg(
        long,
        env = "RELOADER_DEPLOYMENT_NAME",
        hide = true,
        default_value = ""
    )]
    pub reloader_deployment_name: String,

    /// Annotation key of the named ConfigMap list.
    #[arg(long, default_value = "configmap.reloader.stakater.com/reload")]
    pub configmap_annotation: String,
    /// Annotation key of the named Secret list.
    #[arg(long, default_value = "secret.reloader.stakater.com/reload")]
    pub secret_annotation: String,
    /// Annotation key of generic auto reload.
    #[arg(long, default_value = "reloader.stakater.com/auto")]
    pub auto_annotation: String,
    /// Annotation key, on a ConfigMap or Secret, that opts it out of all reloads.
    #[arg(long, default_value = "reloader.stakater.com/ignore")]
    pub ignore_annotation: String,
    /// Annotation key of ConfigMap-only auto reload.
    #[arg(long, default_value = "configmap.reloader.stakater.com/auto")]
    pub configmap_auto_annotation: String,
    /// Annotation key of Secret-only auto reload.
    #[arg(long, default_value = "secret.reloader.stakater.com/auto")]
    pub secret_auto_annotation: String,
    /// Annotation key, on a workload, of search mode.
    #[arg(long, default_value = "reloader.stakater.com/search")]
    pub auto_search_annotation: String,
    /// Annotation key, on a ConfigMap or Secret, that search mode matches.
    #[arg(long, default_value = "reloader.stakater.com/match")]
    pub search_match_annotation: String,
    /// Annotation key of the Deployment pause period.
    #[arg(long, default_value = "deployment.reloader.stakater.com/pause-period")]
    pub pause_deployment_annotation: String,
    /// Annotation key written while a Deployment is paused by us.
    #[arg(long, default_value = "deployment.reloader.stakater.com/paused-at")]
    pub pause_deployment_time_annotation: String,
}

/// Helper commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the env-var name and the digest (as kube-reloader and stakater/Reloader compute
    /// them) of every ConfigMap and Secret in YAML or JSON manifests; FILE "-" reads stdin.
    /// Secret values are never printed.
    Digest {
        /// Manifest file (multi-document YAML, JSON, or a kubectl List), or "-" for stdin.
        file: String,
    },
    /// Explain why a workload did or did not reload, with the controller's own rules: every
    /// ConfigMap and Secret it references or names, tracked or not and why, digests now and
    /// applied, and the verdict. Reads with your kubeconfig (get and list only); pass the
    /// controller's flags before `explain` to see their effect. Exit code 0: up to date; 1: a
    /// reload is pending or a referenced source is not tracked; 2: an error.
    Explain {
        /// KIND/NAME as kubectl spells it: deploy/web, sts/db, ds/agent, cronjob/nightly,
        /// job/migrate, rollout/x, dc/x.
        target: String,
        /// Namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// One line per opted-in workload that is not up to date or has a problem (a pending
    /// reload, failed writes from recent ReloadFail Events, invalid annotations, typos), oldest
    /// first. Reads with your kubeconfig. Exit code 0: nothing to report; 1: something listed;
    /// 2: an error.
    Status {
        /// Namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
}

/// Which namespaces are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace, minus `ignored`, limited to those matching `selector` when set.
    Global {
        /// `--namespaces-to-ignore`.
        ignored: Vec<String>,
        /// `--namespace-selector`, converted to Kubernetes selector syntax.
        selector: Option<String>,
    },
    /// Exactly these namespaces (`--namespaces` or `KUBERNETES_NAMESPACE`).
    Namespaces(Vec<String>),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Validated settings the controller runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Log output format.
    pub log_format: LogFormat,
    /// Level filter for our own log lines.
    pub log_level: tracing::Level,
    /// Warnings found while validating that must be logged once logging is up
    /// (upstream only warns on these, so we do not fail).
    pub warnings: Vec<String>,
    /// Where /live, /ready and /metrics are served.
    pub http_addr: SocketAddr,
    /// How long the startup API check may take.
    pub api_timeout: Duration,
    /// Annotation decision settings.
    pub policy: Policy,
    /// How reloads are written.
    pub strategy: Strategy,
    /// Watched namespaces.
    pub scope: Scope,
    /// Whether ConfigMaps are watched (`--resources-to-ignore`).
    pub watch_configmaps: bool,
    /// Whether Secrets are watched.
    pub watch_secrets: bool,
    /// `--resource-label-selector`, converted.
    pub resource_selector: Option<String>,
    /// `--reload-on-create=true`.
    pub reload_on_create: bool,
    /// `--reload-on-delete=true`.
    pub reload_on_delete: bool,
    /// `--sync-after-restart`.
    pub sync_after_restart: bool,
    /// `--is-Argo-Rollouts=true`.
    pub argo_rollouts: bool,
    /// `--enable-ha`: the Lease to compete for.
    pub lease: Option<crate::ops::leader::LeaseSettings>,
    /// `METRICS_COUNT_BY_NAMESPACE=enabled`.
    pub metrics_by_namespace: bool,
    /// `--webhook-url`: POST changes there instead of reloading.
    pub webhook_url: Option<String>,
    /// `--enable-pprof`: where the diagnostics listener serves.
    pub diagnostics_addr: Option<SocketAddr>,
    /// `--pprof-addr` as given, for the meta-info ConfigMap (upstream writes it even when
    /// `--enable-pprof` is off).
    pub pprof_addr: String,
    /// `--enable-csi-integration`.
    pub csi: bool,
    /// `RELOADER_NAMESPACE` and `RELOADER_DEPLOYMENT_NAME`: where the meta-info ConfigMap goes
    /// and which Deployment it names.
    pub meta_info: Option<MetaInfoTarget>,
    /// This instance's name in Events (`POD_NAME`, else `HOSTNAME`).
    pub instance: Option<String>,
    /// `RUST_LOG`, when set: overrides the log level.
    pub log_filter: Option<String>,
    /// `--shutdown-grace-period`.
    pub shutdown_grace: Duration,
    /// `--test-write-delay` (tests only).
    pub test_write_delay: Option<Duration>,
    /// The rollout governor's flags.
    pub limits: Limits,
    /// `--prune-stale-markers`.
    pub prune_stale_markers: bool,
    /// `--key-level-triggers`.
    pub key_level_triggers: bool,
    /// `--secret-digest-key-secret` and `--secret-digest`: where the digest keys are.
    pub secret_digest: Option<SecretDigestKey>,
    /// Upstream's `ALERT_*` variables as set (names to values; the URL carries a token and is
    /// never logged).
    pub alert_vars: std::collections::BTreeMap<&'static str, String>,
}

/// Where keyed digests for Secrets get their keys (`--secret-digest-key-secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDigestKey {
    /// The key Secret's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// New Secret markers are keyed (`--secret-digest=hmac-sha256`), else upstream's SHA-1.
    pub write_keyed: bool,
}

/// Where the meta-info ConfigMap is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaInfoTarget {
    /// Its namespace.
    pub namespace: String,
    /// The Deployment running kube-reloader (may be empty).
    pub deployment: String,
}

impl Cli {
    /// Checks every value and turns the command line into [`Settings`], with
    /// `KUBERNETES_NAMESPACE` as upstream reads it.
    pub fn into_settings(mut self) -> Result<Settings, Error> {
        let env_namespace = self.kubernetes_namespace.take();
        self.into_settings_with(env_namespace.as_deref())
    }

    /// [`Cli::into_settings`] with `KUBERNETES_NAMESPACE` passed in (for tests).
    pub fn into_settings_with(self, env_namespace: Option<&str>) -> Result<Settings, Error> {
        let mut warnings = Vec::new();
        let instance = self
            .pod_name
            .clone()
            .filter(|n| !n.is_empty())
            .or(self.hostname.clone());
        let (log_format, known_format) = match self.log_format.as_str() {
            "" | "text" => (LogFormat::Text, true),
            "json" => (LogFormat::Json, true),
            other => {
                // As upstream: text format, and --log-level is not applied; but say so.
                warnings.push(format!(
                    "unknown --log-format {other:?}; using text at level info, --log-level is not \
                     applied (as upstream; accepted: \"json\", \"text\" or empty)"
                ));
                (LogFormat::Text, false)
            }
        };
        let log_level = match parse_log_level(&self.log_level) {
            _ if !known_format => tracing::Level::INFO,
            Some(level) => level,
            None => {
                warnings.push(format!(
                    "unknown --log-level {:?}; using info (accepted: trace, debug, info, warn, warning, error, fatal, panic)",
                    self.log_level
                ));
                tracing::Level::INFO
            }
        };
        let http_addr = parse_listen_addr(&self.http_addr).ok_or_else(|| Error::InvalidFlag {
            flag: "--http-addr",
            value: self.http_addr.clone(),
            reason: "expected host:port or :port, e.g. \":9090\" or \"127.0.0.1:9090\"".into(),
        })?;
        if self.api_timeout_seconds == 0 {
            return Err(Error::InvalidFlag {
                flag: "--api-timeout-seconds",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let strategy = match self.reload_strategy.as_str() {
            "env-vars" => Strategy::EnvVars,
            "annotations" => Strategy::Annotations,
            other => {
                return Err(Error::InvalidFlag {
                    flag: "--reload-strategy",
                    value: other.to_owned(),
                    reason: "accepted values: env-vars, annotations".into(),
                });
            }
        };
        let (mut watch_configmaps, mut watch_secrets) = (true, true);
        let ignored_resources = split_list(&self.resources_to_ignore);
        if ignored_resources.len() > 1 {
            // Upstream accepts exactly one item: both kinds, or one twice, is fatal.
            return Err(Error::InvalidFlag {
                flag: "--resources-to-ignore",
                value: ignored_resources.join(","),
                reason: "give one of configmaps, secrets (not both, not twice)".into(),
            });
        }
        for item in ignored_resources {
            match item.to_ascii_lowercase().as_str() {
                "configmaps" => watch_configmaps = false,
                "secrets" => watch_secrets = false,
                _ => {
                    return Err(Error::InvalidFlag {
                        flag: "--resources-to-ignore",
                        value: item,
                        reason: "accepted values: configmaps, secrets".into(),
                    });
                }
            }
        }
        if !watch_configmaps && !watch_secrets {
            return Err(Error::InvalidFlag {
                flag: "--resources-to-ignore",
                value: "configmaps,secrets".into(),
                reason:
                    "ignoring both leaves nothing to watch; give at most one of configmaps, secrets"
                        .into(),
            });
        }
        let (mut ignore_jobs, mut ignore_cronjobs) = (false, false);
        for item in split_list(&self.ignored_workload_types) {
            match item.as_str() {
                "jobs" => ignore_jobs = true,
                "cronjobs" => ignore_cronjobs = true,
                _ => {
                    // Upstream logs and drops the whole filter; keep that, but say so loudly.
                    warnings.push(format!(
                        "invalid --ignored-workload-types value {item:?} (accepted: jobs, cronjobs); \
                         the filter is ignored and Jobs and CronJobs are reloaded"
                    ));
                    (ignore_jobs, ignore_cronjobs) = (false, false);
                    break;
                }
            }
        }
        let namespaces = split_list(&self.namespaces);
        let ignored = split_list(&self.namespaces_to_ignore);
        let ns_selector = selector("--namespace-selector", &self.namespace_selector)?;
        let scope = if !namespaces.is_empty() || env_namespace.is_some_and(|n| !n.is_empty()) {
            if !ignored.is_empty() || ns_selector.is_some() {
                warnings.push(
                    "--namespaces-to-ignore and --namespace-selector only apply when watching all \
                     namespaces; they are ignored with --namespaces or KUBERNETES_NAMESPACE"
                        .into(),
                );
            }
            if namespaces.is_empty() {
                Scope::Namespaces(vec![env_namespace.unwrap_or_default().to_owned()])
            } else {
                Scope::Namespaces(namespaces)
            }
        } else {
            Scope::Global {
                ignored,
                selector: ns_selector,
            }
        };
        let lease = if self.enable_ha {
            let (Some(identity), Some(namespace)) = (
                self.pod_name.filter(|n| !n.is_empty()),
                self.pod_namespace.filter(|n| !n.is_empty()),
            ) else {
                return Err(Error::InvalidFlag {
                    flag: "--enable-ha",
                    value: "true".into(),
                    reason: "leader election needs the POD_NAME and POD_NAMESPACE environment variables \
                             (set them from metadata.name and metadata.namespace with the downward API)"
                        .into(),
                });
            };
            if self.ha_lease_duration_seconds < 3 {
                return Err(Error::InvalidFlag {
                    flag: "--ha-lease-duration-seconds",
                    value: self.ha_lease_duration_seconds.to_string(),
                    reason: "must be at least 3".into(),
                });
            }
            Some(crate::ops::leader::LeaseSettings {
                name: self.ha_lease_name.clone(),
                namespace,
                identity,
                duration_seconds: self.ha_lease_duration_seconds,
            })
        } else {
            None
        };
        let diagnostics_addr = if self.enable_pprof {
            Some(
                parse_listen_addr(&self.pprof_addr).ok_or_else(|| Error::InvalidFlag {
                    flag: "--pprof-addr",
                    value: self.pprof_addr.clone(),
                    reason: "expected host:port or :port, e.g. \":6060\"".into(),
                })?,
            )
        } else {
            None
        };
        let webhook_ok = self.webhook_url.is_empty()
            || self.webhook_url.starts_with("http://")
            || self.webhook_url.starts_with("https://");
        if !webhook_ok {
            return Err(Error::InvalidFlag {
                flag: "--webhook-url",
                value: self.webhook_url.clone(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        let duration = |flag: &'static str, value: &str| {
            parse_go_duration(value).map_err(|e| Error::InvalidFlag {
                flag,
                value: value.to_owned(),
                reason: e.to_string(),
            })
        };
        let shutdown_grace = duration("--shutdown-grace-period", &self.shutdown_grace_period)?;
        let secret_digest =
            parse_secret_digest(&self.secret_digest_key_secret, &self.secret_digest)?;
        let test_write_delay =
            Some(duration("--test-write-delay", &self.test_write_delay)?).filter(|d| !d.is_zero());
        let period = |flag: &'static str, value: &str| {
            parse_period(value).map_err(|reason| Error::InvalidFlag {
                flag,
                value: value.to_owned(),
                reason,
            })
        };
        if self.health_gate && self.canary == 0 {
            return Err(Error::InvalidFlag {
                flag: "--canary",
                value: "0".to_owned(),
                reason: "at least one canary is needed with --health-gate".into(),
            });
        }
        let rollout_timeout = period("--rollout-timeout", &self.rollout_timeout)?;
        if rollout_timeout == 0 {
            return Err(Error::InvalidFlag {
                flag: "--rollout-timeout",
                value: self.rollout_timeout.clone(),
                reason: "must be longer than 0s".into(),
            });
        }
        let window = match self.reload_window.trim() {
            "" => None,
            text => Some(Window::parse(text).map_err(|e| Error::InvalidFlag {
                flag: "--reload-window",
                value: self.reload_window.clone(),
                reason: e.reason,
            })?),
        };
        let limits = Limits {
            debounce: period("--debounce", &self.debounce)?,
            window,
            dry_run: self.dry_run,
            max_concurrent: self.max_concurrent_rollouts,
            max_concurrent_per_namespace: self.max_concurrent_rollouts_per_namespace,
            max_per_minute: self.max_reloads_per_minute,
            canaries: self.health_gate.then_some(self.canary),
            rollout_timeout,
        };
        let alert_vars = [
            ("ALERT_ON_RELOAD", self.alert_on_reload),
            ("ALERT_WEBHOOK_URL", self.alert_webhook_url),
            ("ALERT_SINK", self.alert_sink),
            ("ALERT_ADDITIONAL_INFO", self.alert_additional_info),
            ("ALERT_WEBHOOK_PROXY", self.alert_webhook_proxy),
        ]
        .into_iter()
        // Upstream trims these values.
        .filter_map(|(name, value)| value.map(|v| (name, v.trim().to_owned())))
        .collect();
        let policy = Policy {
            keys: AnnotationKeys {
                configmap_reload: self.configmap_annotation,
                secret_reload: self.secret_annotation,
                auto: self.auto_annotation,
                configmap_auto: self.configmap_auto_annotation,
                secret_auto: self.secret_auto_annotation,
                search: self.auto_search_annotation,
                search_match: self.search_match_annotation,
                ignore: self.ignore_annotation,
                pause_period: self.pause_deployment_annotation,
                paused_at: self.pause_deployment_time_annotation,
            },
            auto_reload_all: self.auto_reload_all,
            ignore_jobs,
            ignore_cronjobs,
        };
        Ok(Settings {
            log_format,
            log_level,
            warnings,
            http_addr,
            api_timeout: Duration::from_secs(self.api_timeout_seconds),
            policy,
            strategy,
            scope,
            watch_configmaps,
            watch_secrets,
            resource_selector: selector(
                "--resource-label-selector",
                &self.resource_label_selector,
            )?,
            reload_on_create: self.reload_on_create == "true",
            reload_on_delete: self.reload_on_delete == "true",
            sync_after_restart: self.sync_after_restart,
            argo_rollouts: self.is_argo_rollouts == "true",
            lease,
            metrics_by_namespace: self.metrics_count_by_namespace == "enabled",
            webhook_url: Some(self.webhook_url).filter(|u| !u.is_empty()),
            diagnostics_addr,
            pprof_addr: self.pprof_addr,
            csi: self.enable_csi_integration,
            meta_info: self
                .reloader_namespace
                .filter(|n| !n.is_empty())
                .map(|namespace| MetaInfoTarget {
                    namespace,
                    deployment: self.reloader_deployment_name,
                }),
            instance,
            log_filter: self.log_filter.filter(|f| !f.is_empty()),
            shutdown_grace,
            test_write_delay,
            limits,
            prune_stale_markers: self.prune_stale_markers,
            key_level_triggers: self.key_level_triggers,
            secret_digest,
            alert_vars,
        })
    }
}

/// `--secret-digest-key-secret` and `--secret-digest`.
fn parse_secret_digest(secret: &str, form: &str) -> Result<Option<SecretDigestKey>, Error> {
    let write_keyed = match form {
        "" | "hmac-sha256" => true,
        "sha1" => false,
        other => {
            return Err(Error::InvalidFlag {
                flag: "--secret-digest",
                value: other.to_owned(),
                reason: "expected \"hmac-sha256\" or \"sha1\"".into(),
            });
        }
    };
    if secret.is_empty() {
        if form == "hmac-sha256" {
            return Err(Error::InvalidFlag {
                flag: "--secret-digest",
                value: form.to_owned(),
                reason: "keyed digests need --secret-digest-key-secret=NAMESPACE/NAME".into(),
            });
        }
        return Ok(None);
    }
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    match secret.split_once('/') {
        Some((namespace, name)) if dns_label(namespace) && dns_label(name) => {
            Ok(Some(SecretDigestKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                write_keyed,
            }))
        }
        _ => Err(Error::InvalidFlag {
            flag: "--secret-digest-key-secret",
            value: secret.to_owned(),
            reason: "expected NAMESPACE/NAME of a Secret, e.g. \"reloader/digest-key\"".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["kube-reloader"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    #[test]
    fn governor_flags_are_validated_and_off_by_default() {
        let defaults = cli(&[]).unwrap().into_settings_with(None).unwrap();
        assert_eq!(
            defaults.limits,
            Limits {
                rollout_timeout: 600,
                ..Limits::default()
            }
        );
        assert!(!defaults.limits.follows_rollouts());
        let set = cli(&[
            "--debounce=30s",
            "--max-concurrent-rollouts=5",
            "--max-reloads-per-minute=10",
            "--health-gate",
            "--canary=2",
            "--reload-window=Mon-Fri 22:00-06:00 Europe/Berlin",
            "--dry-run",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap()
        .limits;
        assert_eq!(
            (
                set.debounce,
                set.max_concurrent,
                set.max_per_minute,
                set.canaries,
                set.dry_run
            ),
            (30, 5, 10, Some(2), true)
        );
        assert!(set.window.is_some() && set.follows_rollouts());
        for (args, flag) in [
            (&["--debounce=-5s"][..], "--debounce"),
            (&["--debounce=soon"][..], "--debounce"),
            (&["--rollout-timeout=0s"][..], "--rollout-timeout"),
            (&["--reload-window=25:00-26:00"][..], "--reload-window"),
            (
                &["--reload-window=02:00-03:00 Mars/Olympus"][..],
                "--reload-window",
            ),
            (&["--health-gate", "--canary=0"][..], "--canary"),
        ] {
            let error = cli(args).unwrap().into_settings_with(None).unwrap_err();
            assert!(error.to_string().contains(flag), "{args:?}: {error}");
        }
        assert!(
            cli(&["--max-concurrent-rollouts=-1"]).is_err(),
            "clap rejects negatives"
        );
    }

    #[test]
    fn defaults_match_upstream() {
        let settings = cli(&[]).unwrap().into_settings_with(None).unwrap();
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(settings.log_level, tracing::Level::INFO);
        assert_eq!(settings.http_addr, "0.0.0.0:9090".parse().unwrap());
        assert!(settings.warnings.is_empty());
        assert_eq!(settings.strategy, Strategy::EnvVars);
        assert_eq!(
            settings.scope,
            Scope::Global {
                ignored: vec![],
                selector: None
            }
        );
        assert!(settings.watch_configmaps && settings.watch_secrets);
        assert!(
            !settings.reload_on_create
                && !settings.reload_on_delete
                && !settings.policy.auto_reload_all
        );
        assert_eq!(settings.policy.keys, AnnotationKeys::default());
    }

    #[test]
    fn key_level_triggers_is_off_by_default_and_takes_an_optional_value() {
        let on = |args: &[&str]| {
            cli(args)
                .unwrap()
                .into_settings_with(None)
                .unwrap()
                .key_level_triggers
        };
        assert!(!on(&[]));
        assert!(on(&["--key-level-triggers"]));
        assert!(on(&["--key-level-triggers=true"]));
        assert!(!on(&["--key-level-triggers=false"]));
        assert!(cli(&["--key-level-triggers=maybe"]).is_err());
    }

    #[test]
    fn secret_digest_flags() {
        let parsed = |args: &[&str]| {
            cli(args)
                .map_err(|e| e.to_string())
                .and_then(|c| c.into_settings_with(None).map_err(|e| e.to_string()))
                .map(|s| s.secret_digest)
        };
        assert_eq!(parsed(&[]), Ok(None));
        let key = |write_keyed| {
            Some(SecretDigestKey {
                namespace: "reloader".into(),
                name: "digest-key".into(),
                write_keyed,
            })
        };
        assert_eq!(
            parsed(&["--secret-digest-key-secret=reloader/digest-key"]),
            Ok(key(true))
        );
        assert_eq!(
            parsed(&[
                "--secret-digest-key-secret=reloader/digest-key",
                "--secret-digest=sha1"
            ]),
            Ok(key(false))
        );
        assert_eq!(parsed(&["--secret-digest=sha1"]), Ok(None));
        for bad in [
            &["--secret-digest-key-secret=digest-key"][..],
            &["--secret-digest-key-secret=Reloader/x"],
            &["--secret-digest-key-secret=a/b/c"],
            &["--secret-digest=md5"],
            &["--secret-digest=hmac-sha256"],
        ] {
            let error = parsed(bad).unwrap_err();
            assert!(error.contains("--secret-digest"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":8080"),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0"),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("[::1]:9090"),
            Some("[::1]:9090".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("localhost:9"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        for bad in ["", "9090", ":", ":99999", "example.com:80", "1.2.3.4"] {
            assert_eq!(parse_listen_addr(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn bad_http_addr_names_the_flag() {
        let err = cli(&["--http-addr", "nonsense"])
            .unwrap()
            .into_settings()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--http-addr") && msg.contains("nonsense"),
            "{msg}"
        );
    }

    #[test]
    fn log_levels_accept_logrus_names() {
        for (name, level) in [
            ("trace", tracing::Level::TRACE),
            ("Debug", tracing::Level::DEBUG),
            ("warning", tracing::Level::WARN),
            ("fatal", tracing::Level::ERROR),
            ("panic", tracing::Level::ERROR),
        ] {
            assert_eq!(parse_log_level(name), Some(level), "{name}");
        }
        let settings = cli(&["--log-level", "loud"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(settings.log_level, tracing::Level::INFO);
        assert!(settings.warnings[0].contains("--log-level"));
    }

    #[test]
    fn unknown_log_format_warns_and_keeps_text() {
        let settings = cli(&["--log-format", "logfmt", "--log-level", "debug"])
            .unwrap()
            .into_settings()
            .unwrap();
        assert_eq!(settings.log_format, LogFormat::Text);
        // As upstream, an unknown format drops --log-level (and says so).
        assert_eq!(settings.log_level, tracing::Level::INFO);
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("--log-level is not applied"));
    }

    #[test]
    fn unknown_flag_is_rejected() {
        let err = cli(&["--no-such-flag"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn strategy_values() {
        let annotations = cli(&["--reload-strategy", "annotations"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert_eq!(annotations.strategy, Strategy::Annotations);
        let err = cli(&["--reload-strategy=rolling"])
            .unwrap()
            .into_settings_with(None)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--reload-strategy") && msg.contains("env-vars, annotations"),
            "{msg}"
        );
    }

    #[test]
    fn go_style_bool_flags() {
        let s = cli(&[
            "--auto-reload-all",
            "--enable-ha=true",
            "--sync-after-restart=False",
            "--pod-name=p",
            "--pod-namespace=ns",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        assert!(s.policy.auto_reload_all && s.lease.is_some() && !s.sync_after_restart);
        let lease = s.lease.unwrap();
        assert_eq!(
            (lease.name.as_str(), lease.duration_seconds),
            ("stakater-reloader-lock", 15)
        );
        assert!(cli(&["--auto-reload-all=maybe"]).is_err());
        // pflag bool flags never consume the next argument.
        assert!(cli(&["--auto-reload-all", "true"]).is_err());
    }

    #[test]
    fn enable_ha_needs_the_pod_identity() {
        let err = cli(&["--enable-ha", "--pod-name="])
            .unwrap()
            .into_settings_with(None)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--enable-ha") && msg.contains("POD_NAME"),
            "{msg}"
        );
    }

    #[test]
    fn string_booleans_need_exactly_true() {
        let s = cli(&[
            "--reload-on-create=True",
            "--reload-on-delete=true",
            "--is-argo-rollouts=true",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        assert!(
            !s.reload_on_create,
            "upstream compares with the literal \"true\""
        );
        assert!(s.reload_on_delete && s.argo_rollouts);
        let s = cli(&["--is-Argo-Rollouts=true"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert!(s.argo_rollouts);
    }

    #[test]
    fn resources_to_ignore() {
        let s = cli(&["--resources-to-ignore=Secrets"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert!(s.watch_configmaps && !s.watch_secrets);
        let both = cli(&["--resources-to-ignore=configmaps,secrets"])
            .unwrap()
            .into_settings_with(None);
        assert!(
            both.unwrap_err()
                .to_string()
                .contains("--resources-to-ignore")
        );
        let bad = cli(&["--resources-to-ignore=pods"])
            .unwrap()
            .into_settings_with(None);
        assert!(bad.unwrap_err().to_string().contains("pods"));
        for twice in [
            &["--resources-to-ignore=secrets,secrets"][..],
            &[
                "--resources-to-ignore=secrets",
                "--resources-to-ignore=Secrets",
            ][..],
        ] {
            let err = cli(twice).unwrap().into_settings_with(None).unwrap_err();
            assert!(err.to_string().contains("not twice"), "{err}");
        }
    }

    #[test]
    fn alert_variables_are_trimmed() {
        let s = cli(&[
            "--alert-on-reload",
            " true ",
            "--alert-webhook-url",
            "  https://hooks.example/x\n",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        assert_eq!(s.alert_vars["ALERT_ON_RELOAD"], "true");
        assert_eq!(s.alert_vars["ALERT_WEBHOOK_URL"], "https://hooks.example/x");
    }

    #[test]
    fn ignored_workload_types_are_validated() {
        let s = cli(&[
            "--ignored-workload-types=jobs",
            "--ignored-workload-types",
            "cronjobs",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        assert!(s.policy.ignore_jobs && s.policy.ignore_cronjobs);
        let bad = cli(&["--ignored-workload-types=cronjobs,Jobs"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert!(
            !bad.policy.ignore_jobs && !bad.policy.ignore_cronjobs,
            "upstream drops the filter"
        );
        assert!(
            bad.warnings
                .iter()
                .any(|w| w.contains("--ignored-workload-types"))
        );
    }

    #[test]
    fn scope_resolution() {
        let global = cli(&["--namespaces-to-ignore=kube-system, x"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert_eq!(
            global.scope,
            Scope::Global {
                ignored: vec!["kube-system".into(), "x".into()],
                selector: None
            }
        );
        let env = cli(&[]).unwrap().into_settings_with(Some("team")).unwrap();
        assert_eq!(env.scope, Scope::Namespaces(vec!["team".into()]));
        let flags = cli(&["--namespaces=a,b", "--namespaces-to-ignore=c"])
            .unwrap()
            .into_settings_with(Some("team"))
            .unwrap();
        assert_eq!(flags.scope, Scope::Namespaces(vec!["a".into(), "b".into()]));
        assert!(
            flags
                .warnings
                .iter()
                .any(|w| w.contains("--namespaces-to-ignore"))
        );
    }

    #[test]
    fn selectors_convert_like_upstream() {
        let s = cli(&[
            "--namespace-selector=env:prod,team:*",
            "--resource-label-selector=\"reload=true\"",
        ])
        .unwrap()
        .into_settings_with(None)
        .unwrap();
        assert_eq!(
            s.scope,
            Scope::Global {
                ignored: vec![],
                selector: Some("env=prod,team".into())
            }
        );
        assert_eq!(s.resource_selector.as_deref(), Some("reload=true"));
        let exists = cli(&["--namespace-selector=team=*"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert_eq!(
            exists.scope,
            Scope::Global {
                ignored: vec![],
                selector: Some("team".into())
            }
        );
        let bad = cli(&["--namespace-selector=env=a b"])
            .unwrap()
            .into_settings_with(None);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("--namespace-selector")
        );
    }

    #[test]
    fn list_splitting() {
        assert_eq!(
            split_list(&["a, b".into(), "c".into(), " ".into()]),
            vec!["a", "b", "c"]
        );
        assert_eq!(split_list(&["\"x,y\",z".into()]), vec!["x,y", "z"]);
    }

    #[test]
    fn custom_annotation_keys() {
        let s = cli(&["--configmap-annotation", "example.com/cm"])
            .unwrap()
            .into_settings_with(None)
            .unwrap();
        assert_eq!(s.policy.keys.configmap_reload, "example.com/cm");
        assert_eq!(
            s.policy.keys.secret_reload,
            "secret.reloader.stakater.com/reload"
        );
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let err = cli(&["--api-timeout-seconds", "0"])
            .unwrap()
            .into_settings()
            .unwrap_err();
        assert!(err.to_string().contains("--api-timeout-seconds"));
    }
}
