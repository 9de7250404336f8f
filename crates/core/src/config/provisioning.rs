//! Provisioning: where directory changes are delivered, and how hard delivery tries.

use std::time::Duration;

use serde::Deserialize;

use super::Config;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON events signed the Standard Webhooks way.
    Webhook,
    /// Open WebUI's admin API (`POST /api/v1/auths/add`).
    Openwebui,
    /// Any app that accepts SCIM 2.0: users and their group memberships.
    Scim,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Short name, used in metrics, the CLI and the admin UI.
    pub id: String,
    pub kind: SinkKind,
    /// `webhook`: the endpoint; `openwebui`: Open WebUI's base URL; `scim`: the SCIM base URL
    /// (ending in `/scim/v2` or wherever the app serves it).
    pub url: String,
    /// `webhook`: the signing secret, `whsec_` + base64 (Standard Webhooks).
    #[serde(default)]
    pub secret: Option<String>,
    /// `openwebui`: an admin's API key or token.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// `scim`: the bearer token the app expects.
    #[serde(default)]
    pub token: Option<String>,
    /// Deliver only users this app's access policy admits (unset: every user).
    #[serde(default)]
    pub app: Option<String>,
}

/// The SCIM 2.0 server (`/scim/v2`) that Entra ID and Okta push users and groups into.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The bearer token the identity provider sends (its "Secret Token"); at least 32 characters.
    pub token: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// First retry delay; it doubles (with jitter) up to `retry_max`.
    #[serde(default = "default_retry_base", with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// An event still undelivered this long after it happened becomes a dead letter.
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Deliveries in flight at once (never two for the same user and sink).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// A delivery a process has taken is left to it this long; if the process dies mid-delivery,
    /// another (a replica, or this one restarted) tries again after it.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            retry_base: default_retry_base(),
            retry_max: default_retry_max(),
            give_up_after: default_give_up(),
            concurrency: default_concurrency(),
            lease: default_lease(),
        }
    }
}

fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_base() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_give_up() -> Duration {
    Duration::from_secs(4 * 24 * 3600)
}
fn default_concurrency() -> usize {
    16
}

pub(super) fn validate(config: &Config, push: &mut impl FnMut(String, String)) {
    let mut ids = std::collections::BTreeSet::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        let key = |field: &str| format!("sinks[{i}].{field}");
        if let Some(problem) = super::validate::id_problem(&sink.id, &mut ids, "names two sinks") {
            push(key("id"), problem);
        }
        if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
            push(key("url"), format!("{:?} must be an http(s) URL", sink.url));
        }
        match sink.kind {
            SinkKind::Webhook => {
                let ok = sink.secret.as_deref().is_some_and(|s| {
                    s.strip_prefix("whsec_").is_some_and(|b| {
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b)
                            .is_ok_and(|k| k.len() >= 24)
                    })
                });
                if !ok {
                    push(
                        key("secret"),
                        "a webhook needs a secret: whsec_ followed by at least 24 bytes in base64 (Standard Webhooks)".into(),
                    );
                }
            }
            SinkKind::Scim => {
                if sink.token.as_deref().is_none_or(str::is_empty) {
                    push(
                        key("token"),
                        "a SCIM sink needs the app's bearer token".into(),
                    );
                }
            }
            SinkKind::Openwebui => {
                if sink.admin_token.as_deref().is_none_or(str::is_empty) {
                    push(
                        key("admin_token"),
                        "Open WebUI's admin API needs an admin's API key (Settings → Account → API keys)".into(),
                    );
                }
            }
        }
        if let Some(app) = &sink.app
            && !config.apps.iter().any(|a| &a.name == app)
        {
            push(key("app"), format!("no app is called {app:?}"));
        }
    }
    if let Some(scim) = &config.scim
        && scim.token.trim().len() < 32
    {
        push(
            "scim.token".into(),
            "must be at least 32 characters: it lets the identity provider create and delete users (openssl rand -base64 32)".into(),
        );
    }
    let p = &config.provisioning;
    if p.retry_base.is_zero() || p.retry_max < p.retry_base {
        push(
            "provisioning.retry_base".into(),
            "must be above zero and at most retry_max".into(),
        );
    }
    if p.concurrency == 0 {
        push(
            "provisioning.concurrency".into(),
            "must be at least 1".into(),
        );
    }
}
