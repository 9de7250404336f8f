//! The user page's password panel: an admin sets a password (optionally to be changed at the
//! next sign-in) or makes a one-time reset link, shown once.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use portcullis_auth::directory::KeepSessions;
use portcullis_core::user::User;
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use super::user_page::{DetailView, render_detail};
use super::users::user_href;
use super::{FormPost, admin_post, directory_failure, location};
use crate::pages::{Field, FieldError};
use crate::passwords::reset_url;
use crate::state::AppState;

pub(crate) fn panel(
    state: &AppState,
    user: &User,
    base: &str,
    csrf: &str,
    error: Option<&FieldError>,
) -> String {
    let min = state.local_login.policy().min_length();
    let attributes =
        format!("type=\"password\" autocomplete=\"new-password\" required minlength=\"{min}\"");
    let password = Field {
        id: "new_password",
        label: "New password",
        attributes: &attributes,
        value: "",
        hint: Some("new-password-hint"),
    }
    .render(error);
    let has = if user.has_password {
        if user.must_change_password {
            "Has a password, to be changed at the next sign-in."
        } else {
            "Has a password."
        }
    } else {
        "No Portcullis password (signs in through a provider or LDAP, or not yet)."
    };
    format!(
        "<div class=\"panel\" id=\"password-panel\"><h2>Password</h2><p class=\"muted\">{has} Setting one ends the user's sessions.</p>\
           <form method=\"post\" action=\"{base}/password\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{password}\
             <p class=\"hint\" id=\"new-password-hint\">At least {min} characters; very common passwords are refused.</p>\
             <label class=\"check\"><input type=\"checkbox\" name=\"must_change\" value=\"on\" checked> Must change it at the next sign-in</label>\
             <button type=\"submit\" class=\"secondary\">Set password</button></form>\
           <form method=\"post\" action=\"{base}/reset-link\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p class=\"hint\">Or make a one-time link with which they choose a password themselves ({lifetime}).</p>\
             <button type=\"submit\" class=\"secondary\">Create reset link</button>{mail}</form></div>",
        lifetime = in_words(state.settings.reset_link_lifetime),
        mail = match (&state.mailer, &user.email) {
            (Some(_), Some(to)) => format!(
                "<button type=\"submit\" name=\"send\" value=\"email\" class=\"secondary\">Email a reset link to {}</button>",
                escape(to)
            ),
            _ => String::new(),
        },
    )
}

/// "valid for 1 hour", "valid for 30 minutes", "valid for 2 days".
fn in_words(lifetime: std::time::Duration) -> String {
    let secs = lifetime.as_secs();
    let (n, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s => (s.div_ceil(60), "minute"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("valid for {n} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn lifetimes_in_words() {
        assert_eq!(
            super::in_words(Duration::from_secs(3600)),
            "valid for 1 hour"
        );
        assert_eq!(
            super::in_words(Duration::from_secs(1800)),
            "valid for 30 minutes"
        );
        assert_eq!(
            super::in_words(Duration::from_secs(172_800)),
            "valid for 2 days"
        );
        assert_eq!(
            super::in_words(Duration::from_secs(5400)),
            "valid for 90 minutes"
        );
    }
}

#[derive(Deserialize, Default)]
pub struct SetPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    must_change: Option<String>,
}

pub async fn set(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<SetPasswordForm>,
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
    let names = [user.username.as_str(), user.email.as_deref().unwrap_or("")];
    let hash = match state.local_login.hash_new(&form.new_password, &names).await {
        Ok(hash) => hash,
        Err(failure) if failure.kind == portcullis_core::FailureKind::BadRequest => {
            let error = FieldError::new("new_password", failure.message);
            let view = DetailView {
                password_error: Some(&error),
                ..DetailView::default()
            };
            let mut response = render_detail(&state, &me, &username, &view).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
        Err(failure) => return respond::failure(&failure, true),
    };
    let must_change = form.must_change.is_some();
    if let Err(e) = state
        .directory
        .set_password(&user, Some(&hash), must_change, KeepSessions::None, &actor)
        .await
    {
        return directory_failure(e);
    }
    state.apply_user_change(&user.id).await;
    location(StatusCode::SEE_OTHER, &format!("{base}?done=password"))
}

#[derive(Deserialize, Default)]
pub struct ResetLinkForm {
    #[serde(default)]
    csrf: String,
    /// `email`: mail the link instead of showing it.
    #[serde(default)]
    send: Option<String>,
}

pub async fn reset_link(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<ResetLinkForm>,
) -> Response {
    let base = user_href(&username);
    let (me, actor) = match admin_post(&state, &post, &base, &form.csrf).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let by_mail = form.send.as_deref() == Some("email");
    let user = match state.directory.user(&username).await {
        Ok(user) => user,
        Err(e) => return directory_failure(e),
    };
    if by_mail && let Err(failure) = crate::passwords::mail_route(&state, &user) {
        return respond::failure(&failure, true);
    }
    let lifetime = state.settings.reset_link_lifetime;
    let issued = match state
        .directory
        .issue_reset_link(&username, lifetime, &actor)
        .await
    {
        Ok(issued) => issued,
        Err(e) => return directory_failure(e),
    };
    if by_mail {
        return match crate::passwords::email_reset_link(&state, &user, &issued, &actor).await {
            Ok(_) => location(StatusCode::SEE_OTHER, &format!("{base}?done=reset_sent")),
            Err(failure) => respond::failure(&failure, true),
        };
    }
    let url = reset_url(&state.settings.public_url, &issued.token);
    let view = DetailView {
        shown_once: format!(
            "<div class=\"panel\"><h2>Reset link</h2><p>Send it to {user} over a channel you trust. It works once, until {until} UTC, \
             and is not shown again.</p><div class=\"secret\" id=\"reset-link\">{url}</div>{copy}</div>",
            user = escape(&username),
            until = issued.expires_at.utc(),
            url = escape(&url),
            copy = portcullis_http::html::copy_button("reset-link", "the reset link"),
        ),
        ..DetailView::default()
    };
    render_detail(&state, &me, &username, &view).await
}
