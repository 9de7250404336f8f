//! Open WebUI: users are created through its admin API (`POST /api/v1/auths/add`), with a random
//! password nobody knows (people sign in through Portcullis's trusted headers). Users created this
//! way have an auth row, so the trusted-header sign-in then finds them — unlike Open WebUI's SCIM,
//! whose users cannot sign in with trusted headers (see docs/apps/open-webui.md).
//!
//! An existing user (Open WebUI answers "already registered") gets their role updated
//! (`POST /api/v1/users/{id}/update`, found by `GET /api/v1/users/?query=<email>`); a disabled or
//! pending user becomes `pending` there and their Open WebUI sessions are revoked. Users who are
//! disabled, pending or deleted are never created. (Endpoints checked against Open WebUI 0.12.4's
//! source and a running copy: docs/apps/open-webui.md.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Role;
use portcullis_core::user::UserStatus;

use crate::sink::{Event, Sink, SinkError, classify, unreachable};

pub struct OpenWebUi {
    id: String,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl OpenWebUi {
    pub fn new(id: &str, base_url: &str, token: &str, http: reqwest::Client) -> Self {
        OpenWebUi {
            id: id.to_owned(),
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// Open WebUI's id for the user with this email, if it has one.
    async fn find(&self, email: &str) -> Result<Option<String>, SinkError> {
        let response = self
            .http
            .get(format!("{}/api/v1/users/", self.base))
            .query(&[("query", email)])
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        classify(status, &text)?;
        let listed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let users = listed.get("users").unwrap_or(&listed);
        Ok(users.as_array().and_then(|users| {
            users
                .iter()
                .find(|u| {
                    u["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
                })
                .and_then(|u| u["id"].as_str().map(str::to_owned))
        }))
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(), SinkError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        classify(status, &text)
    }

    /// Sets the role of an existing user; `pending` also ends their Open WebUI sessions.
    async fn set_role(&self, email: &str, role: &str) -> Result<(), SinkError> {
        let Some(id) = self.find(email).await? else {
            return Ok(());
        };
        self.post(
            &format!("/api/v1/users/{id}/update"),
            &serde_json::json!({ "role": role }),
        )
        .await?;
        if role == "pending" {
            self.post(
                &format!("/api/v1/users/{id}/sessions/revoke"),
                &serde_json::json!({}),
            )
            .await?;
        }
        Ok(())
    }
}

fn random_password() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[async_trait::async_trait]
impl Sink for OpenWebUi {
    fn id(&self) -> &str {
        &self.id
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        let Some(user) = &event.user else {
            return Ok(()); // deleted: Open WebUI keeps its copy (and the person's chats)
        };
        if user.status != UserStatus::Active || user.role == Role::Pending {
            return match &user.email {
                Some(email) => self.set_role(email, "pending").await,
                None => Ok(()), // never created there
            };
        }
        let Some(email) = &user.email else {
            return Err(SinkError::Permanent(format!(
                "{} has no email address, and Open WebUI matches users by email",
                user.username
            )));
        };
        let body = serde_json::json!({
            "name": user.identity().display_name,
            "email": email,
            "password": random_password(),
            "role": user.role.as_str(),
        });
        let response = self
            .http
            .post(format!("{}/api/v1/auths/add", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        // Open WebUI answers a duplicate email with 400 "... already registered ...": the user
        // exists, so bring their role in line instead.
        if status == reqwest::StatusCode::BAD_REQUEST
            && text.to_ascii_lowercase().contains("already")
        {
            return self.set_role(email, user.role.as_str()).await;
        }
        classify(status, &text)
    }
}
