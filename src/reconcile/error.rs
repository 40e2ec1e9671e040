//! Why a write did not happen, in classes that each get one treatment (the error policy):
//! a conflict is re-planned at once, a vanished workload dropped, a denied write reported with
//! the rule to add and retried slowly, anything transient retried with backoff and jitter.

use std::time::Duration;

/// A failed write, classified.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// 409: the object changed since the plan (a resourceVersion or UID precondition failed).
    #[error("the object changed since it was read: {0}")]
    Conflict(String),
    /// 404: the workload is gone.
    #[error("the object no longer exists")]
    NotFound,
    /// 403: RBAC (or an admission plugin) denied the request.
    #[error("{message}")]
    Forbidden {
        /// The API verb.
        verb: &'static str,
        /// The API group.
        group: String,
        /// The resource (plural).
        resource: String,
        /// The namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// 400/422: the API server refused the object itself (validation, admission).
    #[error("the API server rejected the request ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The write cannot happen yet for a reason that resolves by itself (a Job's old copy is
    /// still being deleted).
    #[error("{0}")]
    Blocked(String),
    /// This replica may no longer write (HA: the lease is not confirmed fresh).
    #[error("not allowed to write now: this replica's lease is not confirmed fresh")]
    Fenced,
    /// Timeouts, connection errors, 429, 5xx and anything unexpected.
    #[error("{0}")]
    Transient(String),
}

impl WriteError {
    /// Classifies a client error from a `verb` on `group`/`resource` in `namespace`.
    pub fn from_kube(
        error: kube::Error,
        verb: &'static str,
        group: &str,
        resource: &str,
        namespace: &str,
    ) -> Self {
        match error {
            kube::Error::Api(status) => match status.code {
                409 => Self::Conflict(status.message),
                404 => Self::NotFound,
                403 => Self::Forbidden {
                    verb,
                    group: group.to_owned(),
                    resource: resource.to_owned(),
                    namespace: namespace.to_owned(),
                    message: status.message,
                },
                400 | 422 => Self::Rejected {
                    code: status.code,
                    message: status.message,
                },
                code => Self::Transient(format!(
                    "the API server answered {code} {}: {}",
                    status.reason, status.message
                )),
            },
            other => Self::Transient(other.to_string()),
        }
    }

    /// The error class, for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Conflict(_) => "conflict",
            Self::NotFound => "not_found",
            Self::Forbidden { .. } => "forbidden",
            Self::Rejected { .. } => "rejected",
            Self::Blocked(_) => "blocked",
            Self::Fenced => "fenced",
            Self::Transient(_) => "transient",
        }
    }

    /// For a denial by RBAC: the rule that would allow the write.
    pub fn missing_rule(&self) -> Option<String> {
        let Self::Forbidden {
            verb,
            group,
            resource,
            namespace,
            message,
        } = self
        else {
            return None;
        };
        // Admission plugins answer 403 too; only RBAC denials say "cannot <verb>".
        if !message.contains("cannot ") {
            return None;
        }
        Some(format!(
            "a Role in namespace {namespace} (or a ClusterRole) with rule {{apiGroups: [\"{group}\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}}"
        ))
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// When to plan the workload again (`None`: drop it until a watch event brings it back).
    pub retry_in: Option<Duration>,
    /// Whether the attempt counts as a failed reload (metric, `ReloadFail` Event).
    pub failed_reload: bool,
}

/// The error policy: one answer per class. `attempt` counts failed attempts in a row (1 for
/// the first); `jitter` is uniform in [-1, 1] and spreads retries of many workloads.
pub fn respond(error: &WriteError, attempt: u32, jitter: f64) -> Response {
    let backoff = |base: Duration, cap: Duration| {
        let exponent = attempt.saturating_sub(1).min(16);
        let delay = base.saturating_mul(1u32 << exponent).min(cap);
        delay.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0))
    };
    match error {
        // Re-plan as soon as the watch shows the newer object; the short delay only bounds a
        // change our watch does not see (a status update), never a failure.
        WriteError::Conflict(_) => Response {
            retry_in: Some(backoff(Duration::from_millis(200), Duration::from_secs(5))),
            failed_reload: false,
        },
        WriteError::NotFound => Response {
            retry_in: None,
            failed_reload: false,
        },
        WriteError::Fenced => Response {
            retry_in: Some(Duration::from_secs(1)),
            failed_reload: false,
        },
        // A denied or rejected write will not pass until someone changes RBAC or the object.
        WriteError::Forbidden { .. } | WriteError::Rejected { .. } => Response {
            retry_in: Some(backoff(Duration::from_secs(10), Duration::from_secs(300))),
            failed_reload: true,
        },
        WriteError::Blocked(_) | WriteError::Transient(_) => Response {
            retry_in: Some(backoff(Duration::from_secs(1), Duration::from_secs(300))),
            failed_reload: true,
        },
    }
}

