//! Discovery (RFC 7644 §4): what this server supports, described precisely enough for a client
//! (or a compliance checker) to know which attributes it keeps.

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{
    GROUP_SCHEMA, ListQuery, ScimCaller, ScimError, ScimResult, USER_SCHEMA, list_response,
    scim_json,
};
use crate::state::AppState;

fn attribute(name: &str, kind: &str, required: bool, uniqueness: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": false, "description": name,
        "required": required, "caseExact": false, "mutability": "readWrite",
        "returned": "default", "uniqueness": uniqueness,
    })
}

fn user_schema() -> Value {
    let mut emails = attribute("emails", "complex", false, "none");
    emails["multiValued"] = true.into();
    emails["subAttributes"] = json!([attribute("value", "string", false, "none")]);
    let mut groups = attribute("groups", "complex", false, "none");
    groups["multiValued"] = true.into();
    groups["mutability"] = "readOnly".into();
    groups["subAttributes"] = json!([attribute("display", "string", false, "none")]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "A person in the Portcullis directory",
        "attributes": [
            attribute("userName", "string", true, "server"),
            attribute("displayName", "string", false, "none"),
            // Always present: a user is active or not.
            attribute("active", "boolean", true, "none"),
            emails,
            groups,
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}") },
    })
}

fn group_schema() -> Value {
    let mut members = attribute("members", "complex", false, "none");
    members["multiValued"] = true.into();
    let mut reference = attribute("$ref", "reference", false, "none");
    reference["referenceTypes"] = json!(["User"]);
    members["subAttributes"] = json!([attribute("value", "string", false, "none"), reference]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "A group in the Portcullis directory",
        "attributes": [attribute("displayName", "string", true, "server"), members],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{GROUP_SCHEMA}") },
    })
}

fn resource_type_of(name: &str) -> Option<Value> {
    let (endpoint, schema) = match name {
        "User" => ("/Users", USER_SCHEMA),
        "Group" => ("/Groups", GROUP_SCHEMA),
        _ => return None,
    };
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": name, "name": name, "endpoint": endpoint, "schema": schema,
        "meta": { "resourceType": "ResourceType", "location": format!("/scim/v2/ResourceTypes/{name}") },
    }))
}

pub async fn service_provider_config(_who: ScimCaller) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/portcullis/portcullis/blob/main/docs/scim.md",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": 200 },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken", "name": "Bearer token",
                "description": "The token set as scim.token in portcullis.toml", "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig" },
        }),
    )
}

pub async fn resource_types(
    _who: ScimCaller,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Response {
    let all = ["User", "Group"]
        .iter()
        .filter_map(|n| resource_type_of(n))
        .collect();
    list_response(all, &query)
}

pub async fn resource_type(_who: ScimCaller, Path(name): Path<String>) -> ScimResult<Response> {
    resource_type_of(&name)
        .map(|body| scim_json(StatusCode::OK, &body))
        .ok_or_else(|| ScimError::not_found("resource type"))
}

pub async fn schemas(
    _who: ScimCaller,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Response {
    list_response(vec![user_schema(), group_schema()], &query)
}

pub async fn schema(
    _who: ScimCaller,
    Path(id): Path<String>,
    State(_state): State<AppState>,
) -> ScimResult<Response> {
    [user_schema(), group_schema()]
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|body| scim_json(StatusCode::OK, &body))
        .ok_or_else(|| ScimError::not_found("schema"))
}
