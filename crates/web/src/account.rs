//! `/.portcullis/account`: a signed-in person's own profile, sessions and API keys.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::ActiveSession;
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use crate::admin::{Page, csrf_refusal, form_token, location};
use crate::key_forms::{self, KeyForm};
use crate::state::{AppState, ClientAddr};

const HERE: &str = "/.portcullis/account";

async fn signed_in(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<ActiveSession>, Response> {
    match crate::sign_in::signed_in(state, headers).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(respond::sign_in_required(method, HERE, true)),
        Err(failure) => Err(respond::failure(&failure, true)),
    }
}

pub async fn page(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    match signed_in(&state, &method, &headers).await {
        Ok(me) => render(&state, &me, None).await,
        Err(refused) => refused,
    }
}

async fn render(state: &AppState, me: &ActiveSession, new_key: Option<&str>) -> Response {
    let identity = &me.identity;
    // A directory that cannot be read gets a clear page, not empty lists.
    let (sessions, keys) = match tokio::try_join!(
        state.store.sessions_of(&me.user_id),
        state.store.keys_of(&me.user_id)
    ) {
        Ok(found) => found,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let csrf = form_token(state, me);
    let session_rows: String = sessions
        .iter()
        .map(|s| {
            let this = s.id_hash == me.id_hash;
            let action = if this {
                "<span class=\"badge ok\">this browser</span>".to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"{HERE}/sessions/{id}/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <button type=\"submit\" class=\"secondary\">End</button></form>",
                    id = escape(&s.id_hash)
                )
            };
            let agent: String = s.user_agent.as_deref().unwrap_or("—").chars().take(60).collect();
            format!(
                "<tr><td>{} UTC</td><td>{} UTC</td><td class=\"code\">{}</td><td>{}</td><td>{action}</td></tr>",
                s.created_at.utc(),
                s.last_seen.utc(),
                escape(s.client_ip.as_deref().unwrap_or("—")),
                escape(&agent)
            )
        })
        .collect();
    let key_rows: String = keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| {
            let apps = if k.allowed_apps.is_empty() { "all".to_owned() } else { k.allowed_apps.join(", ") };
            format!(
                "<tr><td>{name}</td><td>{apps}</td><td>{expires}</td><td><form method=\"post\" action=\"{HERE}/keys/{id}/revoke\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"secondary\" aria-label=\"Revoke {name}\">Revoke</button></form></td></tr>",
                name = escape(&k.name),
                apps = escape(&apps),
                expires = k.expires_at.map(|t| format!("{} UTC", t.utc())).unwrap_or_else(|| "never".to_owned()),
                id = escape(&k.id),
            )
        })
        .collect();
    let new_key = key_forms::shown_once(new_key);
    let body = format!(
        "<h1>My account</h1>{new_key}\
         <div class=\"panel\"><table>\
           <tr><th>Username</th><td>{username}</td></tr><tr><th>Display name</th><td>{name}</td></tr>\
           <tr><th>Email</th><td>{email}</td></tr><tr><th>Role</th><td>{role}</td></tr>\
           <tr><th>Groups</th><td>{groups}</td></tr></table></div>\
         <div class=\"panel\"><h2>Sessions</h2><table><thead><tr><th>Started</th><th>Last seen</th><th>From</th><th>Browser</th><th></th></tr></thead>\
           <tbody>{session_rows}</tbody></table></div>\
         <div class=\"panel\"><h2>API keys</h2><p class=\"muted\">For scripts and tools: send as <span class=\"code\">Authorization: Bearer …</span>. \
           Include the app <span class=\"code\">portcullis-api</span> to use the API.</p>\
           <table><thead><tr><th>Name</th><th>Apps</th><th>Expires</th><th></th></tr></thead><tbody>{key_rows}</tbody></table>\
           {key_form}</div>",
        key_form = key_forms::create_form(&format!("{HERE}/keys"), &csrf, "laptop-cli"),
        username = escape(&identity.username),
        name = escape(&identity.display_name),
        email = escape(identity.email.as_deref().unwrap_or("—")),
        role = identity.role.as_str(),
        groups = escape(&if identity.groups.is_empty() {
            "—".to_owned()
        } else {
            identity.groups.join(", ")
        }),
    );
    let page = Page {
        title: "My account",
        section: "account",
        who: &identity.username,
        admin: identity.role == Role::Admin,
    };
    page.render(StatusCode::OK, &body)
}

pub async fn create_key(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let me = match signed_in(&state, &method, &headers).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &form.csrf) {
        return refused;
    }
    let lifetime = match form.lifetime() {
        Ok(lifetime) => lifetime,
        Err(problem) => return respond::failure(&Failure::bad_request(problem), true),
    };
    let apps = form.apps();
    let created = match state
        .directory
        .create_key(
            &me.identity.username,
            &form.name,
            apps,
            lifetime,
            &from.actor(&me.user_id),
        )
        .await
    {
        Ok(created) => created,
        Err(e) => return respond::failure(&Failure::bad_request(e.to_string()), true),
    };
    state.apply_key_change().await;
    render(&state, &me, Some(&created.secret)).await
}

#[derive(Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let me = match signed_in(&state, &method, &headers).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &form.csrf) {
        return refused;
    }
    let mine = match state.store.keys_of(&me.user_id).await {
        Ok(keys) => keys.iter().any(|k| k.id == id),
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    if !mine {
        return respond::failure(
            &Failure::new(FailureKind::NotFound, "you have no key with that id"),
            true,
        );
    }
    if let Err(e) = state
        .directory
        .revoke_key(&id, &from.actor(&me.user_id))
        .await
    {
        return respond::failure(&Failure::bad_request(e.to_string()), true);
    }
    state.apply_key_change().await;
    location(StatusCode::SEE_OTHER, HERE)
}

pub async fn end_session(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let me = match signed_in(&state, &method, &headers).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &form.csrf) {
        return refused;
    }
    let owned = matches!(state.store.session(&id).await, Ok(Some(s)) if s.user_id == me.user_id);
    if !owned {
        return respond::failure(
            &Failure::new(FailureKind::NotFound, "you have no session with that id"),
            true,
        );
    }
    if let Err(e) = state.sessions.end_by_id(&id).await {
        return respond::failure(&Failure::from(e), true);
    }
    location(StatusCode::SEE_OTHER, HERE)
}
