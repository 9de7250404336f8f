//! The one-time setup link: `/.portcullis/setup?token=…` creates the first admin.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_auth::audit::Actor;
use portcullis_auth::directory::{AddUser, DirectoryError};
use portcullis_auth::session::SessionOrigin;
use portcullis_core::Email;
use portcullis_core::user::validate_username;
use portcullis_core::{Failure, Role};
use portcullis_http::cookies;
use portcullis_http::respond::{self, html_response};
use serde::Deserialize;

use crate::csrf;
use crate::pages::{self, SetupForm};
use crate::sign_in::{start_session, user_agent};
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize, Default)]
pub struct SetupBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

fn closed_or_wrong(state: &AppState) -> Response {
    if state.setup.is_open() {
        html_response(
            StatusCode::FORBIDDEN,
            pages::message(
                "This setup link is not valid",
                "Use the exact link Portcullis printed at start-up. A restart prints a new one.",
                None,
            ),
        )
    } else {
        html_response(
            StatusCode::NOT_FOUND,
            pages::message(
                "Setup is complete",
                "An administrator account already exists.",
                Some(("/.portcullis/sign_in", "Go to sign-in")),
            ),
        )
    }
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: SetupForm<'_>,
) -> Response {
    let (token, set_cookie) = csrf::token_for_form(headers, state.settings.cookie_secure);
    let mut response = html_response(
        status,
        pages::setup(&SetupForm {
            csrf: &token,
            ..form
        }),
    );
    if let Some(cookie) = set_cookie {
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SetupQuery>,
) -> Response {
    if !state.setup.matches(&query.token) {
        return closed_or_wrong(&state);
    }
    let form = SetupForm {
        csrf: "",
        token: &query.token,
        username: "",
        email: "",
        display_name: "",
        error: None,
    };
    render(&state, &headers, StatusCode::OK, form)
}

fn validate(state: &AppState, body: &SetupBody) -> Result<(), String> {
    validate_username(body.username.trim())?;
    let names = [body.username.as_str(), body.email.as_str()];
    state.local_login.policy().check(&body.password, &names)?;
    if body.password != body.confirm {
        return Err("the two passwords differ".into());
    }
    Email::parse_optional(Some(&body.email))
        .map_err(|why| format!("the email address is not valid: {why}"))?;
    Ok(())
}

/// `problem` as a sentence: capitalised, with a full stop (policy messages already are).
fn sentence(problem: &str) -> String {
    let mut out = problem.trim_end_matches('.').to_owned();
    out.push('.');
    out
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<SetupBody>,
) -> Response {
    if !state.setup.matches(&body.token) {
        return closed_or_wrong(&state);
    }
    let retry = |error: &str| {
        let form = SetupForm {
            csrf: "",
            token: &body.token,
            username: &body.username,
            email: &body.email,
            display_name: &body.display_name,
            error: Some(error),
        };
        render(&state, &headers, StatusCode::BAD_REQUEST, form)
    };
    if !csrf::verify(&headers, &body.csrf) {
        return retry("This form expired; please submit it again.");
    }
    if let Err(problem) = validate(&state, &body) {
        return retry(&format!("Please fix this: {}", sentence(&problem)));
    }
    let password_hash = match state.local_login.hasher().hash(&body.password).await {
        Ok(hash) => hash,
        Err(e) => return respond::failure(&Failure::internal(e.to_string()), true),
    };
    let optional = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let first_admin = AddUser {
        username: body.username.trim().to_owned(),
        // Checked by `validate` above.
        email: Email::parse_optional(Some(&body.email)).ok().flatten(),
        display_name: optional(&body.display_name),
        role: Role::Admin,
        password_hash: Some(password_hash),
    };
    let actor = Actor::new("setup-link", Some(client_ip.clone()));
    let user = match state.directory.add_first_admin(first_admin, &actor).await {
        Ok(user) => user,
        Err(DirectoryError::Taken(_)) => {
            state.setup.close();
            return closed_or_wrong(&state);
        }
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    state.setup.close();
    let origin = SessionOrigin {
        client_ip: Some(client_ip),
        user_agent: user_agent(&headers),
        amr: vec![crate::sign_in::AMR_PASSWORD.to_owned()],
        ..SessionOrigin::default()
    };
    start_session(
        &state,
        &user,
        origin,
        "setup_link",
        "/",
        StatusCode::SEE_OTHER,
    )
    .await
}
