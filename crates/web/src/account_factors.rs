//! A person's own second factors, from the account page: set up an authenticator app, add a
//! passkey, remove one, make new recovery codes. Removing a factor takes a recent
//! re-authentication (a session proved with a second factor in the last ten minutes, or a
//! current code: a session left open must not be enough to take a factor off); renewing the
//! codes takes a current code; adding one to an account that has a factor takes a session
//! proved with one.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::ActiveSession;
use portcullis_auth::factors::{AMR_OTP, AMR_PASSKEY, FactorError, TotpEnrolment};
use portcullis_core::Role;
use portcullis_core::user::User;
use portcullis_core::{Failure, FailureKind};
use portcullis_http::respond::{self, Challenge};
use serde::Deserialize;

use crate::account::{self, View};
use crate::admin::{Page, csrf_refusal, form_token, location};
use crate::factor_pages::{self, ENROL_PATH, EnrolView};
use crate::factors::CodeBody;
use crate::pages::FieldError;
use crate::sign_in::{set_session_cookie, throttled};
use crate::state::{AppState, ClientAddr};

const ACCOUNT: &str = "/.portcullis/account";
/// How long after proving a second factor a session counts as freshly re-authenticated.
const RECENT: i64 = 600;

/// Whether `me` proved a second factor within [`RECENT`] seconds (a step-up makes a new
/// session, so its start is when the factor was proved).
fn recently_proved(state: &AppState, me: &ActiveSession) -> bool {
    me.mfa() && state.clock.now().0 - me.created_at.0 < RECENT
}

#[derive(Deserialize, Default)]
pub struct RdQuery {
    #[serde(default)]
    rd: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct EnrolBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sealed: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    rd: Option<String>,
}

/// The signed-in person and their account, or the response that turns the request away.
async fn me_and_user(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    here: &str,
) -> Result<(std::sync::Arc<ActiveSession>, User), Response> {
    let me = account::signed_in_at(state, method, headers, here).await?;
    match state.store.user_by_id(&me.user_id).await {
        Ok(Some(user)) => Ok((me, user)),
        Ok(None) => Err(respond::sign_in_required(method, here, true)),
        Err(e) => Err(respond::failure(&Failure::from(e), true)),
    }
}

/// An account that has a factor adds another only from a session proved with one: otherwise
/// whoever has the password alone (or the provider account) could add their own.
async fn needs_step_up_first(
    state: &AppState,
    me: &ActiveSession,
    method: &Method,
    here: &str,
) -> Option<Response> {
    if me.mfa() {
        return None;
    }
    match state.factors.has_factor(&me.user_id).await {
        Ok(false) => None,
        Ok(true) => {
            let location = respond::challenge_location(Challenge::StepUp, here);
            Some(respond::challenge_at(
                Challenge::StepUp,
                method,
                &location,
                true,
            ))
        }
        Err(e) => Some(respond::failure(&Failure::from(e), true)),
    }
}

/// The QR code of an `otpauth://` link, as inline SVG (the page's CSP loads nothing else).
fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(192, 192)
            .quiet_zone(true)
            .build(),
        // A link of a hundred-odd bytes always fits a QR code; the key below still works.
        Err(_) => String::new(),
    }
}

struct EnrolPage<'a> {
    enrolment: &'a TotpEnrolment,
    label: &'a str,
    return_to: &'a str,
    error: Option<&'a FieldError>,
}

fn render_enrol(
    state: &AppState,
    me: &ActiveSession,
    status: StatusCode,
    page: &EnrolPage<'_>,
) -> Response {
    let csrf = form_token(state, me);
    let qr = qr_svg(&page.enrolment.uri);
    let body = factor_pages::enrol_body(&EnrolView {
        csrf: &csrf,
        sealed: &page.enrolment.sealed,
        secret: &page.enrolment.secret,
        qr_svg: &qr,
        label: page.label,
        return_to: page.return_to,
        error: page.error,
    });
    Page {
        title: "Set up an authenticator app",
        section: "account",
        who: &me.identity.username,
        admin: me.identity.role == Role::Admin,
    }
    .render(status, &body)
}

/// Where to go once the factor is set up: the step-up's destination, or the account page.
fn after(state: &AppState, rd: Option<&str>) -> String {
    match rd.filter(|rd| !rd.is_empty()) {
        Some(rd) => state.settings.return_target(Some(rd)),
        None => ACCOUNT.to_owned(),
    }
}

/// `GET /.portcullis/account/factors/totp`: a new secret, its QR code, and the form.
pub async fn enrol_form(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<RdQuery>,
) -> Response {
    let (me, user) = match me_and_user(&state, &method, &headers, ENROL_PATH).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if let Some(refused) = needs_step_up_first(&state, &me, &method, ENROL_PATH).await {
        return refused;
    }
    let enrolment = state.factors.begin_totp(&user);
    let return_to = after(&state, query.rd.as_deref());
    let page = EnrolPage {
        enrolment: &enrolment,
        label: "",
        return_to: &return_to,
        error: None,
    };
    render_enrol(&state, &me, StatusCode::OK, &page)
}

