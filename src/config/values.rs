//! Parsing of flag values as upstream's pflag and Go parse them: booleans, string slices,
//! label selectors, log levels and listen addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::Error;

/// Go `strconv.ParseBool`, as pflag parses boolean flags.
pub(super) fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use true or false)")),
    }
}

/// Splits pflag string-slice values: comma-separated with CSV quoting, repeated flags
/// accumulate; items are trimmed and empty items dropped.
pub(super) fn split_list(values: &[String]) -> Vec<String> {
    let mut items = Vec::new();
    for value in values {
        let mut current = String::new();
        let mut quoted = false;
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    current.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => items.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        items.push(current);
    }
    items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// Upstream's selector conversion: `k:v` → `k=v`, `k:*` or `k=*` → `k` (exists); entries are
/// joined with `,`. The result is validated so a typo fails at startup, naming the flag.
pub(super) fn selector(flag: &'static str, values: &[String]) -> Result<Option<String>, Error> {
    let items = split_list(values);
    if items.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for item in items {
        let converted =
            if let Some(key) = item.strip_suffix(":*").or_else(|| item.strip_suffix("=*")) {
                key.to_owned()
            } else if !item.contains('=') && !item.contains(' ') {
                item.replacen(':', "=", 1)
            } else {
                item.clone()
            };
        if !valid_selector_term(&converted) {
            return Err(Error::InvalidFlag {
                flag,
                value: item,
                reason:
                    "expected label selector terms such as env=prod, env!=dev, env:prod, env:* or \
                         tier in (a,b)"
                        .into(),
            });
        }
        parts.push(converted);
    }
    Ok(Some(parts.join(",")))
}

/// A light syntax check of one selector term (`k`, `!k`, `k=v`, `k==v`, `k!=v`,
/// `k in (..)`, `k notin (..)`); the API server does the full validation.
fn valid_selector_term(term: &str) -> bool {
    fn key_ok(key: &str) -> bool {
        let key = key.trim();
        !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    }
    fn value_ok(value: &str) -> bool {
        let value = value.trim();
        value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }
    let term = term.trim();
    for op in [" notin ", " in "] {
        if let Some((key, set)) = term.split_once(op) {
            let set = set.trim();
            return key_ok(key)
                && set.starts_with('(')
                && set.ends_with(')')
                && set[1..set.len() - 1].split(',').all(value_ok);
        }
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = term.split_once(op) {
            return key_ok(key) && value_ok(value);
        }
    }
    key_ok(term.strip_prefix('!').unwrap_or(term))
}

/// Maps logrus level names (upstream's) onto tracing levels.
pub(super) fn parse_log_level(value: &str) -> Option<tracing::Level> {
    use tracing::Level;
    Some(match value.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        _ => return None,
    })
}

/// Parses `host:port`, `[v6]:port` or `:port` (all interfaces, like Go's net/http).
pub(super) fn parse_listen_addr(value: &str) -> Option<SocketAddr> {
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().ok()?;
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = value.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    match host {
        "localhost" => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => None,
    }
}