/// A jitter value in [-1, 1], from the standard library's per-process random hash keys.
pub fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    // The top 53 bits as a fraction in [0, 1), mapped to [-1, 1).
    ((bits >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    fn classify(code: u16, message: &str) -> WriteError {
        WriteError::from_kube(api(code, message), "patch", "apps", "deployments", "team")
    }

    #[test]
    fn status_codes_map_to_classes() {
        let table = [
            (409, "conflict"),
            (404, "not_found"),
            (403, "forbidden"),
            (422, "rejected"),
            (400, "rejected"),
            (429, "transient"),
            (500, "transient"),
            (503, "transient"),
            (504, "transient"),
        ];
        for (code, class) in table {
            assert_eq!(classify(code, "m").class(), class, "{code}");
        }
        let timeout = WriteError::from_kube(
            kube::Error::Service("deadline has elapsed".into()),
            "patch",
            "apps",
            "deployments",
            "team",
        );
        assert_eq!(timeout.class(), "transient");
    }

    #[test]
    fn rbac_denials_name_the_rule_admission_denials_do_not() {
        let rbac = classify(
            403,
            "deployments.apps \"bad\" is forbidden: User \"x\" cannot patch resource \"deployments\"",
        );
        assert_eq!(
            rbac.missing_rule().unwrap(),
            "a Role in namespace team (or a ClusterRole) with rule {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"patch\"]}"
        );
        let admission = classify(403, "admission webhook \"x\" denied the request");
        assert_eq!(admission.missing_rule(), None);
    }

    #[test]
    fn one_response_per_class() {
        let no_jitter = 0.0;
        let conflict = respond(&WriteError::Conflict("x".into()), 1, no_jitter);
        assert_eq!(conflict.retry_in, Some(Duration::from_millis(200)));
        assert!(!conflict.failed_reload, "a conflict is never a ReloadFail");
        let gone = respond(&WriteError::NotFound, 1, no_jitter);
        assert_eq!(
            gone,
            Response {
                retry_in: None,
                failed_reload: false
            }
        );
        let fenced = respond(&WriteError::Fenced, 3, no_jitter);
        assert_eq!(fenced.retry_in, Some(Duration::from_secs(1)));
        assert!(!fenced.failed_reload);
        let denied = classify(403, "cannot patch");
        assert_eq!(
            respond(&denied, 1, no_jitter).retry_in,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            respond(&denied, 2, no_jitter).retry_in,
            Some(Duration::from_secs(20))
        );
        assert!(respond(&denied, 1, no_jitter).failed_reload);
        let transient = WriteError::Transient("timeout".into());
        let delays: Vec<_> = (1..=10)
            .map(|n| {
                respond(&transient, n, no_jitter)
                    .retry_in
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(
            respond(&transient, 40, no_jitter).retry_in,
            Some(Duration::from_secs(300))
        );
        assert!(respond(&WriteError::Blocked("old Job".into()), 1, 0.0).failed_reload);
    }

    #[test]
    fn jitter_spreads_by_at_most_ten_percent() {
        let transient = WriteError::Transient("x".into());
        for j in [-1.0, -0.5, 0.3, 1.0, 7.0] {
            let delay = respond(&transient, 4, j).retry_in.unwrap();
            assert!(
                delay >= Duration::from_millis(7200) && delay <= Duration::from_millis(8800),
                "{j}: {delay:?}"
            );
        }
        for _ in 0..100 {
            let j = jitter();
            assert!((-1.0..1.0).contains(&j), "{j}");
        }
    }
}