/// `POST /.portcullis/account/factors/totp`: the first code confirms the app. A session that
/// had no second factor becomes one that has (the user has just proved it), so a step-up that
/// sent them here goes straight on.
pub async fn enrol_submit(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Form(body): Form<EnrolBody>,
) -> Response {
    let (me, user) = match me_and_user(&state, &method, &headers, ENROL_PATH).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &body.csrf) {
        return refused;
    }
    if let Some(refused) = needs_step_up_first(&state, &me, &method, ENROL_PATH).await {
        return refused;
    }
    let return_to = after(&state, body.rd.as_deref());
    let actor = from.actor(&me.user_id);
    let confirmed = state
        .factors
        .confirm_totp(&user, &body.sealed, &body.code, &body.label, &actor)
        .await;
    let codes = match confirmed {
        Ok(codes) => codes,
        Err(e @ (FactorError::WrongCode | FactorError::Invalid(_))) => {
            let Ok(enrolment) = state.factors.reopen_totp(&user, &body.sealed) else {
                return location(StatusCode::SEE_OTHER, ENROL_PATH);
            };
            let field = if matches!(e, FactorError::WrongCode) {
                "code"
            } else {
                "label"
            };
            let error = FieldError::new(field, e.to_string());
            let page = EnrolPage {
                enrolment: &enrolment,
                label: &body.label,
                return_to: &return_to,
                error: Some(&error),
            };
            return render_enrol(&state, &me, StatusCode::BAD_REQUEST, &page);
        }
        Err(FactorError::EnrolmentExpired) => return location(StatusCode::SEE_OTHER, ENROL_PATH),
        Err(FactorError::Throttled { retry_after }) => {
            return throttled(
                "Too many wrong codes. Try again in {} seconds.",
                retry_after,
            );
        }
        Err(other) => return respond::failure(&Failure::from(other), true),
    };
    let stepped_up = if me.mfa() {
        None
    } else {
        match state.sessions.step_up(&me.id_hash, &user, &[AMR_OTP]).await {
            Ok((token, session)) => Some((token, session)),
            Err(e) => return respond::failure(&Failure::from(e), true),
        }
    };
    let session = stepped_up.as_ref().map_or(&me, |(_, session)| session);
    let mut response = match codes {
        Some(codes) => shown_once(session, "Authenticator app added", &codes, &return_to),
        None if return_to == ACCOUNT => {
            location(StatusCode::SEE_OTHER, &format!("{ACCOUNT}?done=factor"))
        }
        None => location(StatusCode::SEE_OTHER, &return_to),
    };
    if let Some((token, _)) = &stepped_up {
        set_session_cookie(&state, &mut response, token);
    }
    response
}

fn shown_once(me: &ActiveSession, heading: &str, codes: &[String], continue_to: &str) -> Response {
    let mut response = Page {
        title: heading,
        section: "account",
        who: &me.identity.username,
        admin: me.identity.role == Role::Admin,
    }
    .render(
        StatusCode::OK,
        &factor_pages::recovery_codes_body(heading, codes, continue_to),
    );
    // Shown once: no cache may keep a copy.
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

#[derive(Deserialize, Default)]
pub struct PasskeyBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    challenge: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    label: String,
}

/// `POST /.portcullis/account/passkeys`: the passkey the browser just made. Like a first app
/// code, it steps up a session that had no second factor.
pub async fn add_passkey(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Form(body): Form<PasskeyBody>,
) -> Response {
    let (me, user) = match me_and_user(&state, &method, &headers, ACCOUNT).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &body.csrf) {
        return refused;
    }
    if let Some(refused) = needs_step_up_first(&state, &me, &method, ACCOUNT).await {
        return refused;
    }
    let actor = from.actor(&me.user_id);
    let confirmed = state
        .factors
        .confirm_passkey(
            &user,
            &body.challenge,
            &body.credential,
            &body.label,
            &actor,
        )
        .await;
    let codes = match confirmed {
        Ok(codes) => codes,
        Err(
            e @ (FactorError::Passkey(_) | FactorError::Invalid(_) | FactorError::EnrolmentExpired),
        ) => {
            if let FactorError::Passkey(why) = &e {
                tracing::info!(user = %user.username, reason = %why, "a new passkey was refused");
            }
            let error = FieldError::new("label", e.to_string());
            let view = View {
                factor_error: Some(&error),
                ..View::default()
            };
            let mut response = account::render(&state, &me, &view).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
        Err(other) => return respond::failure(&Failure::from(other), true),
    };
    let stepped_up = if me.mfa() {
        None
    } else {
        match state
            .sessions
            .step_up(&me.id_hash, &user, &[AMR_PASSKEY])
            .await
        {
            Ok(created) => Some(created),
            Err(e) => return respond::failure(&Failure::from(e), true),
        }
    };
    let session = stepped_up.as_ref().map_or(&me, |(_, session)| session);
    let mut response = match codes {
        Some(codes) => shown_once(session, "Passkey added", &codes, ACCOUNT),
        None => location(StatusCode::SEE_OTHER, &format!("{ACCOUNT}?done=passkey")),
    };
    if let Some((token, _)) = &stepped_up {
        set_session_cookie(&state, &mut response, token);
    }
    response
}

