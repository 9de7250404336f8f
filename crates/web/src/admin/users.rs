//! Users: the searchable, paged list; one user's details and the changes an admin can make.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::{AddUser, DirectoryError};
use portcullis_core::Email;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Failure, FailureKind, Role};
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use portcullis_store::StoredKey;
use serde::Deserialize;

use portcullis_auth::ActiveSession;

use super::{FormPost, Page, admin, admin_post, directory_failure, form_token, location, notice};
use crate::csrf::CsrfForm;
use crate::key_forms::{self, KeyForm};
use crate::pages::FieldError;
use crate::state::AppState;

const PAGE_SIZE: u32 = 25;

fn status_badge(status: UserStatus) -> String {
    let class = match status {
        UserStatus::Active => "ok",
        UserStatus::Disabled => "bad",
        UserStatus::PendingApproval => "",
    };
    format!(
        "<span class=\"badge {class}\">{}</span>",
        status.as_str().replace('_', " ")
    )
}

pub(crate) fn user_href(username: &str) -> String {
    format!("/.portcullis/admin/users/{}", escape(username))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: u32,
    #[serde(default)]
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let me = match admin(&state, &method, &headers, "/.portcullis/admin/users").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (users, total) = match state
        .directory
        .find_users(search, query.offset, PAGE_SIZE)
        .await
    {
        Ok(found) => found,
        Err(e) => return directory_failure(e),
    };
    let csrf = form_token(&state, &me);
    let rows: String = users.iter().map(user_row).collect();
    let q = escape(search.unwrap_or(""));
    let q_param = search
        .map(|s| format!("&q={}", percent(s)))
        .unwrap_or_default();
    let first = u64::from(query.offset) + 1;
    let last = u64::from(query.offset) + users.len() as u64;
    let prev = (query.offset > 0).then(|| {
        format!(
            "<a href=\"?offset={}{q_param}\">← Previous</a>",
            query.offset.saturating_sub(PAGE_SIZE)
        )
    });
    let next = (last < total).then(|| {
        format!(
            "<a href=\"?offset={}{q_param}\">Next →</a>",
            query.offset + PAGE_SIZE
        )
    });
    let range = if users.is_empty() {
        "No users match.".to_owned()
    } else {
        format!("{first}–{last} of {total}")
    };
    let notice = match notice(query.done.as_deref()) {
        "" => String::new(),
        text => format!("<div class=\"notice\" role=\"status\">{text}</div>"),
    };
    let body = format!(
        "<h1>Users</h1>{notice}\
         <form class=\"panel row\" method=\"get\" action=\"/.portcullis/admin/users\" role=\"search\">\
           <div><label for=\"q\">Search by name or email</label><input id=\"q\" name=\"q\" value=\"{q}\"></div>\
           <button type=\"submit\">Search</button></form>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Users\"><table><thead><tr><th>Username</th><th>Name</th><th>Email</th><th>Role</th><th>Status</th><th>Groups</th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <div class=\"pager\"><span>{prev}</span><span>{range}</span><span>{next}</span></div></div>\
         <form class=\"panel\" method=\"post\" action=\"/.portcullis/admin/users\"><h2>Add a user</h2>\
           <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
           <div class=\"row\">\
             <div><label for=\"username\">Username</label><input id=\"username\" name=\"username\" required></div>\
             <div><label for=\"display_name\">Display name</label><input id=\"display_name\" name=\"display_name\"></div>\
             <div><label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\"></div>\
           </div><div class=\"row\">\
             <div><label for=\"role\">Role</label><select id=\"role\" name=\"role\"><option>user</option><option>admin</option><option>pending</option></select></div>\
             <div><label for=\"password\">Password (optional, 8+ characters)</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\"></div>\
             <button type=\"submit\">Add user</button>\
           </div></form>",
        prev = prev.unwrap_or_default(),
        next = next.unwrap_or_default(),
    );
    Page {
        title: "Users",
        section: "users",
        who: &me.identity.username,
        admin: true,
    }
    .render(StatusCode::OK, &body)
}

fn user_row(u: &User) -> String {
    format!(
        "<tr><td><a href=\"{href}\">{username}</a></td><td>{name}</td><td>{email}</td><td>{role}</td><td>{status}</td><td>{groups}</td></tr>",
        href = user_href(&u.username),
        username = escape(&u.username),
        name = escape(u.display_name.as_deref().unwrap_or("")),
        email = escape(u.email.as_deref().unwrap_or("")),
        role = u.role.as_str(),
        status = status_badge(u.status),
        groups = escape(&u.groups.join(", ")),
    )
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

fn optional(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub async fn create(
    State(state): State<AppState>,
    post: FormPost,
    Form(form): Form<CreateForm>,
) -> Response {
    let actor = match admin_post(&state, &post, "/.portcullis/admin/users", &form.csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    let password_hash = if form.password.is_empty() {
        None
    } else {
        let names = [form.username.as_str(), form.email.as_str()];
        match state.local_login.hash_new(&form.password, &names).await {
            Ok(hash) => Some(hash),
            Err(failure) => return respond::failure(&failure, true),
        }
    };
    let email = match Email::parse_optional(Some(&form.email)) {
        Ok(email) => email,
        Err(why) => return respond::failure(&Failure::from(why), true),
    };
    let add = AddUser {
        username: form.username.trim().to_owned(),
        email,
        display_name: optional(&form.display_name),
        role: Role::parse(&form.role).unwrap_or(Role::User),
        password_hash,
    };
    match state.directory.add_user(add, &actor).await {
        Ok(user) => location(
            StatusCode::SEE_OTHER,
            &format!("{}?done=created", user_href(&user.username)),
        ),
        Err(e) => directory_failure(e),
    }
}

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
           {key_form}</div>",
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
