//! One user's page: profile, access, password, second factors, sessions, identities,
//! provisioning and keys, each panel with its forms.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::user::UserStatus;
use portcullis_core::{Failure, Role};
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use portcullis_store::StoredKey;
use serde::Deserialize;

use portcullis_auth::ActiveSession;

use super::{Page, admin, directory_failure, form_token, notice};
use crate::key_forms::{self};
use crate::pages::FieldError;
use crate::state::AppState;

use super::users::{status_badge, user_href};

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(username): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let here = format!("/.portcullis/admin/users/{username}");
    let me = match admin(&state, &method, &headers, &here).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let view = DetailView {
        notice: notice(query.done.as_deref()),
        ..DetailView::default()
    };
    render_detail(&state, &me, &username, &view).await
}

/// What a render of the user page shows beyond the user.
#[derive(Default)]
pub(crate) struct DetailView<'a> {
    pub notice: &'a str,
    /// A secret shown once (a new key, a reset link), as HTML.
    pub shown_once: String,
    /// What was wrong with the password form.
    pub password_error: Option<&'a FieldError>,
    /// The profile form as posted, when it is shown again with an error.
    pub profile: Option<super::profile::ProfileForm>,
    pub profile_error: Option<&'a FieldError>,
}

/// The user page.
pub(crate) async fn render_detail(
    state: &AppState,
    me: &ActiveSession,
    username: &str,
    view: &DetailView<'_>,
) -> Response {
    let notice = view.notice;
    let user = match state.directory.user(username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    let keys = match state.directory.keys_of(username).await {
        Ok(keys) => keys,
        Err(e) => return directory_failure(e),
    };
    let grants = match state.directory.grants_of(username).await {
        Ok(grants) => grants,
        Err(e) => return directory_failure(e),
    };
    let (sessions, identities, deliveries, factors) = match tokio::try_join!(
        state.store.sessions_of(&user.id),
        state.store.identities_of(&user.id),
        state.store.deliveries_of_user(&user.id),
        state.factors.summary(&user.id)
    ) {
        Ok(found) => found,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let csrf = form_token(state, me);
    let base = user_href(&user.username);
    let session_rows: String = sessions
        .iter()
        .map(|s| session_row(s, &base, &csrf))
        .collect();
    let identity_rows: String = identities
        .iter()
        .map(|i| {
            format!(
                "<tr><td>{}</td><td class=\"code\">{}</td><td class=\"code\">{}</td><td>{}</td></tr>",
                escape(&i.provider),
                escape(&i.issuer),
                escape(&i.subject),
                escape(i.email.as_deref().unwrap_or("—"))
            )
        })
        .collect();
    let notice = if notice.is_empty() {
        String::new()
    } else {
        format!("<div class=\"notice\" role=\"status\">{notice}</div>")
    };
    let new_key = &view.shown_once;
    let password_panel = super::passwords::panel(state, &user, &base, &csrf, view.password_error);
    let factors_panel = super::factors::panel(&factors, &base, &csrf);
    let profile_values = view
        .profile
        .clone()
        .unwrap_or_else(|| super::profile::ProfileForm::of(&user));
    let profile_panel = super::profile::panel(&base, &csrf, &profile_values, view.profile_error);
    let (toggle_status, toggle_label, toggle_class) = match user.status {
        UserStatus::Active => ("disabled", "Disable user", "danger"),
        _ => ("active", "Enable user", ""),
    };
    let role_options: String = [Role::User, Role::Admin, Role::Pending]
        .iter()
        .map(|r| {
            let selected = if *r == user.role { " selected" } else { "" };
            format!("<option{selected}>{}</option>", r.as_str())
        })
        .collect();
    let key_rows: String = keys.iter().map(|k| key_row(k, &base, &csrf)).collect();
    let provisioning_rows: String = if deliveries.is_empty() {
        "<tr><td colspan=\"5\" class=\"muted\">No sink configured, or nothing to deliver yet.</td></tr>".into()
    } else {
        deliveries.iter().map(provisioning_row).collect()
    };
    let body = format!(
        "<p><a href=\"/.portcullis/admin/users\">← All users</a></p><h1>{username}</h1>{notice}{new_key}\
         <div class=\"panel\"><table>\
           <tr><th>Display name</th><td>{name}</td></tr><tr><th>Email</th><td>{email}</td></tr>\
           <tr><th>Role</th><td>{role}</td></tr><tr><th>Status</th><td>{status}</td></tr>\
           <tr><th>Groups</th><td>{groups}</td></tr><tr><th>Id</th><td class=\"code\">{id}</td></tr>\
           <tr><th>Created</th><td>{created}</td></tr><tr><th>Last seen</th><td>{last_seen}</td></tr></table></div>\
         <div class=\"panel\"><h2>Access</h2><div class=\"row\">\
           <form method=\"post\" action=\"{base}/role\" class=\"row\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <div><label for=\"role\">Role</label><select id=\"role\" name=\"role\">{role_options}</select></div>\
             <button type=\"submit\" class=\"secondary\">Change role</button></form>\
           <form method=\"post\" action=\"{base}/groups\" class=\"row\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <div><label for=\"group\">Add to group</label><input id=\"group\" name=\"group\" required></div>\
             <button type=\"submit\" class=\"secondary\">Add</button></form>\
           <form method=\"post\" action=\"{base}/status\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"status\" value=\"{toggle_status}\">\
             <button type=\"submit\" class=\"{toggle_class}\">{toggle_label}</button></form>\
         </div></div>{profile_panel}{password_panel}{factors_panel}\
         <div class=\"panel\"><h2>Sessions</h2><table><thead><tr><th>Started</th><th>Last seen</th><th>From</th><th>Browser</th><th>Via</th><th></th></tr></thead>\
           <tbody>{session_rows}</tbody></table>\
           <form method=\"post\" action=\"{base}/sessions/end-all\" style=\"margin-top:14px\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"secondary\" style=\"width:auto\">End all sessions</button></form></div>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Linked identities\"><h2>Linked identities</h2><table><thead><tr><th>Provider</th><th>Issuer</th><th>Subject</th><th>Email</th></tr></thead>\
           <tbody>{identity_rows}</tbody></table></div>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Provisioning\"><h2>Provisioning</h2><table><thead><tr><th>Sink</th><th>Last event</th><th>State</th><th>Attempts</th><th>Last error</th></tr></thead>\
           <tbody>{provisioning_rows}</tbody></table></div>\
         <div class=\"panel\"><h2>API keys</h2><table><thead><tr><th>Name</th><th>Apps</th><th>Expires</th><th>Last used</th><th>State</th><th></th></tr></thead>\
           <tbody>{key_rows}</tbody></table>\
           {key_form}</div>{grants_panel}",
        grants_panel = crate::grants_panel::panel(&grants, &base, &csrf),
        key_form = key_forms::create_form(&format!("{base}/keys"), &csrf, "ci-pipeline"),
        session_rows = rows_or(session_rows, 6, "No sessions: not signed in anywhere."),
        identity_rows = rows_or(
            identity_rows,
            4,
            "No linked identities: signs in with a Portcullis password only."
        ),
        key_rows = rows_or(key_rows, 6, "No API keys."),
        username = escape(&user.username),
        name = escape(user.display_name.as_deref().unwrap_or("—")),
        email = escape(user.email.as_deref().unwrap_or("—")),
        role = user.role.as_str(),
        created = when(Some(user.created_at)),
        last_seen = when(user.last_seen),
        status = status_badge(user.status),
        groups = escape(&if user.groups.is_empty() {
            "—".to_owned()
        } else {
            user.groups.join(", ")
        }),
        id = escape(&user.id),
    );
    Page {
        title: &user.username,
        section: "users",
        who: &me.identity.username,
        admin: true,
    }
    .render(StatusCode::OK, &body)
}

fn provisioning_row(d: &portcullis_store::Delivery) -> String {
    let badge = match d.state.as_str() {
        "delivered" => "ok",
        "pending" => "warn",
        _ => "bad",
    };
    format!(
        "<tr><td>{sink}</td><td>{event}</td><td><span class=\"badge {badge}\">{state}</span></td><td>{attempts}</td><td class=\"code\">{error}</td></tr>",
        sink = escape(&d.sink),
        event = escape(&d.kind),
        state = escape(&d.state),
        attempts = d.attempts,
        error = escape(d.last_error.as_deref().unwrap_or("")),
    )
}

fn when(t: Option<portcullis_core::Timestamp>) -> String {
    t.map(|t| format!("<span class=\"code\">{} UTC</span>", t.utc()))
        .unwrap_or_else(|| "—".to_owned())
}

fn session_row(s: &portcullis_core::session::Session, base: &str, csrf: &str) -> String {
    let agent: String = s
        .user_agent
        .as_deref()
        .unwrap_or("—")
        .chars()
        .take(60)
        .collect();
    format!(
        "<tr><td>{started}</td><td>{seen}</td><td class=\"code\">{ip}</td><td>{agent}</td><td>{via}</td>\
         <td><form method=\"post\" action=\"{base}/sessions/{id}/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" class=\"secondary\">End</button></form></td></tr>",
        started = when(Some(s.created_at)),
        seen = when(Some(s.last_seen)),
        ip = escape(s.client_ip.as_deref().unwrap_or("—")),
        agent = escape(&agent),
        via = escape(&format!(
            "{}{}",
            s.provider
                .as_ref()
                .map_or("password", |p| p.provider.as_str()),
            if s.amr.iter().any(|m| m == portcullis_core::session::AMR_MFA) {
                " + second factor"
            } else {
                ""
            }
        )),
        id = escape(&s.id_hash),
    )
}

fn key_row(k: &StoredKey, base: &str, csrf: &str) -> String {
    let action = if k.revoked_at.is_some() {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"{base}/keys/{id}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"secondary\" aria-label=\"Revoke {name}\">Revoke</button></form>",
            id = escape(&k.id),
            name = escape(&k.name),
        )
    };
    let state = if k.revoked_at.is_some() {
        "<span class=\"badge bad\">revoked</span>"
    } else {
        "<span class=\"badge ok\">active</span>"
    };
    let apps = if k.allowed_apps.is_empty() {
        "all".to_owned()
    } else {
        k.allowed_apps.join(", ")
    };
    format!(
        "<tr><td>{name}</td><td>{apps}</td><td>{expires}</td><td>{used}</td><td>{state}</td><td>{action}</td></tr>",
        name = escape(&k.name),
        apps = escape(&apps),
        expires = when(k.expires_at),
        used = when(k.last_used_at),
    )
}