/// Checks a current code for a change to the account's factors; the refusal is the account
/// page with the error in the factors panel, or the throttle's answer.
async fn reauthenticate(
    state: &AppState,
    me: &ActiveSession,
    user: &User,
    code: &str,
    from: &ClientAddr,
) -> Result<(), Response> {
    match state.factors.verify(user, code, from.0.as_deref()).await {
        Ok(_) => Ok(()),
        Err(FactorError::WrongCode) => {
            let error = FieldError::new("code", FactorError::WrongCode.to_string());
            let view = View {
                factor_error: Some(&error),
                ..View::default()
            };
            let mut response = account::render(state, me, &view).await;
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Err(response)
        }
        Err(FactorError::Throttled { retry_after }) => Err(throttled(
            "Too many wrong codes. Try again in {} seconds.",
            retry_after,
        )),
        Err(other) => Err(respond::failure(&Failure::from(other), true)),
    }
}

/// Whether having proved a second factor in the last minutes stands in for a current code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recent {
    /// Removing a factor: a recent re-authentication is what it asks.
    Enough,
    /// New recovery codes: always a current code.
    NotEnough,
}

/// A post that changes the account's factors: the session, its CSRF token, and a
/// re-authentication.
struct Confirmed<'a> {
    state: &'a AppState,
    from: &'a ClientAddr,
    method: &'a Method,
    headers: &'a HeaderMap,
    body: &'a CodeBody,
}

impl<'a> Confirmed<'a> {
    fn post(
        state: &'a AppState,
        from: &'a ClientAddr,
        (method, headers): (&'a Method, &'a HeaderMap),
        body: &'a CodeBody,
    ) -> Self {
        Confirmed {
            state,
            from,
            method,
            headers,
            body,
        }
    }

    /// The signed-in person and their account, or the response that turns the post away.
    async fn check(
        self,
        recent: Recent,
    ) -> Result<(std::sync::Arc<ActiveSession>, User), Response> {
        let (me, user) = me_and_user(self.state, self.method, self.headers, ACCOUNT).await?;
        if let Some(refused) = csrf_refusal(self.state, &me, &self.body.csrf) {
            return Err(refused);
        }
        if !(recent == Recent::Enough && recently_proved(self.state, &me)) {
            reauthenticate(self.state, &me, &user, &self.body.code, self.from).await?;
        }
        Ok((me, user))
    }
}

/// `POST /.portcullis/account/factors/{id}/remove`: with a current code, or within minutes of
/// proving a second factor.
pub async fn remove(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<CodeBody>,
) -> Response {
    let post = Confirmed::post(&state, &from, (&method, &headers), &body);
    let (me, user) = match post.check(Recent::Enough).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state
        .factors
        .remove(&user, &id, &from.actor(&me.user_id))
        .await
    {
        Ok(()) => location(
            StatusCode::SEE_OTHER,
            &format!("{ACCOUNT}?done=factor_removed"),
        ),
        Err(FactorError::NotFound) => respond::failure(
            &Failure::new(FailureKind::NotFound, "You have no factor with that id."),
            true,
        ),
        Err(other) => respond::failure(&Failure::from(other), true),
    }
}

/// `POST /.portcullis/account/recovery-codes`: a new set, with a current code.
pub async fn renew_recovery_codes(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Form(body): Form<CodeBody>,
) -> Response {
    let post = Confirmed::post(&state, &from, (&method, &headers), &body);
    let (me, user) = match post.check(Recent::NotEnough).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    match state
        .factors
        .new_recovery_codes(&user, &from.actor(&me.user_id))
        .await
    {
        Ok(codes) => shown_once(&me, "New recovery codes", &codes, ACCOUNT),
        Err(other) => respond::failure(&Failure::from(other), true),
    }
}

/// The account page's panel of factors.
pub async fn panel(
    state: &AppState,
    me: &ActiveSession,
    csrf: &str,
    error: Option<&FieldError>,
) -> String {
    // Adding a passkey to an account with a factor needs a session proved with one.
    let may_add = me.mfa() || !state.factors.has_factor(&me.user_id).await.unwrap_or(true);
    let ceremony = match state.store.user_by_id(&me.user_id).await {
        Ok(Some(user)) if may_add => state.factors.begin_passkey(&user).await.ok(),
        _ => None,
    };
    let recent = recently_proved(state, me);
    match state.factors.summary(&me.user_id).await {
        Ok(summary) => {
            factor_pages::account_panel(&summary, csrf, error, (ceremony.as_ref(), recent))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the user's factors");
            "<div class=\"panel\"><h2>Second factors</h2><div class=\"alert\" role=\"alert\">Your second factors cannot be read right now.</div></div>".to_owned()
        }
    }
}
