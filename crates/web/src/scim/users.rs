//! SCIM Users: directory users. `userName` is the username, the primary (or first) email the
//! email, `displayName` (or `name.formatted`, or given + family name) the display name, `active`
//! the status — deactivating ends the user's sessions, streams and keys at once — and
//! `externalId` a linked identity under the issuer `scim`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_auth::directory::{AddUser, ScimUser};
use portcullis_core::Email;
use portcullis_core::Role;
use portcullis_core::user::{User, UserStatus, validate_username};
use serde_json::Value;

use super::patch::{self, PatchBody};
use super::{
    ListQuery, ScimCaller, ScimError, ScimResult, USER_SCHEMA, boolean, filter, json_body,
    list_response, location, project, scim_json, timestamp,
};
use crate::state::AppState;

/// What a SCIM body says about a user.
struct Fields {
    user_name: String,
    external_id: Option<String>,
    display_name: Option<String>,
    email: Option<Email>,
    active: bool,
}

fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The attribute of `object` named `name`, case-insensitively.
fn attr<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn fields(body: &Value) -> ScimResult<Fields> {
    let user_name = text(attr(body, "userName"))
        .ok_or_else(|| ScimError::invalid("invalidValue", "userName is required"))?;
    validate_username(&user_name).map_err(|m| ScimError::invalid("invalidValue", m))?;
    let name = attr(body, "name");
    let display_name = text(attr(body, "displayName"))
        .or_else(|| name.and_then(|n| text(attr(n, "formatted"))))
        .or_else(|| {
            let given = name.and_then(|n| text(attr(n, "givenName")));
            let family = name.and_then(|n| text(attr(n, "familyName")));
            match (given, family) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                (g, f) => g.or(f),
            }
        });
    let emails = attr(body, "emails").and_then(Value::as_array);
    // The primary email, else the work one (what Entra patches by `emails[type eq "work"]`),
    // else the first.
    let email = emails.and_then(|list| {
        list.iter()
            .find(|e| attr(e, "primary").and_then(boolean) == Some(true))
            .or_else(|| {
                list.iter()
                    .find(|e| attr(e, "type").and_then(Value::as_str) == Some("work"))
            })
            .or_else(|| list.first())
            .and_then(|e| text(attr(e, "value")))
    });
    let email = Email::parse_optional(email.as_deref())
        .map_err(|why| ScimError::invalid("invalidValue", format!("emails: {why}")))?;
    let active = match attr(body, "active") {
        None | Some(Value::Null) => true,
        Some(v) => boolean(v)
            .ok_or_else(|| ScimError::invalid("invalidValue", "active must be true or false"))?,
    };
    Ok(Fields {
        user_name,
        external_id: text(attr(body, "externalId")),
        display_name,
        email,
        active,
    })
}

async fn external_id(state: &AppState, user_id: &str) -> ScimResult<Option<String>> {
    Ok(state.directory.scim_external_id(user_id).await?)
}

async fn to_json(state: &AppState, user: &User) -> ScimResult<Value> {
    let mut body = serde_json::json!({
        "schemas": [USER_SCHEMA],
        "id": user.id,
        "userName": user.username,
        "active": user.status == UserStatus::Active,
        "meta": {
            "resourceType": "User",
            "created": timestamp(user.created_at),
            "lastModified": timestamp(user.created_at),
            "location": location(state, "Users", &user.id),
        },
    });
    if let Some(name) = &user.display_name {
        body["displayName"] = name.clone().into();
    }
    if let Some(email) = &user.email {
        body["emails"] = serde_json::json!([{ "value": email }]);
    }
    if let Some(external) = external_id(state, &user.id).await? {
        body["externalId"] = external.into();
    }
    if !user.groups.is_empty() {
        body["groups"] = user
            .groups
            .iter()
            .map(|g| serde_json::json!({ "display": g }))
            .collect();
    }
    Ok(body)
}

async fn find(state: &AppState, id: &str) -> ScimResult<User> {
    state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ScimError::not_found("user"))
}

pub async fn list(
    State(state): State<AppState>,
    _who: ScimCaller,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    Ok(list_response(matching(&state, &query).await?, &query))
}

