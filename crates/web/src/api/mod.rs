//! The admin and self-service REST API under `/api/v1`. JSON in and out; errors are JSON with a
//! stable `error` code, a `message` and a `hint` (see `portcullis_http::respond`).
//!
//! Callers: a signed-in session, or an API key scoped to the API (its apps include
//! [`portcullis_auth::principal::API_SCOPE`]). Admin endpoints also need the admin role. Cookie-authenticated requests that
//! change something must come from the same origin (CSRF).

mod caller;
mod directory;
mod factors;
mod grants;
mod groups;
mod me;
pub(crate) mod outbox;
mod passwords;
mod sessions;

use axum::Router;
use axum::routing::{delete, get, post, put};

pub use directory::not_found;

use crate::state::AppState;

/// Largest page a list endpoint returns.
const MAX_PAGE: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/users",
            get(directory::list_users).post(directory::create_user),
        )
        .route(
            "/api/v1/users/{username}",
            get(directory::get_user)
                .patch(directory::update_user)
                .delete(directory::delete_user),
        )
        .route(
            "/api/v1/users/{username}/groups",
            post(directory::add_group),
        )
        .route("/api/v1/users/{username}/keys", post(directory::create_key))
        .route("/api/v1/keys/{id}", delete(directory::revoke_key))
        .route(
            "/api/v1/users/{username}/groups/{group}",
            delete(groups::remove_member),
        )
        .route("/api/v1/groups", get(groups::list))
        .route("/api/v1/groups/{name}", get(groups::members))
        .route(
            "/api/v1/users/{username}/sessions",
            get(sessions::list_for_user).delete(sessions::end_all_for_user),
        )
        .route("/api/v1/sessions/{id}", delete(sessions::end_one))
        .route("/api/v1/me/sessions", get(sessions::mine))
        .route("/api/v1/me/sessions/{id}", delete(sessions::end_mine))
        .route("/api/v1/audit", get(directory::audit))
        .route("/api/v1/audit.jsonl", get(directory::audit_export))
        .route("/api/v1/me", get(me::me))
        .route("/api/v1/me/password", post(passwords::change_own))
        .route("/api/v1/users/{username}/password", put(passwords::set))
        .route(
            "/api/v1/users/{username}/factors",
            get(factors::list).delete(factors::reset),
        )
        .route(
            "/api/v1/users/{username}/reset-link",
            post(passwords::reset_link),
        )
        .route("/api/v1/me/keys", get(me::keys).post(me::create_key))
        .route("/api/v1/me/grants", get(grants::mine))
        .route("/api/v1/me/grants/{id}", delete(grants::revoke_mine))
        .route("/api/v1/users/{username}/grants", get(grants::of_user))
        .route(
            "/api/v1/users/{username}/grants/{id}",
            delete(grants::revoke_of_user),
        )
        .route("/api/v1/me/keys/{id}", delete(me::revoke_key))
        .route("/api/v1/outbox", get(outbox::list))
        .route("/api/v1/outbox/retry", post(outbox::retry))
        .route("/api/v1/outbox/discard", post(outbox::discard))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The OpenAPI description of this API, kept next to the code it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}
