//! Admin endpoints: users, groups, keys, audit.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::AddUser;
use portcullis_core::Email;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_store::{AuditEvent, StoredKey};
use serde::{Deserialize, Serialize};

use super::MAX_PAGE;
use super::caller::{ApiError, ApiResult, Caller, body};
use crate::state::AppState;

#[derive(Serialize)]
pub struct UserView {
    id: String,
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    role: &'static str,
    status: &'static str,
    groups: Vec<String>,
    created_at: i64,
    /// Unix seconds of the last activity through a session; `null` until the first sign-in.
    last_seen_at: Option<i64>,
    /// Whether the user has a Portcullis password (others sign in through a provider or LDAP).
    has_password: bool,
    must_change_password: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            role: u.role.as_str(),
            status: u.status.as_str(),
            id: u.id,
            username: u.username,
            email: u.email.map(Email::into_string),
            display_name: u.display_name,
            groups: u.groups,
            created_at: u.created_at.0,
            last_seen_at: u.last_seen.map(|t| t.0),
            has_password: u.has_password,
            must_change_password: u.must_change_password,
        }
    }
}

#[derive(Serialize)]
pub struct KeyView {
    id: String,
    name: String,
    apps: Vec<String>,
    expires_at: Option<i64>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked: bool,
}

impl From<StoredKey> for KeyView {
    fn from(k: StoredKey) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            apps: k.allowed_apps,
            expires_at: k.expires_at.map(|t| t.0),
            created_at: k.created_at.0,
            last_used_at: k.last_used_at.map(|t| t.0),
            revoked: k.revoked_at.is_some(),
        }
    }
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: u32,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

fn parse_role(role: &str) -> ApiResult<Role> {
    Role::parse(role).ok_or_else(|| {
        ApiError(Failure::bad_request(format!(
            "{role:?} is not a role (admin, user, pending)"
        )))
    })
}

pub async fn list_users(
    State(state): State<AppState>,
    who: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let limit = page.limit.clamp(1, MAX_PAGE);
    let query = page.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (users, total) = state
        .directory
        .find_users(query, page.offset, limit)
        .await?;
    let users: Vec<UserView> = users.into_iter().map(UserView::from).collect();
    Ok(Json(serde_json::json!({ "users": users, "total": total, "offset": page.offset, "limit": limit })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// The user's id in the system that signs them up (a Cognito `sub`…): the idempotency key.
    #[serde(default)]
    external_id: Option<String>,
}

/// Creates a user, idempotently: an existing user with the same `external_id` or email is
/// returned as it is (200) instead of a second one being made (201).
pub async fn create_user(
    State(state): State<AppState>,
    who: Caller,
    parsed: Result<Json<NewUserBody>, JsonRejection>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let new = body(parsed)?;
    let password_hash = match &new.password {
        Some(password) => {
            let names = [new.username.as_str(), new.email.as_deref().unwrap_or("")];
            Some(state.local_login.hash_new(password, &names).await?)
        }
        None => None,
    };
    let role = new
        .role
        .as_deref()
        .map(parse_role)
        .transpose()?
        .unwrap_or(Role::User);
    let email = Email::parse_optional(new.email.as_deref()).map_err(|e| ApiError(e.into()))?;
    let add = AddUser {
        username: new.username,
        email,
        display_name: new.display_name,
        role,
        password_hash,
    };
    let external_id = new
        .external_id
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let (user, created) = state
        .directory
        .ensure_user(add, external_id, &who.actor)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(UserView::from(user))).into_response())
}