/// The users that match the query's filter, projected as it asks.
pub async fn matching(state: &AppState, query: &ListQuery) -> ScimResult<Vec<Value>> {
    let terms = query.terms()?;
    let mut resources = Vec::new();
    let (users, _) = state.store.find_users(None, 0, u32::MAX).await?;
    for user in users {
        let body = to_json(state, &user).await?;
        if terms.iter().all(|t| term_matches(&body, t)) {
            resources.push(project(body, query));
        }
    }
    Ok(resources)
}

fn term_matches(body: &Value, term: &filter::Equals) -> bool {
    let equal = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(&term.value))
    };
    match term.attribute.split_once('.') {
        Some((list, sub)) => attr(body, list)
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| attr(i, sub).is_some_and(equal))),
        None => attr(body, &term.attribute).is_some_and(|v| match v {
            Value::Bool(b) => term.value.eq_ignore_ascii_case(&b.to_string()),
            other => equal(other),
        }),
    }
}

pub async fn get(
    State(state): State<AppState>,
    _who: ScimCaller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    let user = find(&state, &id).await?;
    Ok(scim_json(
        StatusCode::OK,
        &project(to_json(&state, &user).await?, &query),
    ))
}

/// `POST /Users/.search`: a list query in the body.
pub async fn search(
    state: State<AppState>,
    who: ScimCaller,
    parsed: Result<Json<ListQuery>, JsonRejection>,
) -> ScimResult<Response> {
    let query = json_body(parsed, "a SearchRequest")?;
    list(state, who, Query(query)).await
}

pub async fn create(
    State(state): State<AppState>,
    who: ScimCaller,
    parsed: Result<Json<Value>, JsonRejection>,
) -> ScimResult<Response> {
    let fields = fields(&json_body(parsed, "valid JSON")?)?;
    if state
        .store
        .user_by_username(&fields.user_name)
        .await?
        .is_some()
    {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            format!("a user is already called {:?}", fields.user_name),
        ));
    }
    let add = AddUser {
        username: fields.user_name.clone(),
        email: fields.email.clone(),
        display_name: fields.display_name.clone(),
        role: Role::User,
        password_hash: None,
    };
    let user = state.directory.add_user(add, &who.actor).await?;
    let user = save(&state, &who, &user, &fields).await?;
    Ok(scim_json(
        StatusCode::CREATED,
        &to_json(&state, &user).await?,
    ))
}

/// Brings the user in line with `fields` (through the directory, audited; deactivation ends
/// sessions everywhere) and returns them as they are now.
async fn save(
    state: &AppState,
    who: &ScimCaller,
    user: &User,
    fields: &Fields,
) -> ScimResult<User> {
    let wanted = ScimUser {
        username: &fields.user_name,
        email: fields.email.as_ref(),
        display_name: fields.display_name.as_deref(),
        active: fields.active,
        external_id: fields.external_id.as_deref(),
    };
    state
        .directory
        .save_scim_user(user, &wanted, &who.actor)
        .await?;
    state.apply_user_change(&user.id).await;
    find(state, &user.id).await
}

pub async fn replace(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
    parsed: Result<Json<Value>, JsonRejection>,
) -> ScimResult<Response> {
    let user = find(&state, &id).await?;
    let fields = fields(&json_body(parsed, "valid JSON")?)?;
    let user = save(&state, &who, &user, &fields).await?;
    Ok(scim_json(StatusCode::OK, &to_json(&state, &user).await?))
}

pub async fn patch(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
    parsed: Result<Json<PatchBody>, JsonRejection>,
) -> ScimResult<Response> {
    let body = json_body(parsed, "a PatchOp")?;
    let user = find(&state, &id).await?;
    let mut resource = to_json(&state, &user).await?;
    patch::apply(&mut resource, body)?;
    let fields = fields(&resource)?;
    let user = save(&state, &who, &user, &fields).await?;
    Ok(scim_json(StatusCode::OK, &to_json(&state, &user).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let user = find(&state, &id).await?;
    state.directory.delete_user(&user, &who.actor).await?;
    state.apply_user_change(&user.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
