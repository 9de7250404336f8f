//! Users: the searchable, paged list and adding a user. One user's page is in `user_page`, the
//! changes an admin makes there in `user_changes`.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::directory::AddUser;
use portcullis_core::Email;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Failure, Role};
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use super::{FormPost, Page, admin, admin_post, directory_failure, form_token, location, notice};
use crate::state::AppState;

const PAGE_SIZE: u32 = 25;

pub(crate) fn status_badge(status: UserStatus) -> String {
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
