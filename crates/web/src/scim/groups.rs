//! SCIM Groups: directory groups. A group's SCIM id is assigned at its first SCIM use and
//! survives renames; members written through SCIM are kept under the source `scim`, so SCIM never
//! removes a hand-made or provider-synced membership.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::Value;

use portcullis_auth::directory::{ScimGroup, ScimGroupChange};

use super::patch::{self, PatchBody};
use super::{
    GROUP_SCHEMA, ListQuery, ScimCaller, ScimError, ScimResult, json_body, list_response, location,
    scim_json,
};
use crate::state::AppState;

async fn known(state: &AppState) -> ScimResult<Vec<ScimGroup>> {
    Ok(state.directory.scim_groups().await?)
}

async fn find(state: &AppState, id: &str) -> ScimResult<ScimGroup> {
    known(state)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ScimError::not_found("group"))
}

async fn to_json(state: &AppState, group: &ScimGroup, with_members: bool) -> ScimResult<Value> {
    let name = &group.name;
    let mut body = serde_json::json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": name,
        "meta": { "resourceType": "Group", "location": location(state, "Groups", &group.id) },
    });
    if let Some(external) = &group.external_id {
        body["externalId"] = external.clone().into();
    }
    if with_members {
        let mut members: Vec<Value> = Vec::new();
        for (user, _source) in state.store.group_members(name).await? {
            let member = serde_json::json!({
                "value": user.id,
                "$ref": location(state, "Users", &user.id),
            });
            if !members.contains(&member) {
                members.push(member);
            }
        }
        body["members"] = members.into();
    }
    Ok(body)
}

pub async fn list(
    State(state): State<AppState>,
    _who: ScimCaller,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    Ok(list_response(matching(&state, &query).await?, &query))
}

/// The groups that match the query's filter, projected as it asks.
pub async fn matching(state: &AppState, query: &ListQuery) -> ScimResult<Vec<Value>> {
    let terms = query.terms()?;
    let with_members = !query.excludes("members");
    let mut resources = Vec::new();
    for group in known(state).await? {
        let matched = terms.iter().all(|t| match t.attribute.as_str() {
            "displayname" => group.name.eq_ignore_ascii_case(&t.value),
            "id" => group.id == t.value,
            "externalid" => group.external_id.as_deref() == Some(t.value.as_str()),
            _ => false,
        });
        if matched {
            resources.push(super::project(
                to_json(state, &group, with_members).await?,
                query,
            ));
        }
    }
    Ok(resources)
}

pub async fn get(
    State(state): State<AppState>,
    _who: ScimCaller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ScimResult<Response> {
    let group = find(&state, &id).await?;
    let body = to_json(&state, &group, !query.excludes("members")).await?;
    Ok(scim_json(StatusCode::OK, &super::project(body, &query)))
}

/// `POST /Groups/.search`: a list query in the body.
pub async fn search(
    state: State<AppState>,
    who: ScimCaller,
    parsed: Result<Json<ListQuery>, JsonRejection>,
) -> ScimResult<Response> {
    let query = json_body(parsed, "a SearchRequest")?;
    list(state, who, Query(query)).await
}

struct Fields {
    display_name: String,
    external_id: Option<String>,
    members: Vec<String>,
}

fn fields(body: &Value) -> ScimResult<Fields> {
    let object = body.as_object();
    let get = |name: &str| {
        object.and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    let display_name = get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains(','))
        .ok_or_else(|| {
            ScimError::invalid(
                "invalidValue",
                "displayName is required (and has no commas)",
            )
        })?
        .to_owned();
    let members = get("members")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let external_id = get("externalId")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned);
    Ok(Fields {
        display_name,
        external_id,
        members,
    })
}

/// Makes the group's name, external id and SCIM memberships those of `fields` (through the
/// directory, audited); returns it.
async fn save(
    state: &AppState,
    who: &ScimCaller,
    current: Option<&ScimGroup>,
    fields: &Fields,
) -> ScimResult<ScimGroup> {
    let wanted = ScimGroupChange {
        name: &fields.display_name,
        external_id: fields.external_id.as_deref(),
        members: &fields.members,
    };
    let (group, changed) = state
        .directory
        .save_scim_group(current, &wanted, &who.actor)
        .await?;
    for id in changed {
        state.apply_user_change(&id).await;
    }
    Ok(group)
}

pub async fn create(
    State(state): State<AppState>,
    who: ScimCaller,
    parsed: Result<Json<Value>, JsonRejection>,
) -> ScimResult<Response> {
    let fields = fields(&json_body(parsed, "valid JSON")?)?;
    if known(&state)
        .await?
        .iter()
        .any(|g| g.name == fields.display_name)
    {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            format!("a group is already called {:?}", fields.display_name),
        ));
    }
    let group = save(&state, &who, None, &fields).await?;
    Ok(scim_json(
        StatusCode::CREATED,
        &to_json(&state, &group, true).await?,
    ))
}

pub async fn replace(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
    parsed: Result<Json<Value>, JsonRejection>,
) -> ScimResult<Response> {
    let current = find(&state, &id).await?;
    let fields = fields(&json_body(parsed, "valid JSON")?)?;
    let group = save(&state, &who, Some(&current), &fields).await?;
    Ok(scim_json(
        StatusCode::OK,
        &to_json(&state, &group, true).await?,
    ))
}

pub async fn patch(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
    parsed: Result<Json<PatchBody>, JsonRejection>,
) -> ScimResult<Response> {
    let body = json_body(parsed, "a PatchOp")?;
    let current = find(&state, &id).await?;
    let mut resource = to_json(&state, &current, true).await?;
    // Only SCIM's own memberships are SCIM's to change.
    let scim_members = state.directory.scim_members(&current.name).await?;
    resource["members"] = scim_members
        .iter()
        .map(|id| serde_json::json!({ "value": id }))
        .collect();
    patch::apply(&mut resource, body)?;
    let fields = fields(&resource)?;
    let group = save(&state, &who, Some(&current), &fields).await?;
    Ok(scim_json(
        StatusCode::OK,
        &to_json(&state, &group, true).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    who: ScimCaller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let name = find(&state, &id).await?.name;
    for id in state.directory.delete_group(&name, &who.actor).await? {
        state.apply_user_change(&id).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