pub async fn get_user(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    let keys: Vec<KeyView> = state
        .directory
        .keys_of(&username)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(Json(serde_json::json!({ "user": UserView::from(user), "keys": keys })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    username: Option<String>,
    /// An empty string removes the email (or the display name).
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// `""` means "none"; anything else is trimmed.
fn cleared(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

pub async fn update_user(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
    parsed: Result<Json<UserChange>, JsonRejection>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let change = body(parsed)?;
    let mut username = username;
    if change.username.is_some() || change.email.is_some() || change.display_name.is_some() {
        let user = state.directory.user(&username).await?;
        let new_name = change
            .username
            .as_deref()
            .map_or(user.username.as_str(), str::trim);
        let email = match change.email.as_deref() {
            Some(email) => Email::parse_optional(cleared(email)).map_err(|e| ApiError(e.into()))?,
            None => user.email.clone(),
        };
        let display_name = match change.display_name.as_deref() {
            Some(name) => cleared(name),
            None => user.display_name.as_deref(),
        };
        state
            .directory
            .edit_user(&user, new_name, email.as_ref(), display_name, &who.actor)
            .await?;
        username = new_name.to_owned();
    }
    if let Some(status) = change.status.as_deref() {
        let status = match status {
            "active" => UserStatus::Active,
            "disabled" => UserStatus::Disabled,
            other => {
                return Err(ApiError(Failure::bad_request(format!(
                    "{other:?} is not a status (active, disabled)"
                ))));
            }
        };
        state
            .directory
            .set_status(&username, status, &who.actor)
            .await?;
    }
    if let Some(role) = change.role.as_deref() {
        state
            .directory
            .set_role(&username, parse_role(role)?, &who.actor)
            .await?;
    }
    let user = state.directory.user(&username).await?;
    state.apply_user_change(&user.id).await;
    Ok(Json(UserView::from(user)).into_response())
}

/// `DELETE /api/v1/users/{username}`: sessions, keys and memberships end with the user.
pub async fn delete_user(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let user = state.directory.user(&username).await?;
    state
        .directory
        .delete_user_named(&username, &who.actor)
        .await?;
    state.apply_user_change(&user.id).await;
    state.apply_key_change().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    group: String,
}

pub async fn add_group(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
    parsed: Result<Json<GroupBody>, JsonRejection>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let group = body(parsed)?.group;
    state
        .directory
        .add_to_group(&username, &group, &who.actor)
        .await?;
    let user = state.directory.user(&username).await?;
    state.apply_user_change(&user.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    pub name: String,
    #[serde(default)]
    pub apps: Vec<String>,
    /// Lifetime in seconds; none: until revoked.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// Creates a key for `owner` and returns it once.
pub async fn issue_key(
    state: &AppState,
    owner: &str,
    new: NewKeyBody,
    actor: &Actor,
) -> ApiResult<Response> {
    let lifetime = new.expires_in_secs.map(Duration::from_secs);
    let created = state
        .directory
        .create_key(owner, &new.name, new.apps, lifetime, actor)
        .await?;
    state.apply_key_change().await;
    let view = KeyView::from(created.stored);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "key": created.secret, "details": view })),
    )
        .into_response())
}

pub async fn create_key(
    State(state): State<AppState>,
    who: Caller,
    Path(username): Path<String>,
    parsed: Result<Json<NewKeyBody>, JsonRejection>,
) -> ApiResult<Response> {
    who.require_admin()?;
    issue_key(&state, &username, body(parsed)?, &who.actor).await
}

pub async fn revoke_key(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    who.require_admin()?;
    state.directory.revoke_key(&id, &who.actor).await?;
    state.apply_key_change().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default = "default_limit")]
    limit: u32,
    /// Entries by or about this username.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    action: Option<String>,
    /// Unix seconds: entries at or after.
    #[serde(default)]
    since: Option<i64>,
    /// Unix seconds: entries before.
    #[serde(default)]
    until: Option<i64>,
}

fn event_json(id: i64, e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "id": id, "at": e.at.0, "action": e.action, "outcome": e.outcome, "actor": e.actor,
        "subject": e.subject, "reason": e.reason, "client_ip": e.client_ip,
    })
}

pub async fn audit(
    State(state): State<AppState>,
    who: Caller,
    Query(page): Query<AuditPage>,
) -> ApiResult<Response> {
    who.require_admin()?;
    let limit = page.limit.clamp(1, MAX_PAGE);
    let filter = crate::admin::audit_filter(
        &state,
        page.before,
        page.user.as_deref(),
        page.action.as_deref(),
        (
            page.since.map(portcullis_core::Timestamp),
            page.until.map(portcullis_core::Timestamp),
        ),
    )
    .await?;
    let events = state.store.audit_page(&filter, limit).await?;
    let next = (events.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| events.last().map(|(id, _)| *id))
        .flatten();
    let events: Vec<serde_json::Value> = events.iter().map(|(id, e)| event_json(*id, e)).collect();
    Ok(Json(serde_json::json!({ "events": events, "next_before": next })).into_response())
}

/// The whole trail as JSON lines, newest first, streamed page by page.
pub async fn audit_export(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    who.require_admin()?;
    let store = state.store.clone();
    let pages = futures_util::stream::unfold(Some(None), move |cursor: Option<Option<i64>>| {
        let store = store.clone();
        async move {
            let filter = portcullis_store::AuditFilter {
                before: cursor?,
                ..Default::default()
            };
            match store.audit_page(&filter, 1000).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let next = events.last().map(|(id, _)| *id);
                    let lines: String = events
                        .iter()
                        .map(|(id, e)| format!("{}\n", event_json(*id, e)))
                        .collect();
                    Some((Ok::<_, std::io::Error>(lines), Some(next)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(pages));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// 404 for API paths that do not exist, as JSON.
pub async fn not_found() -> Response {
    ApiError(Failure::new(FailureKind::NotFound, "no such API endpoint")).into_response()
}
