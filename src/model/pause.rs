//! Upstream's pause period (`deployment.reloader.stakater.com/pause-period`): a Deployment is
//! paused in the same write that reloads it and resumed when the period has passed. The pause
//! lives on the object (`paused-at`), so whoever leads after a restart resumes it on time.

use std::time::Duration;

use crate::model::annotations::Annotations;

/// What to do about a Deployment's pause, from its annotations, `spec.paused` and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseState {
    /// Not paused by us: nothing to do.
    NotPausedByUs,
    /// Paused by us and the period is over: resume now.
    ResumeNow,
    /// Paused by us: resume after this long.
    ResumeIn(Duration),
    /// `paused-at` is set but someone already resumed the Deployment: drop the annotation.
    StaleMarker,
}

/// A pause period that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid pause period {value:?}: {reason}; use a Go duration such as \"30s\", \"5m\" or \"1h30m\""
)]
pub struct InvalidPeriod {
    /// The annotation value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Go `time.ParseDuration` string ("300ms", "1.5h", "2h45m", "-5s", "0").
/// Negative durations parse (upstream resumes at once); they are returned as zero.
pub fn parse_go_duration(text: &str) -> Result<Duration, InvalidPeriod> {
    let invalid = |reason| InvalidPeriod {
        value: text.to_owned(),
        reason,
    };
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("empty"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| invalid("missing unit"))?;
        if number_len == 0 {
            return Err(invalid("expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| invalid("bad number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid("unknown unit (use ns, us, ms, s, m or h)")),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    if negative || total <= 0.0 {
        return Ok(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid("too large"))
}

/// Reads the pause state of a Deployment. `now` and `paused-at` are Unix seconds.
pub fn state(
    annotations: &Annotations,
    period_key: &str,
    paused_at_key: &str,
    paused: bool,
    now: i64,
) -> PauseState {
    let Some(paused_at) = annotations.get(paused_at_key) else {
        return PauseState::NotPausedByUs;
    };
    if !paused {
        return PauseState::StaleMarker;
    }
    let period = annotations
        .get(period_key)
        .and_then(|p| parse_go_duration(p).ok());
    let started = parse_rfc3339(paused_at);
    match (period, started) {
        (Some(period), Some(started)) => {
            let ends = started.saturating_add(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
            if ends <= now {
                PauseState::ResumeNow
            } else {
                PauseState::ResumeIn(Duration::from_secs(
                    u64::try_from(ends - now).unwrap_or_default(),
                ))
            }
        }
        // Our marker without a usable period or time: the pause cannot be timed, so end it.
        _ => PauseState::ResumeNow,
    }
}

/// Whether a reload of this Deployment should pause it, and for how long: only when it has
/// a pause period, is not paused already (a user's pause is never touched) and carries no
/// pause of ours.
pub fn pause_for(
    annotations: &Annotations,
    period_key: &str,
    paused_at_key: &str,
    paused: bool,
) -> Option<Result<Duration, InvalidPeriod>> {
    let period = annotations.get(period_key)?;
    if paused || annotations.contains_key(paused_at_key) {
        return None;
    }
    Some(parse_go_duration(period))
}

/// RFC 3339 text of a Unix time, as upstream writes `paused-at` and `restartAt`.
pub fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
    const AT: &str = "deployment.reloader.stakater.com/paused-at";

    fn annotations(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("300ms").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("-5s").unwrap(), Duration::ZERO);
        for bad in ["", "10", "s", "5 s", "5d", "1h-2m", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(
            parse_go_duration("5d")
                .unwrap_err()
                .to_string()
                .contains("\"5d\"")
        );
    }

    #[test]
    fn pause_only_when_not_paused_and_not_ours() {
        let with_period = annotations(&[(PERIOD, "10s")]);
        assert_eq!(
            pause_for(&with_period, PERIOD, AT, false),
            Some(Ok(Duration::from_secs(10)))
        );
        assert_eq!(
            pause_for(&with_period, PERIOD, AT, true),
            None,
            "user pause"
        );
        let ours = annotations(&[(PERIOD, "10s"), (AT, "2026-11-27T07:00:00Z")]);
        assert_eq!(pause_for(&ours, PERIOD, AT, true), None);
        assert_eq!(pause_for(&annotations(&[]), PERIOD, AT, false), None);
        assert!(matches!(
            pause_for(&annotations(&[(PERIOD, "ten")]), PERIOD, AT, false),
            Some(Err(_))
        ));
    }

    #[test]
    fn resume_time_comes_from_the_object() {
        let start = parse_rfc3339("2026-11-27T07:00:00Z").unwrap();
        let ours = annotations(&[(PERIOD, "10s"), (AT, "2026-11-27T07:00:00Z")]);
        assert_eq!(
            state(&ours, PERIOD, AT, true, start + 4),
            PauseState::ResumeIn(Duration::from_secs(6))
        );
        assert_eq!(
            state(&ours, PERIOD, AT, true, start + 10),
            PauseState::ResumeNow
        );
        assert_eq!(
            state(&ours, PERIOD, AT, false, start),
            PauseState::StaleMarker
        );
        assert_eq!(
            state(&annotations(&[(PERIOD, "10s")]), PERIOD, AT, true, start),
            PauseState::NotPausedByUs,
            "a user's pause is left alone"
        );
        assert_eq!(rfc3339(start), "2026-11-27T07:00:00Z");
    }
}
