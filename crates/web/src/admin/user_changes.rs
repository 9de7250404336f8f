//! The changes an admin makes on a user's page: status, role, groups, keys and sessions. Each
//! is audited by the directory and applied at once in this process.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::DirectoryError;
use portcullis_core::user::UserStatus;
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_http::respond;
use serde::Deserialize;

use super::{FormPost, admin_post, directory_failure, location};
use crate::csrf::CsrfForm;
use crate::key_forms::{self, KeyForm};
use crate::state::AppState;

use super::user_page::{DetailView, render_detail};
use super::users::user_href;

#[derive(Deserialize, Default)]
pub struct ValueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    group: String,
}

/// Common steps of a change: admin check, CSRF check, the change, apply it, redirect back.
async fn change<F, Fut>(
    state: &AppState,
    post: &FormPost,
    username: &str,
    csrf: &str,
    done: &str,
    apply: F,
) -> Response
where
    F: FnOnce(Actor) -> Fut,
    Fut: std::future::Future<Output = Result<(), DirectoryError>>,
{
    let here = user_href(username);
    let actor = match admin_post(state, post, &here, csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    if let Err(e) = apply(actor).await {
        return directory_failure(e);
    }
    if let Ok(user) = state.directory.user(username).await {
        state.apply_user_change(&user.id).await;
    }
    location(StatusCode::SEE_OTHER, &format!("{here}?done={done}"))
}

pub async fn set_status(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<ValueForm>,
) -> Response {
    let status = if form.status == "active" {
        UserStatus::Active
    } else {
        UserStatus::Disabled
    };
    let (dir, target) = (state.directory.clone(), username.clone());
    change(
        &state,
        &post,
        &username,
        &form.csrf,
        "status",
        |actor| async move { dir.set_status(&target, status, &actor).await },
    )
    .await
}

pub async fn set_role(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<ValueForm>,
) -> Response {
    let Some(role) = Role::parse(&form.role) else {
        return respond::failure(
            &Failure::bad_request(format!("{:?} is not a role", form.role)),
            true,
        );
    };
    let (dir, target) = (state.directory.clone(), username.clone());
    change(
        &state,
        &post,
        &username,
        &form.csrf,
        "role",
        |actor| async move { dir.set_role(&target, role, &actor).await },
    )
    .await
}

pub async fn add_group(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<ValueForm>,
) -> Response {
    let (dir, target) = (state.directory.clone(), username.clone());
    let group = form.group.trim().to_owned();
    change(
        &state,
        &post,
        &username,
        &form.csrf,
        "group",
        |actor| async move { dir.add_to_group(&target, &group, &actor).await },
    )
    .await
}

pub async fn create_key(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<KeyForm>,
) -> Response {
    let (me, actor) = match admin_post(&state, &post, &user_href(&username), &form.csrf).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let lifetime = match form.lifetime() {
        Ok(lifetime) => lifetime,
        Err(problem) => {
            return respond::failure(
                &Failure::bad_request(problem).with_hint("go back and correct it"),
                true,
            );
        }
    };
    let apps = form.apps();
    let created = match state
        .directory
        .create_key(&username, &form.name, apps, lifetime, &actor)
        .await
    {
        Ok(created) => created,
        Err(e) => return directory_failure(e),
    };
    state.apply_key_change().await;
    let view = DetailView {
        shown_once: key_forms::shown_once(Some(&created.secret)),
        ..DetailView::default()
    };
    render_detail(&state, &me, &username, &view).await
}

pub async fn revoke_key(
    State(state): State<AppState>,
    post: FormPost,
    Path((username, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let dir = state.directory.clone();
    let response = change(
        &state,
        &post,
        &username,
        &form.csrf,
        "revoked",
        |actor| async move { dir.revoke_key(&id, &actor).await },
    )
    .await;
    state.apply_key_change().await;
    response
}

pub async fn revoke_grant(
    State(state): State<AppState>,
    post: FormPost,
    Path((username, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let dir = state.directory.clone();
    let user = username.clone();
    let response = change(
        &state,
        &post,
        &username,
        &form.csrf,
        "grant_revoked",
        |actor| async move { dir.revoke_grant(&user, &id, &actor).await.map(|_| ()) },
    )
    .await;
    state.apply_grant_change().await;
    response
}

/// Ends one session, or every session, of the user; audited; back to the user page.
async fn end_sessions(
    state: &AppState,
    post: &FormPost,
    username: &str,
    csrf: &str,
    only: Option<&str>,
) -> Response {
    let here = user_href(username);
    let actor = match admin_post(state, post, &here, csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    let user = match state.directory.user(username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    let outcome = match only {
        // Only a session of this user: the id comes from a form field.
        Some(id) => match state.store.session(id).await {
            Ok(Some(s)) if s.user_id == user.id => state.sessions.end_by_id(id).await.map(|()| 1),
            Ok(_) => {
                return respond::failure(
                    &Failure::new(FailureKind::NotFound, "that session no longer exists"),
                    true,
                );
            }
            Err(e) => Err(e),
        },
        None => state.sessions.end_all_of(&user.id).await,
    };
    let ended = match outcome {
        Ok(n) => n,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let reason = format!("{ended} session(s)");
    let entry = portcullis_auth::audit::Entry {
        action: "session_revoked",
        success: true,
        actor: Some(&actor.id),
        subject: Some(username),
        reason: Some(&reason),
        client_ip: actor.client_ip.clone(),
    };
    state.audit.record(entry).await;
    location(StatusCode::SEE_OTHER, &format!("{here}?done=sessions"))
}

pub async fn end_all_sessions(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    end_sessions(&state, &post, &username, &form.csrf, None).await
}

pub async fn end_session(
    State(state): State<AppState>,
    post: FormPost,
    Path((username, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    end_sessions(&state, &post, &username, &form.csrf, Some(&id)).await
}
