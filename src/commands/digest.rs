//! `kube-reloader digest FILE|-`: prints, for each ConfigMap and Secret in YAML or JSON
//! manifests (multi-document, or `kind: List`), the env-var name and the digest kube-reloader and
//! stakater/Reloader would write, so a user can see why a workload did or did not reload.
//! Secret values are never printed, not even in error messages.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use crate::model::digest::{self, SourceKind, env_var_name};

/// Result of reading the manifests: lines to print and problems found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per ConfigMap or Secret: `namespace/name  TYPE  ENV_VAR  digest`.
    pub lines: Vec<String>,
    /// One message per bad document, naming it and the problem.
    pub problems: Vec<String>,
    /// Documents of other kinds that were skipped.
    pub skipped: Vec<String>,
}

/// Runs the command: reads `path` (or stdin for `-`), prints one line per ConfigMap/Secret on
/// stdout and problems on stderr. Returns whether every document was understood.
pub fn run(path: &str) -> std::io::Result<bool> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?
    };
    let report = digest_manifests(&text);
    for line in &report.lines {
        println!("{line}");
    }
    for skipped in &report.skipped {
        eprintln!("skipped {skipped}");
    }
    for problem in &report.problems {
        eprintln!("error: {problem}");
    }
    if report.lines.is_empty() && report.problems.is_empty() {
        eprintln!("no ConfigMap or Secret found in {path}");
    }
    Ok(report.problems.is_empty())
}

/// Reads every document of `text`.
pub fn digest_manifests(text: &str) -> Report {
    let mut report = Report::default();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = match serde_yaml_ng::Value::deserialize(document) {
            Ok(value) => value,
            Err(e) => {
                report
                    .problems
                    .push(format!("document {number}: not valid YAML or JSON: {e}"));
                // The parser cannot resynchronise after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let value = match serde_json::to_value(value) {
            Ok(value) => value,
            Err(e) => {
                report
                    .problems
                    .push(format!("document {number}: unsupported content: {e}"));
                continue;
            }
        };
        if value["kind"] == "List" {
            let items = value["items"].as_array().cloned().unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                digest_object(
                    &format!("document {number}, item {}", i + 1),
                    item,
                    &mut report,
                );
            }
        } else {
            digest_object(&format!("document {number}"), value, &mut report);
        }
    }
    report
}

fn digest_object(place: &str, value: serde_json::Value, report: &mut Report) {
    let kind = value["kind"].as_str().unwrap_or("").to_owned();
    let name = value["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
    let label = match &namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    if name.is_empty() && (kind == "ConfigMap" || kind == "Secret") {
        report
            .problems
            .push(format!("{place}: {kind} has no metadata.name"));
        return;
    }
    let (source_kind, digest) = match kind.as_str() {
        "ConfigMap" => match serde_json::from_value::<ConfigMap>(value) {
            Ok(cm) => (SourceKind::ConfigMap, digest::configmap(&cm)),
            Err(e) => {
                report
                    .problems
                    .push(format!("{place}: ConfigMap {label}: {e}"));
                return;
            }
        },
        "Secret" => match serde_json::from_value::<Secret>(value) {
            Ok(secret) => (SourceKind::Secret, digest::secret(&secret)),
            Err(_) => {
                report.problems.push(format!(
                    "{place}: Secret {label}: data values must be base64-encoded strings (the values are not shown)"
                ));
                return;
            }
        },
        "" => {
            report
                .problems
                .push(format!("{place}: no kind; expected ConfigMap or Secret"));
            return;
        }
        other => {
            report.skipped.push(format!(
                "{place}: {other} {label} is not a ConfigMap or Secret"
            ));
            return;
        }
    };
    let mut line = String::new();
    let _ = write!(
        line,
        "{label}\t{}\t{}\t{digest}",
        source_kind.upstream_type(),
        env_var_name(&name, source_kind)
    );
    report.lines.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmaps_and_secrets_in_yaml_and_json() {
        let text = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: foo-config, namespace: default}
data: {a: "1", b: "2"}
---
{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"a": "MQ==", "b": "Mg=="}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
"#;
        let report = digest_manifests(text);
        assert_eq!(
            report.lines,
            vec![
                "default/foo-config\tCONFIGMAP\tSTAKATER_FOO_CONFIG_CONFIGMAP\tf83e99e324ba68ccc373a58ef1eb42f8ab88646a",
                "db\tSECRET\tSTAKATER_DB_SECRET\tf83e99e324ba68ccc373a58ef1eb42f8ab88646a",
            ]
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.skipped.len(), 1);
        assert!(report.skipped[0].starts_with("document 3: Deployment web"));
    }

    #[test]
    fn kubectl_lists_and_string_data() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "1", "b": "2"}},
            {"kind": "ConfigMap", "metadata": {"name": "c"}}
        ]}"#;
        let report = digest_manifests(text);
        assert_eq!(report.lines.len(), 2);
        assert!(report.lines[0].ends_with("f83e99e324ba68ccc373a58ef1eb42f8ab88646a"));
        assert!(report.lines[1].ends_with("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    }

    #[test]
    fn bad_documents_are_named_and_secret_values_never_shown() {
        let text = "kind: Secret\nmetadata: {name: s}\ndata: {token: 'not-base64-SUPERSECRET!'}\n---\nkind: ConfigMap\ndata: {a: b}\n---\nfoo: [unclosed\n";
        let report = digest_manifests(text);
        assert!(report.lines.is_empty());
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(report.problems[0].starts_with("document 1: Secret s: data values must be base64"));
        assert!(report.problems[1].starts_with("document 2: ConfigMap has no metadata.name"));
        assert!(report.problems[2].starts_with("document 3: not valid YAML"));
        assert!(report.problems.iter().all(|p| !p.contains("SUPERSECRET")));
    }
}
