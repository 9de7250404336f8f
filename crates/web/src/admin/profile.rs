//! The user page's profile panel (username, email, display name, with errors shown inline and
//! the values kept) and deleting a user, after a page that says what deleting ends.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::directory::DirectoryError;
use portcullis_core::Email;
use portcullis_core::user::User;
use portcullis_http::html::escape;
use serde::Deserialize;

use super::user_page::{DetailView, render_detail};
use super::users::user_href;
use super::{FormPost, Page, admin, admin_post, directory_failure, form_token, location};
use crate::csrf::CsrfForm;
use crate::pages::{Field, FieldError};
use crate::state::AppState;

/// What the profile form holds: the user's values, or what was posted when it is shown again.
#[derive(Deserialize, Default, Clone)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub display_name: String,
}

impl ProfileForm {
    pub fn of(user: &User) -> Self {
        ProfileForm {
            csrf: String::new(),
            username: user.username.clone(),
            email: user.email.as_deref().unwrap_or("").to_owned(),
            display_name: user.display_name.clone().unwrap_or_default(),
        }
    }
}

pub(crate) fn panel(
    base: &str,
    csrf: &str,
    values: &ProfileForm,
    error: Option<&FieldError>,
) -> String {
    let field = |id, label, attributes, value: &str| {
        Field {
            id,
            label,
            attributes,
            value,
            hint: None,
        }
        .render(error)
    };
    format!(
        "<div class=\"panel\" id=\"profile-panel\"><h2>Profile</h2>\
           <form method=\"post\" action=\"{base}/profile\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <div class=\"row\"><div>{username}</div><div>{email}</div><div>{display_name}</div></div>\
             <button type=\"submit\" class=\"secondary\" style=\"width:auto\">Save profile</button></form>\
           <p class=\"hint\"><a href=\"{base}/delete\">Delete this user…</a></p></div>",
        username = field(
            "profile_username",
            "Username",
            "required autocomplete=\"off\"",
            &values.username
        ),
        email = field(
            "profile_email",
            "Email",
            "type=\"email\" autocomplete=\"off\"",
            &values.email
        ),
        display_name = field(
            "profile_display_name",
            "Display name",
            "autocomplete=\"off\"",
            &values.display_name
        ),
    )
}

pub async fn save(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<ProfileForm>,
) -> Response {
    let base = user_href(&username);
    let (me, actor) = match admin_post(&state, &post, &base, &form.csrf).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let user = match state.directory.user(&username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    let retry = |error: FieldError| {
        let (form, state, me, username) =
            (form.clone(), state.clone(), me.clone(), username.clone());
        async move {
            let view = DetailView {
                profile: Some(form),
                profile_error: Some(&error),
                ..DetailView::default()
            };
            let mut response = render_detail(&state, &me, &username, &view).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    };
    let email = match Email::parse_optional(Some(&form.email)) {
        Ok(email) => email,
        Err(why) => {
            return retry(FieldError::new(
                "profile_email",
                format!("This is not an email address: {why}."),
            ))
            .await;
        }
    };
    let display_name = Some(form.display_name.trim()).filter(|n| !n.is_empty());
    let new_name = form.username.trim();
    match state
        .directory
        .edit_user(&user, new_name, email.as_ref(), display_name, &actor)
        .await
    {
        Ok(_) => {
            state.apply_user_change(&user.id).await;
            location(
                StatusCode::SEE_OTHER,
                &format!("{}?done=profile", user_href(new_name)),
            )
        }
        Err(DirectoryError::Invalid(why)) => retry(FieldError::new("profile_username", why)).await,
        Err(DirectoryError::Taken(conflict)) => {
            let field = if conflict.to_string().contains("email") {
                "profile_email"
            } else {
                "profile_username"
            };
            retry(FieldError::new(field, format!("{conflict}."))).await
        }
        Err(e) => directory_failure(e),
    }
}

/// The confirmation page: what deleting ends, and the button that does it.
pub async fn confirm(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Response {
    let base = user_href(&username);
    let me = match admin(&state, &method, &headers, &format!("{base}/delete")).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let user = match state.directory.user(&username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    let csrf = form_token(&state, &me);
    let body = format!(
        "<p><a href=\"{base}\">← {name}</a></p><h1>Delete {name}?</h1>\
         <div class=\"panel\"><p>This cannot be undone. {name}'s sessions end at once (open streams close), their API keys stop working, \
         their group memberships and linked identities are removed, and provisioning sinks are told of the deletion. \
         The audit trail keeps the record.</p>\
         <p>To keep the account but stop its access, disable it instead.</p>\
         <form method=\"post\" action=\"{base}/delete\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
           <div class=\"row\"><button type=\"submit\" class=\"danger\">Delete {name}</button>\
           <a class=\"button\" href=\"{base}\" style=\"margin-top:0\">Cancel</a></div></form></div>",
        name = escape(&user.username),
    );
    Page {
        title: "Delete user",
        section: "users",
        who: &me.identity.username,
        admin: true,
    }
    .render(StatusCode::OK, &body)
}

pub async fn delete(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let base = user_href(&username);
    let (_, actor) = match admin_post(&state, &post, &base, &form.csrf).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let user = match state.directory.user(&username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    if let Err(e) = state.directory.delete_user_named(&username, &actor).await {
        return directory_failure(e);
    }
    state.apply_user_change(&user.id).await;
    state.apply_key_change().await;
    location(
        StatusCode::SEE_OTHER,
        "/.portcullis/admin/users?done=deleted",
    )
}
