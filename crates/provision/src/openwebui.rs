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
//!
//! The update sends the whole form (name, email, picture, role): Open WebUI's update form
//! requires the first three. The name is ours when theirs is an opaque id — what an earlier
//! oauth2-proxy setup left behind when it sent the provider's subject as the name, and what
//! Open WebUI never corrects by itself (it sets the name only when it creates the user).

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

    /// Open WebUI's record of the user with this email, if it has one.
    async fn find(&self, email: &str) -> Result<Option<serde_json::Value>, SinkError> {
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
                        && u["id"].is_string()
                })
                .cloned()
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

    /// Sets the role of an existing user (and repairs an opaque name to `name`); `pending` also
    /// ends their Open WebUI sessions.
    async fn set_role(&self, email: &str, role: &str, name: Option<&str>) -> Result<(), SinkError> {
        let Some(found) = self.find(email).await? else {
            return Ok(());
        };
        let id = found["id"].as_str().unwrap_or_default();
        let theirs = found["name"].as_str().unwrap_or_default();
        let name = match name {
            Some(ours) if looks_opaque(theirs) => ours,
            _ => theirs,
        };
        self.post(
            &format!("/api/v1/users/{id}/update"),
            &serde_json::json!({
                "name": name,
                "email": found["email"].as_str().unwrap_or(email),
                "profile_image_url": found["profile_image_url"].as_str().unwrap_or("/user.png"),
                "role": role,
            }),
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

/// Whether a display name is an opaque id rather than a name: a UUID/GUID (Cognito's and Entra's
/// subjects), or a long run of letters, digits, `-` and `_` with digits in it and no space.
fn looks_opaque(name: &str) -> bool {
    let name = name.trim();
    let uuid = name.len() == 36
        && name.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let token = name.len() >= 20
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().any(|c| c.is_ascii_digit());
    name.is_empty() || uuid || token
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
                Some(email) => self.set_role(email, "pending", None).await,
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
            return self
                .set_role(
                    email,
                    user.role.as_str(),
                    Some(&user.identity().display_name),
                )
                .await;
        }
        classify(status, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::looks_opaque;

    #[test]
    fn guids_and_subjects_are_opaque_names_are_not() {
        for opaque in [
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
            "00u1a2b3c4d5e6f7g8h9",
            "",
        ] {
            assert!(looks_opaque(opaque), "{opaque:?}");
        }
        for name in [
            "Ann Example",
            "ann",
            "Jean-Luc Picard",
            "ann.example@example.com",
            "x_ae_a_12",
        ] {
            assert!(!looks_opaque(name), "{name:?}");
        }
    }
}
