//! The user page's second-factor panel: what the user has, and the reset an admin does for a
//! lost phone (every factor and recovery code goes; the user sets up a new app at their next
//! step-up or from their account page).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use portcullis_auth::factors::FactorSummary;
use portcullis_core::Failure;
use portcullis_http::html::escape;
use portcullis_http::respond;

use super::users::user_href;
use super::{FormPost, admin_post, directory_failure, location};
use crate::csrf::CsrfForm;
use crate::state::AppState;

pub(crate) fn panel(summary: &FactorSummary, base: &str, csrf: &str) -> String {
    let apps: Vec<String> = summary
        .factors
        .iter()
        .map(|f| format!("{} (since {} UTC)", escape(&f.label), f.created_at.utc()))
        .collect();
    if apps.is_empty() {
        return "<div class=\"panel\" id=\"factors-panel\"><h2>Second factors</h2>\
                <p class=\"muted\">None: signs in without a second factor, and sets one up where an app needs it.</p></div>"
            .to_owned();
    }
    format!(
        "<div class=\"panel\" id=\"factors-panel\"><h2>Second factors</h2>\
         <p>{apps}. Recovery codes left: {left}.</p>\
         <details><summary>Reset second factors…</summary>\
         <form method=\"post\" action=\"{base}/factors/reset\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p class=\"hint\">For a lost phone or key: every authenticator app, passkey and recovery code of this user stops working. \
         Check who is asking first; the user then signs in with the password alone, and sets up a new app.</p>\
         <button type=\"submit\" class=\"danger\">Reset second factors</button></form></details></div>",
        apps = apps.join(", "),
        left = summary.recovery_codes_left,
    )
}

pub async fn reset(
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
    match state.directory.reset_factors(&user, &actor).await {
        Ok(_) => location(StatusCode::SEE_OTHER, &format!("{base}?done=factors")),
        Err(e) => respond::failure(&Failure::from(e), true),
    }
}
