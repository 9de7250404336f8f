//! `/.portcullis/account`: a signed-in person's own profile, sessions and API keys.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::ActiveSession;
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use serde::Deserialize;

use crate::admin::{Page, csrf_refusal, form_token, location};
use crate::csrf::CsrfForm;
use crate::key_forms::{self, KeyForm};
use crate::pages::{self, FieldError, NewPasswordForm};
use crate::passwords::{self, NewPasswordBody, Refusal};
use crate::state::{AppState, ClientAddr};
use portcullis_auth::directory::KeepSessions;

const HERE: &str = "/.portcullis/account";

async fn signed_in(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<ActiveSession>, Response> {
    signed_in_at(state, method, headers, HERE).await
}

/// The session of a page of one's own at `here`, or the way to sign in and come back.
pub(crate) async fn signed_in_at(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    here: &str,
) -> Result<std::sync::Arc<ActiveSession>, Response> {
    match crate::sign_in::signed_in(state, headers).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(respond::sign_in_required(method, here, true)),
        Err(failure) => Err(respond::failure(&failure, true)),
    }
}

#[derive(Deserialize, Default)]
pub struct AccountQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<AccountQuery>,
) -> Response {
    let notice = match query.done.as_deref() {
        Some("password") => Some("Your password has been changed; your other sessions have ended."),
        Some("factor") => Some("Your authenticator app is set up."),
        Some("factor_removed") => Some("The factor has been removed."),
        Some("passkey") => Some("Your passkey is added."),
        Some("grant_revoked") => Some("The client is disconnected; its access has ended."),
        _ => None,
    };
    match signed_in(&state, &method, &headers).await {
        Ok(me) => {
            let view = View {
                notice,
                ..View::default()
            };
            render(&state, &me, &view).await
        }
        Err(refused) => refused,
    }
}

/// What a render of the page shows beyond the account itself.
#[derive(Default)]
pub(crate) struct View<'a> {
    /// A key just created, shown once.
    pub new_key: Option<&'a str>,
    pub notice: Option<&'a str>,
    /// What was wrong with a password change.
    pub password_error: Option<&'a FieldError>,
    /// What was wrong with a change to the second factors.
    pub factor_error: Option<&'a FieldError>,
}

pub(crate) async fn render(state: &AppState, me: &ActiveSession, view: &View<'_>) -> Response {
    let new_key = view.new_key;
    let identity = &me.identity;
    // A directory that cannot be read gets a clear page, not empty lists.
    let (sessions, keys, grants) = match tokio::try_join!(
        state.store.sessions_of(&me.user_id),
        state.store.keys_of(&me.user_id),
        state.store.grants_of(&me.user_id)
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
    let notice = view
        .notice
        .map(|n| format!("<div class=\"notice\" role=\"status\">{}</div>", escape(n)))
        .unwrap_or_default();
    let password_panel = password_panel(state, me, &csrf, view.password_error).await;
    let factors_panel = crate::account_factors::panel(state, me, &csrf, view.factor_error).await;
    let body = format!(
        "<h1>My account</h1>{notice}{new_key}\
         <div class=\"panel\"><table>\
           <tr><th>Username</th><td>{username}</td></tr><tr><th>Display name</th><td>{name}</td></tr>\
           <tr><th>Email</th><td>{email}</td></tr><tr><th>Role</th><td>{role}</td></tr>\
           <tr><th>Groups</th><td>{groups}</td></tr></table></div>{password_panel}{factors_panel}\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Sessions\"><h2>Sessions</h2><table><thead><tr><th>Started</th><th>Last seen</th><th>From</th><th>Browser</th><th></th></tr></thead>\
           <tbody>{session_rows}</tbody></table></div>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"API keys\"><h2>API keys</h2><p class=\"muted\">For scripts and tools: send as <span class=\"code\">Authorization: Bearer …</span>.</p>\
           <table><thead><tr><th>Name</th><th>Apps</th><th>Expires</th><th></th></tr></thead><tbody>{key_rows}</tbody></table>\
           {key_form}</div>{grants_panel}",
        grants_panel = crate::grants_panel::panel(&grants, HERE, &csrf),
        key_form = key_forms::create_form(&format!("{HERE}/keys"), &csrf, "laptop-cli"),
        session_rows = rows_or(session_rows, 5, "No sessions."),
        key_rows = rows_or(key_rows, 4, "No API keys yet."),
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
            &from.actor(&me.user_id).with_second_factor(me.mfa()),
        )
        .await
    {
        Ok(created) => created,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    state.apply_key_change().await;
    let view = View {
        new_key: Some(&created.secret),
        ..View::default()
    };
    render(&state, &me, &view).await
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

/// The change-password form, for accounts with a Portcullis password.
async fn password_panel(
    state: &AppState,
    me: &ActiveSession,
    csrf: &str,
    error: Option<&FieldError>,
) -> String {
    let has_password =
        matches!(state.store.user_by_id(&me.user_id).await, Ok(Some(u)) if u.has_password);
    if !has_password {
        return String::new();
    }
    let hidden = [("csrf", csrf)];
    let form = NewPasswordForm {
        action: "/.portcullis/account/password",
        hidden: &hidden,
        ask_current: true,
        min_length: state.local_login.policy().min_length(),
        error,
        button: "Change password",
    };
    format!(
        "<div class=\"panel\" id=\"password-panel\"><h2>Password</h2>\
         <p class=\"muted\">Changing it ends your sessions in other browsers; this one stays signed in.</p>{}</div>",
        pages::new_password_fields(&form)
    )
}

pub async fn change_password(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Form(body): Form<NewPasswordBody>,
) -> Response {
    let me = match signed_in(&state, &method, &headers).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &body.csrf) {
        return refused;
    }
    let user = match state.store.user_by_id(&me.user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return respond::sign_in_required(&method, HERE, true),
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let checked =
        match passwords::check_current(&state, &user, &body.current_password, from.0.as_deref())
            .await
        {
            Ok(()) => passwords::new_hash(&state, &user, &body).await,
            Err(refusal) => Err(refusal),
        };
    let hash = match checked {
        Ok(hash) => hash,
        Err(Refusal::Field(error)) => {
            let view = View {
                password_error: Some(&error),
                ..View::default()
            };
            let mut response = render(&state, &me, &view).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
        Err(Refusal::Failure(failure)) => return respond::failure(&failure, true),
    };
    let actor = from.actor(&me.user_id);
    if let Err(e) = state
        .directory
        .set_password(
            &user,
            Some(&hash),
            false,
            KeepSessions::This(&me.id_hash),
            &actor,
        )
        .await
    {
        return respond::failure(&Failure::from(e), true);
    }
    state.apply_user_change(&user.id).await;
    location(StatusCode::SEE_OTHER, &format!("{HERE}?done=password"))
}
