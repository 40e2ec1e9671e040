//! Prometheus metrics, with upstream's names so existing dashboards and alerts keep working.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Label set of `reloader_reload_executed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuccessLabel {
    /// "true" or "false".
    pub success: &'static str,
}

/// Label set of `reloader_skipped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the change was skipped.
    pub reason: &'static str,
}

/// All metrics the controller exposes on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One increment per workload write attempt, labelled by outcome (upstream name).
    pub reload_executed: Family<SuccessLabel, Counter>,
    /// Source changes that caused no reload, by reason (upstream name).
    pub skipped: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric. Both `success` values of the reload counter start at zero, as
    /// upstream's do, so `rate()` queries work before the first reload.
    pub fn new() -> Self {
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
        let skipped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reloader_skipped",
            "Number of skipped reloads",
            skipped.clone(),
        );
        Self {
            registry,
            reload_executed,
            skipped,
        }
    }

    /// Counts one reload write attempt.
    pub fn reload_executed(&self, success: bool) {
        let success = if success { "true" } else { "false" };
        self.reload_executed
            .get_or_create(&SuccessLabel { success })
            .inc();
    }

    /// Counts one skipped change (`no_data_change`, ...).
    pub fn skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Renders the registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_counter_is_exposed_with_both_labels_at_zero() {
        let text = Metrics::new().encode().unwrap();
        assert!(
            text.contains("reloader_reload_executed_total{success=\"true\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("reloader_reload_executed_total{success=\"false\"} 0"),
            "{text}"
        );
        assert!(text.contains("kube_reloader_build_info{version="), "{text}");
    }
}
