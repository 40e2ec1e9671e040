//! The key Secret of keyed digests (`--secret-digest-key-secret`): read at start, watched
//! after. Each change installs the new keys (the ones replaced stay for recognising older
//! values) and makes the Secret watches list again, so every Secret is digested under them and
//! ledgers are rewritten on metadata only. Only key ids are ever logged.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::config::SecretDigestKey;
use crate::model::keyed::{DigestKey, DigestKeys, KEY_ENTRY, KeyError, PREVIOUS_KEY_ENTRY};
use crate::reconcile::Context;
use crate::watch::digested;

/// How many times the digest keys were installed: 0 until the key Secret was first read. The
/// Secret watches wait for 1 and list again on every later change.
#[derive(Debug)]
pub struct KeyGeneration(watch::Sender<u64>);

impl Default for KeyGeneration {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl KeyGeneration {
    /// Follows the generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn bump(&self) {
        self.0.send_modify(|g| *g += 1);
    }
}

/// The keys held by a key Secret: `key`, and `previous` when present.
pub fn keys_of(secret: &Secret, write_keyed: bool) -> Result<DigestKeys, KeyError> {
    let entry = |name: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|v| v.0.as_slice())
    };
    let current = DigestKey::new(KEY_ENTRY, entry(KEY_ENTRY).ok_or(KeyError::Missing)?)?;
    let previous = entry(PREVIOUS_KEY_ENTRY)
        .filter(|v| !v.is_empty())
        .map(|v| DigestKey::new(PREVIOUS_KEY_ENTRY, v))
        .transpose()?;
    Ok(DigestKeys::new(
        current,
        previous.into_iter().collect(),
        write_keyed,
    ))
}

/// Watches the key Secret until the process stops.
pub async fn run(ctx: Arc<Context>, key: SecretDigestKey) {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let object = format!("{}/{}", key.namespace, key.name);
    let fix_missing = format!(
        "create it: kubectl -n {} create secret generic {} --from-literal={KEY_ENTRY}=\"$(openssl rand -hex 32)\"",
        key.namespace, key.name
    );
    let mut held: Option<DigestKeys> = None;
    let mut seen = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => seen = false,
            Ok(watcher::Event::InitApply(secret) | watcher::Event::Apply(secret)) => {
                seen = true;
                let next = match keys_of(&secret, key.write_keyed) {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(
                            secret = %object,
                            "the digest key Secret cannot be used: {e}; {}. Fix: set its entry \
                             {KEY_ENTRY:?} to at least 16 random bytes, e.g. \"$(openssl rand -hex 32)\"",
                            if held.is_some() {
                                "the keys read before stay in use"
                            } else {
                                "Secrets are not watched until it can (no Secret-triggered reload is lost: they are found when it can)"
                            }
                        );
                        continue;
                    }
                };
                if held.as_ref().is_some_and(|h| {
                    h.ids().starts_with(&next.ids()) && h.write_keyed() == next.write_keyed()
                }) {
                    continue;
                }
                let keys = match &held {
                    Some(held) => held.rotated(next),
                    None => next,
                };
                let ids: Vec<String> = keys.ids().iter().map(ToString::to_string).collect();
                tracing::info!(
                    secret = %object,
                    key_ids = %ids.join(","),
                    writes = if keys.write_keyed() { "hmac-sha256" } else { "sha1" },
                    "{}",
                    if held.is_some() {
                        "digest keys changed; Secrets are listed again and digested under them"
                    } else {
                        "digest keys loaded"
                    }
                );
                digested::install_digest_keys(keys.clone());
                held = Some(keys);
                ctx.digest_keys.bump();
            }
            Ok(watcher::Event::InitDone) if !seen && held.is_none() => {
                tracing::error!(
                    secret = %object,
                    "the digest key Secret (--secret-digest-key-secret) does not exist; Secrets are \
                     not watched until it does. Fix: {fix_missing}"
                );
            }
            Ok(watcher::Event::InitDone) if !seen => {
                tracing::warn!(
                    secret = %object,
                    "the digest key Secret is gone; the keys read before stay in use, but a \
                     restart will wait for it. Fix: {fix_missing} (with the same key)"
                );
            }
            Ok(watcher::Event::InitDone) => {}
            Ok(watcher::Event::Delete(_)) => {
                tracing::warn!(
                    secret = %object,
                    "the digest key Secret was deleted; the keys read before stay in use, but a \
                     restart will wait for it. Fix: create it again with the same key"
                );
            }
            Err(e) => tracing::warn!(
                secret = %object,
                error = %e,
                "cannot watch the digest key Secret; retrying with backoff. Fix: grant get, \
                 list and watch on secrets in namespace {}",
                key.namespace
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn a_key_secret_gives_its_key_then_the_previous_one() {
        let a: &[u8] = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let b: &[u8] = b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let only = keys_of(&secret(&[("key", a)]), true).unwrap();
        let both = keys_of(&secret(&[("key", b), ("previous", a)]), true).unwrap();
        assert_eq!(both.ids().len(), 2);
        assert_eq!(both.ids()[1], only.ids()[0]);
        assert!(both.write_keyed());
        assert!(
            !keys_of(&secret(&[("key", a)]), false)
                .unwrap()
                .write_keyed()
        );
        assert_eq!(
            keys_of(&secret(&[("previous", a)]), true).unwrap_err(),
            KeyError::Missing
        );
        assert!(matches!(
            keys_of(&secret(&[("key", b"short")]), true).unwrap_err(),
            KeyError::TooShort { len: 5, .. }
        ));
        assert!(matches!(
            keys_of(&secret(&[("key", a), ("previous", b"short")]), true).unwrap_err(),
            KeyError::TooShort {
                entry: "previous",
                ..
            }
        ));
    }
}
