//! Alert payloads after a successful reload, per sink, as upstream sends them.

use serde_json::json;

use super::{Accepts, Kind, Request};

/// Where alerts go (`ALERT_SINK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Slack incoming webhook: an attachment.
    Slack,
    /// Microsoft Teams: `{"text": ...}`.
    Teams,
    /// Google Chat: `{"text": ...}`.
    GoogleChat,
    /// Anything else: the text as text/plain, without `*`.
    Raw,
}

/// Alert settings from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// The sink.
    pub sink: Sink,
    /// `ALERT_WEBHOOK_URL`.
    pub url: String,
    /// `ALERT_ADDITIONAL_INFO`, prefixed to every message.
    pub additional_info: Option<String>,
    /// `ALERT_WEBHOOK_PROXY`.
    pub proxy: Option<String>,
}

impl AlertSettings {
    /// Reads upstream's variables; `Ok(None)` when alerts are off (`ALERT_ON_RELOAD` is not
    /// exactly "true"), `Err` when they are on but cannot work.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        if get("ALERT_ON_RELOAD").as_deref() != Some("true") {
            return Ok(None);
        }
        let Some(url) = get("ALERT_WEBHOOK_URL").filter(|u| !u.is_empty()) else {
            return Err(
                "ALERT_ON_RELOAD=true but ALERT_WEBHOOK_URL is empty; no alert will be sent. \
                        Fix: set ALERT_WEBHOOK_URL to the receiver's URL"
                    .into(),
            );
        };
        let sink = match get("ALERT_SINK")
            .unwrap_or_default()
            .to_lowercase()
            .as_str()
        {
            "slack" => Sink::Slack,
            "teams" => Sink::Teams,
            "gchat" => Sink::GoogleChat,
            _ => Sink::Raw,
        };
        Ok(Some(Self {
            sink,
            url,
            additional_info: get("ALERT_ADDITIONAL_INFO").filter(|i| !i.is_empty()),
            proxy: get("ALERT_WEBHOOK_PROXY").filter(|p| !p.is_empty()),
        }))
    }

    /// The request announcing one reload (names only; never a value).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        source: &str,
        source_type: &str,
        workload: &str,
        workload_kind: &str,
        namespace: &str,
    ) -> Request {
        self.message(format!(
            "Reloader detected changes in *{source}* of type *{source_type}* in namespace *{namespace}*. \
             Hence reloaded *{workload}* of type *{workload_kind}* in namespace *{namespace}*"
        ))
    }

    /// An alert with `text` (`*` marks bold, dropped for the raw sink), in the sink's shape:
    /// also used by the rollout governor (dry-run, halted changes).
    pub fn message(&self, mut text: String) -> Request {
        if let Some(info) = &self.additional_info {
            text = format!("{info} : {text}");
        }
        let (content_type, body, accepts) = match self.sink {
            Sink::Slack => (
                "application/json",
                json!({"attachments": [{"color": "good", "author_name": "Reloader", "text": text}]})
                    .to_string(),
                Accepts::Below400,
            ),
            Sink::Teams | Sink::GoogleChat => (
                "application/json",
                json!({ "text": text }).to_string(),
                Accepts::Only200,
            ),
            Sink::Raw => ("text/plain", text.replace('*', ""), Accepts::Below400),
        };
        Request {
            kind: Kind::Alert,
            url: self.url.clone(),
            content_type,
            body,
            accepts,
            event: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<AlertSettings>, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AlertSettings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn off_unless_exactly_true() {
        assert_eq!(settings(&[("ALERT_ON_RELOAD", "True")]), Ok(None));
        assert!(settings(&[("ALERT_ON_RELOAD", "true")]).is_err());
    }

    #[test]
    fn payloads_per_sink() {
        let slack = settings(&[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", "http://x/hook"),
            ("ALERT_SINK", "slack"),
            ("ALERT_ADDITIONAL_INFO", "prod"),
        ])
        .unwrap()
        .unwrap();
        let request = slack.request("cfg", "CONFIGMAP", "web", "Deployment", "team");
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["attachments"][0]["color"], "good");
        assert_eq!(body["attachments"][0]["author_name"], "Reloader");
        assert_eq!(
            body["attachments"][0]["text"],
            "prod : Reloader detected changes in *cfg* of type *CONFIGMAP* in namespace *team*. \
             Hence reloaded *web* of type *Deployment* in namespace *team*"
        );
        let raw = AlertSettings {
            sink: Sink::Raw,
            additional_info: None,
            ..slack.clone()
        };
        let request = raw.request("cfg", "CONFIGMAP", "web", "Deployment", "team");
        assert_eq!(request.content_type, "text/plain");
        assert!(!request.body.contains('*'));
        let teams = AlertSettings {
            sink: Sink::Teams,
            ..slack
        };
        let request = teams.request("cfg", "CONFIGMAP", "web", "Deployment", "team");
        assert_eq!(request.accepts, Accepts::Only200);
        assert!(request.body.starts_with("{\"text\":"));
    }
}
