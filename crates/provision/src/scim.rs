//! A generic SCIM 2.0 client sink: the user (keyed by `externalId` = Portcullis's user id) is
//! created or replaced, deactivated when disabled, deleted when deleted; their memberships are
//! brought in line with the directory's groups (groups are created by name when missing).

use serde_json::{Value, json};

use crate::sink::{Event, Sink, SinkError, classify, unreachable};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub struct ScimSink {
    id: String,
    base: String,
    token: String,
    http: reqwest::Client,
}

/// A filter value as a SCIM string literal.
fn literal(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

impl ScimSink {
    pub fn new(id: &str, base: &str, token: &str, http: reqwest::Client) -> Self {
        ScimSink {
            id: id.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, SinkError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", "application/scim+json");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        classify(status, &text)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The first resource a filter finds, if any.
    async fn find(
        &self,
        kind: &str,
        attribute: &str,
        value: &str,
    ) -> Result<Option<Value>, SinkError> {
        let filter = format!("{attribute} eq {}", literal(value));
        let url = format!("/{kind}?filter={}", urlencode(&filter));
        let found = self.send(reqwest::Method::GET, &url, None).await?;
        Ok(found["Resources"]
            .as_array()
            .and_then(|r| r.first())
            .cloned())
    }

    async fn group_id(&self, name: &str, create: bool) -> Result<Option<String>, SinkError> {
        if let Some(group) = self.find("Groups", "displayName", name).await? {
            return Ok(group["id"].as_str().map(str::to_owned));
        }
        if !create {
            return Ok(None);
        }
        let created = self
            .send(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({ "schemas": [GROUP_SCHEMA], "displayName": name, "members": [] })),
            )
            .await?;
        Ok(created["id"].as_str().map(str::to_owned))
    }

    async fn membership(&self, group: &str, member: &str, add: bool) -> Result<(), SinkError> {
        let op = if add {
            json!({ "op": "add", "path": "members", "value": [{ "value": member }] })
        } else {
            json!({ "op": "remove", "path": format!("members[value eq {}]", literal(member)) })
        };
        self.send(
            reqwest::Method::PATCH,
            &format!("/Groups/{group}"),
            Some(json!({ "schemas": [PATCH_SCHEMA], "Operations": [op] })),
        )
        .await
        .map(|_| ())
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[async_trait::async_trait]
impl Sink for ScimSink {
    fn id(&self) -> &str {
        &self.id
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        let existing = self.find("Users", "externalId", &event.user_id).await?;
        let Some(user) = &event.user else {
            if let Some(id) = existing.as_ref().and_then(|u| u["id"].as_str()) {
                self.send(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
                    .await?;
            }
            return Ok(());
        };
        let mut body = json!({
            "schemas": [USER_SCHEMA],
            "externalId": user.id,
            "userName": user.username,
            "active": user.status == portcullis_core::user::UserStatus::Active,
        });
        if let Some(name) = &user.display_name {
            body["displayName"] = name.clone().into();
        }
        if let Some(email) = &user.email {
            body["emails"] = json!([{ "value": email, "primary": true, "type": "work" }]);
        }
        let remote = match existing.as_ref().and_then(|u| u["id"].as_str()) {
            Some(id) => {
                self.send(reqwest::Method::PUT, &format!("/Users/{id}"), Some(body))
                    .await?
            }
            None => {
                self.send(reqwest::Method::POST, "/Users", Some(body))
                    .await?
            }
        };
        let Some(remote_id) = remote["id"].as_str() else {
            return Err(SinkError::Permanent(
                "the app's SCIM answer has no user id".into(),
            ));
        };
        // Memberships: the app's view of the user's groups against the directory's.
        let theirs: Vec<String> = remote["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|g| g["display"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for group in user.groups.iter().filter(|g| !theirs.contains(g)) {
            if let Some(gid) = self.group_id(group, true).await? {
                self.membership(&gid, remote_id, true).await?;
            }
        }
        for group in theirs.iter().filter(|g| !user.groups.contains(g)) {
            if let Some(gid) = self.group_id(group, false).await? {
                self.membership(&gid, remote_id, false).await?;
            }
        }
        Ok(())
    }
}
