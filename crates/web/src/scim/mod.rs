//! A SCIM 2.0 server (RFC 7643/7644) at `/scim/v2` (always also `/.portcullis/scim/v2`) so that
//! Microsoft Entra ID and Okta can push users and groups into the directory before anyone signs
//! in. Users are directory users; groups are directory groups whose SCIM memberships are kept
//! under the source `scim`, apart from hand-made and provider-synced ones.
//!
//! Both dialects are accepted: Entra's PATCH (capitalised `op`s, `"False"` strings, member
//! removal as a value array) and Okta's (PUT for updates, path-less `replace` of `active`).

mod discovery;
mod filter;
mod groups;
mod patch;
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use portcullis_auth::audit::Actor;
use subtle::ConstantTimeEq;

use crate::state::{AppState, ClientAddr};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const MAX_COUNT: usize = 200;

pub fn routes() -> Router<AppState> {
    let scim = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/.search", axum::routing::post(search_all))
        .route("/Users", get(users::list).post(users::create))
        .route("/Users/.search", axum::routing::post(users::search))
        .route(
            "/Users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route("/Groups/.search", axum::routing::post(groups::search))
        .route(
            "/Groups/{id}",
            get(groups::get)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .fallback(|| async {
            ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint")
        });
    Router::new()
        .nest("/scim/v2", scim.clone())
        .nest("/.portcullis/scim/v2", scim)
}

/// `POST /.search` at the root: users and groups alike.
async fn search_all(
    axum::extract::State(state): axum::extract::State<AppState>,
    _who: ScimCaller,
    parsed: Result<axum::Json<ListQuery>, axum::extract::rejection::JsonRejection>,
) -> ScimResult<Response> {
    let query = json_body(parsed, "a SearchRequest")?;
    let mut all = users::matching(&state, &query).await?;
    all.extend(groups::matching(&state, &query).await?);
    Ok(list_response(all, &query))
}

/// A SCIM error body (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn invalid(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no {what} has that id"),
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        scim_json(self.status, &body)
    }
}

impl From<portcullis_store::StoreError> for ScimError {
    fn from(e: portcullis_store::StoreError) -> Self {
        match e {
            portcullis_store::StoreError::Conflict(conflict) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                conflict.to_string(),
            ),
            other => {
                tracing::error!(error = %other, "SCIM: the store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the directory is unavailable; retry later",
                )
            }
        }
    }
}

impl From<portcullis_auth::directory::DirectoryError> for ScimError {
    fn from(e: portcullis_auth::directory::DirectoryError) -> Self {
        use portcullis_auth::directory::DirectoryError::*;
        match e {
            NoSuchUser(_) => Self::not_found("user"),
            NotFound(m) => Self::new(StatusCode::NOT_FOUND, None, m),
            Taken(conflict) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                conflict.to_string(),
            ),
            Invalid(m) => Self::invalid("invalidValue", m),
            Forbidden(m) => Self::new(StatusCode::FORBIDDEN, None, m),
            Store(s) => s.into(),
        }
    }
}

pub type ScimResult<T> = Result<T, ScimError>;

/// A JSON body, or the SCIM `invalidSyntax` error that says why it is not one (`what` names the
/// expected message: "JSON", "a PatchOp", "a SearchRequest").
pub fn json_body<T>(
    parsed: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
    what: &str,
) -> ScimResult<T> {
    parsed.map(|axum::Json(v)| v).map_err(|e| {
        ScimError::invalid(
            "invalidSyntax",
            format!("the body is not {what}: {}", e.body_text()),
        )
    })
}

pub fn scim_json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response
}

/// The identity provider, authenticated by the configured bearer token.
pub struct ScimCaller {
    pub actor: Actor,
}

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let Some(expected) = state.settings.scim_token.as_deref() else {
            return Err(ScimError::new(
                StatusCode::NOT_FOUND,
                None,
                "SCIM is not enabled here (set scim.token in portcullis.toml)",
            ));
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(portcullis_auth::principal::bearer_token)
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(ScimError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "the SCIM bearer token is missing or wrong",
            ));
        }
        let Ok(ClientAddr(client_ip)) = ClientAddr::from_request_parts(parts, state).await;
        Ok(ScimCaller {
            actor: Actor::new("scim", client_ip),
        })
    }
}

/// `startIndex` (1-based) and `count`, as integers (RFC 7644 §3.4.2.4).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub start_index: Option<usize>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default, deserialize_with = "comma_list")]
    pub excluded_attributes: Option<String>,
    #[serde(default, deserialize_with = "comma_list")]
    pub attributes: Option<String>,
}

/// A comma-separated list in a query string, or a JSON array in a SearchRequest body.
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        List(Vec<String>),
    }
    Ok(
        <Option<Either> as serde::Deserialize>::deserialize(d)?.map(|e| match e {
            Either::Text(t) => t,
            Either::List(l) => l.join(","),
        }),
    )
}

impl ListQuery {
    /// The filter's terms (none without a filter); a filter we cannot read is `invalidFilter`.
    pub fn terms(&self) -> ScimResult<Vec<filter::Equals>> {
        match self.filter.as_deref() {
            Some(f) => filter::parse(f).map_err(|m| ScimError::invalid("invalidFilter", m)),
            None => Ok(Vec::new()),
        }
    }

    pub fn excludes(&self, attribute: &str) -> bool {
        self.excluded_attributes.as_deref().is_some_and(|list| {
            list.split(',')
                .any(|a| a.trim().eq_ignore_ascii_case(attribute))
        })
    }
}

/// `attributes` (only these, plus `id`, `schemas` and `meta`) and `excludedAttributes` applied to
/// a resource (RFC 7644 §3.9). Top-level names, case-insensitive.
pub fn project(mut body: serde_json::Value, query: &ListQuery) -> serde_json::Value {
    let list = |text: &Option<String>| -> Vec<String> {
        text.as_deref()
            .unwrap_or("")
            .split(',')
            .map(|a| {
                a.trim()
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let (only, excluded) = (list(&query.attributes), list(&query.excluded_attributes));
    if let Some(object) = body.as_object_mut() {
        object.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            let always = matches!(k.as_str(), "id" | "schemas" | "meta");
            always || ((only.is_empty() || only.contains(&k)) && !excluded.contains(&k))
        });
    }
    body
}

/// A page of resources as a ListResponse.
pub fn list_response(all: Vec<serde_json::Value>, query: &ListQuery) -> Response {
    let start = query.start_index.unwrap_or(1).max(1);
    let count = query.count.unwrap_or(100).min(MAX_COUNT);
    let total = all.len();
    let page: Vec<serde_json::Value> = all.into_iter().skip(start - 1).take(count).collect();
    scim_json(
        StatusCode::OK,
        &serde_json::json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    )
}

/// `true`, `false`, and the strings Entra sends for them (`"True"`, `"False"`).
pub fn boolean(value: &serde_json::Value) -> Option<bool> {
    match value {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub fn location(state: &AppState, kind: &str, id: &str) -> String {
    format!("{}/scim/v2/{kind}/{id}", state.settings.public_url)
}

pub fn timestamp(t: portcullis_core::Timestamp) -> String {
    t.utc().replace(' ', "T") + "Z"
}
