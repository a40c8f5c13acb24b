//! Upkeep of a store's order webhooks (SPEC §3.4): the engine wants one active webhook per
//! order topic delivering to its ingest URL. WooCommerce disables a webhook after 7 failed
//! deliveries in a row and re-activating it keeps the failure count (so the next failure would
//! disable it again): a disabled webhook is deleted and created anew. A paused webhook was
//! paused by a person; that is their decision, reported and left alone.
//!
//! The change-poller runs [`WooClient::ensure_order_webhooks`] on every reconciliation and
//! `syncctl webhooks ensure` runs it on demand; `syncctl test` only looks
//! ([`WooClient::order_webhook_states`]).

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::client::WooClient;
use crate::error::Result;
use crate::webhooks::{NewWebhook, Webhook};

/// The order topics the engine subscribes to.
pub const ORDER_WEBHOOK_TOPICS: [&str; 2] = ["order.created", "order.updated"];

/// How one topic's webhook to our URL stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookHealth {
    /// At least one of ours is active: deliveries arrive.
    Active,
    /// Paused by a person in WooCommerce; orders arrive by polling only.
    Paused,
    /// Disabled by WooCommerce after failed deliveries (or set so by a person).
    Disabled,
    /// None of ours exists for the topic.
    Missing,
}

impl WebhookHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookHealth::Active => "active",
            WebhookHealth::Paused => "paused",
            WebhookHealth::Disabled => "disabled",
            WebhookHealth::Missing => "missing",
        }
    }
}

/// One topic's webhooks to our delivery URL.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicWebhooks {
    pub topic: String,
    pub health: WebhookHealth,
    /// Our webhooks of this topic (any status).
    pub hooks: Vec<Webhook>,
}

/// What [`WooClient::ensure_order_webhooks`] did, by topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    /// Topics that had no webhook of ours and got one.
    pub created: Vec<String>,
    /// Topics whose webhook was not active (disabled) and was deleted and created anew.
    pub recreated: Vec<String>,
    /// Topics with an active webhook; nothing was written.
    pub healthy: Vec<String>,
    /// Topics whose webhook a person paused; left alone.
    pub paused: Vec<String>,
    /// Topics whose active webhook signed with another secret and got the current one.
    pub rotated: Vec<String>,
}

/// A short fingerprint of a webhook secret, kept in the webhook's name: WooCommerce never shows
/// the secret, so the name is how the engine tells whether a webhook signs with the current one.
pub fn secret_fingerprint(secret: &SecretString) -> String {
    let digest = Sha256::digest(secret.expose_secret().as_bytes());
    format!("key:{}", &hex_lower(&digest)[..8])
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn classify(topic: &str, hooks: &[Webhook], delivery_url: &str) -> TopicWebhooks {
    let ours: Vec<Webhook> = hooks
        .iter()
        .filter(|h| h.topic == topic && h.delivery_url == delivery_url)
        .cloned()
        .collect();
    let has = |s: &str| ours.iter().any(|h| h.status == s);
    let health = if has("active") {
        WebhookHealth::Active
    } else if has("paused") {
        WebhookHealth::Paused
    } else if ours.is_empty() {
        WebhookHealth::Missing
    } else {
        WebhookHealth::Disabled
    };
    TopicWebhooks {
        topic: topic.to_owned(),
        health,
        hooks: ours,
    }
}

impl WooClient {
    /// How the order webhooks delivering to `delivery_url` stand, per topic of
    /// [`ORDER_WEBHOOK_TOPICS`]. Reads only.
    pub async fn order_webhook_states(&self, delivery_url: &str) -> Result<Vec<TopicWebhooks>> {
        let hooks = self.list_webhooks(None).await?;
        Ok(ORDER_WEBHOOK_TOPICS
            .iter()
            .map(|t| classify(t, &hooks, delivery_url))
            .collect())
    }

    /// Makes sure each order topic has an active webhook delivering to `delivery_url`, signed
    /// with `secret`: creates missing ones (named `<name_prefix> <topic>`), deletes and
    /// re-creates disabled ones, and reports paused ones without touching them. Writes nothing
    /// when every topic is healthy.
    pub async fn ensure_order_webhooks(
        &self,
        delivery_url: &str,
        secret: &SecretString,
        name_prefix: &str,
    ) -> Result<EnsureReport> {
        let mut report = EnsureReport::default();
        let fingerprint = secret_fingerprint(secret);
        for state in self.order_webhook_states(delivery_url).await? {
            let topic = state.topic;
            let name = format!("{name_prefix} {topic} {fingerprint}");
            match state.health {
                WebhookHealth::Active => {
                    // Rotated secret (or a webhook from before fingerprints): give the active
                    // webhooks the current secret. Until WooCommerce signs with it, webhook-ingest
                    // also accepts `woo.previous_webhook_secret`.
                    let stale: Vec<&Webhook> = state
                        .hooks
                        .iter()
                        .filter(|h| h.status == "active" && !h.name.ends_with(&fingerprint))
                        .collect();
                    for h in &stale {
                        self.update_webhook(
                            h.id,
                            &crate::webhooks::WebhookUpdate {
                                name: Some(name.clone()),
                                secret: Some(secret.clone()),
                                ..Default::default()
                            },
                        )
                        .await?;
                    }
                    if stale.is_empty() {
                        report.healthy.push(topic);
                    } else {
                        report.rotated.push(topic);
                    }
                    continue;
                }
                WebhookHealth::Paused => {
                    report.paused.push(topic);
                    continue;
                }
                WebhookHealth::Missing | WebhookHealth::Disabled => {}
            }
            for h in state.hooks.iter().filter(|h| h.status == "disabled") {
                self.delete_webhook(h.id).await?;
            }
            let hook = NewWebhook {
                name,
                topic: topic.clone(),
                delivery_url: delivery_url.to_owned(),
                secret: secret.clone(),
            };
            self.create_webhook(&hook).await?;
            if state.hooks.is_empty() {
                report.created.push(topic);
            } else {
                report.recreated.push(topic);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(id: u64, topic: &str, url: &str, status: &str) -> Webhook {
        Webhook {
            id,
            topic: topic.into(),
            delivery_url: url.into(),
            status: status.into(),
            ..Webhook::default()
        }
    }

    #[test]
    fn an_active_webhook_wins_over_disabled_ones_and_other_urls_do_not_count() {
        let url = "https://ingest/s1";
        let hooks = vec![
            hook(1, "order.created", url, "disabled"),
            hook(2, "order.created", url, "active"),
            hook(3, "order.updated", "https://elsewhere", "active"),
            hook(4, "order.updated", url, "paused"),
        ];
        let created = classify("order.created", &hooks, url);
        assert_eq!(created.health, WebhookHealth::Active);
        assert_eq!(created.hooks.len(), 2);
        assert_eq!(
            classify("order.updated", &hooks, url).health,
            WebhookHealth::Paused
        );
        assert_eq!(
            classify("order.deleted", &hooks, url).health,
            WebhookHealth::Missing
        );
        assert_eq!(
            classify("order.created", &hooks[..1], url).health,
            WebhookHealth::Disabled
        );
    }
}
