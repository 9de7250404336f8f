//! A generic webhook, signed the Standard Webhooks way (standardwebhooks.com): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed with the base64 part of a `whsec_…` secret. Receivers verify with any Standard Webhooks
//! library and deduplicate on `webhook-id`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sink::{Event, Sink, SinkError, classify, unreachable};

pub struct Webhook {
    id: String,
    url: String,
    key: Vec<u8>,
    http: reqwest::Client,
}

impl Webhook {
    /// `secret` was checked by the configuration (`whsec_` + base64).
    pub fn new(id: &str, url: &str, secret: &str, http: reqwest::Client) -> Self {
        let key = STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .unwrap_or_default();
        Webhook {
            id: id.to_owned(),
            url: url.to_owned(),
            key,
            http,
        }
    }

    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => return String::new(),
        };
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The event as JSON: the type, when, and the user's current state.
pub fn payload(event: &Event) -> serde_json::Value {
    let user = event.user.as_ref().map(|u| {
        serde_json::json!({
            "id": u.id, "username": u.username, "email": u.email,
            "display_name": u.display_name, "role": u.role.as_str(),
            "status": u.status.as_str(), "groups": u.groups,
        })
    });
    serde_json::json!({
        "type": format!("user.{}", event.kind.trim_start_matches("user_")),
        "timestamp": event.at,
        "data": { "user_id": event.user_id, "user": user },
    })
}

#[async_trait::async_trait]
impl Sink for Webhook {
    fn id(&self) -> &str {
        &self.id
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        let body = payload(event).to_string();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signature = self.sign(&event.idempotency_key, timestamp, &body);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.idempotency_key)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        classify(status, &text)
    }
}
