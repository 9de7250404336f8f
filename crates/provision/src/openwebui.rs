//! Open WebUI: users are created through its admin API (`POST /api/v1/auths/add`), with a random
//! password nobody knows (people sign in through Portcullis's trusted headers). Users created this
//! way have an auth row, so the trusted-header sign-in then finds them — unlike Open WebUI's SCIM,
//! whose users cannot sign in with trusted headers (see docs/apps/open-webui.md).
//!
//! "Already exists" counts as delivered. Open WebUI applies the role header at every trusted-header
//! sign-in, so role changes (and a disabled user's `pending`) reach it through that header; users
//! who are disabled, pending or deleted are not created.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Role;
use portcullis_core::user::UserStatus;

use crate::sink::{Event, Sink, SinkError, classify, unreachable};

pub struct OpenWebUi {
    id: String,
    add_url: String,
    token: String,
    http: reqwest::Client,
}

impl OpenWebUi {
    pub fn new(id: &str, base_url: &str, token: &str, http: reqwest::Client) -> Self {
        OpenWebUi {
            id: id.to_owned(),
            add_url: format!("{}/api/v1/auths/add", base_url.trim_end_matches('/')),
            token: token.to_owned(),
            http,
        }
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
            return Ok(());
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
            .post(&self.add_url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        // Open WebUI answers a duplicate email with 400 "... already registered ...".
        if status == reqwest::StatusCode::BAD_REQUEST
            && text.to_ascii_lowercase().contains("already")
        {
            return Ok(());
        }
        classify(status, &text)
    }
}
