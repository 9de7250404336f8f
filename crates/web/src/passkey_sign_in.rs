//! Signing in with a passkey alone: no username, no password. The passkey must be a
//! discoverable credential whose authenticator verified the user (PIN or biometrics), so the
//! session counts as multi-factor.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_auth::audit::Entry;
use portcullis_auth::factors::{AMR_PASSKEY, FactorError};
use portcullis_auth::session::SessionOrigin;
use portcullis_core::Failure;
use portcullis_core::session::AMR_MFA;
use portcullis_http::respond;
use serde::Deserialize;

use crate::csrf;
use crate::factors::active_user;
use crate::pending::{PendingSignIn, Step};
use crate::sign_in::{start_session, user_agent};
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct PasskeySignInBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    challenge: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    rd: Option<String>,
}

/// `POST /.portcullis/sign_in/passkey`: a passwordless sign-in with a discoverable passkey
/// whose authenticator verified the user (PIN or biometrics): two factors in one.
pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(body): Form<PasskeySignInBody>,
) -> Response {
    let return_to = state.settings.return_target(body.rd.as_deref());
    let again = |status, error: &str| {
        crate::sign_in::form_with_error(&state, &headers, status, &return_to, error)
    };
    if !csrf::verify(&headers, &body.csrf) {
        return again(
            StatusCode::FORBIDDEN,
            "This form expired. Please sign in again.",
        );
    }
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let verified = state
        .factors
        .verify_passkey(&body.challenge, &body.credential, None)
        .await;
    let user = match verified {
        Ok((user_id, _)) => active_user(&state, &user_id).await,
        Err(FactorError::Passkey(why)) => {
            tracing::info!(reason = %why, "a passkey sign-in was refused");
            Ok(None)
        }
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) => {
            state.metrics.sign_in("failure");
            state
                .audit
                .record(Entry {
                    action: "sign_in",
                    success: false,
                    actor: None,
                    subject: None,
                    reason: Some("passkey_refused"),
                    client_ip: Some(client_ip),
                })
                .await;
            return again(
                StatusCode::UNAUTHORIZED,
                "That passkey did not work. Try again, or sign in with your password.",
            );
        }
        Err(failure) => return respond::failure(&failure, true),
    };
    let amr = vec![AMR_PASSKEY.to_owned(), AMR_MFA.to_owned()];
    if user.must_change_password {
        let pending = PendingSignIn::new(
            Step::NewPassword,
            &user.id,
            &return_to,
            ("passkey", &amr),
            state.clock.now(),
        );
        let sealed = pending.seal(&state.sealer);
        return crate::passwords::must_change_page(&state, &headers, &sealed, StatusCode::OK, None);
    }
    let origin = SessionOrigin {
        client_ip: Some(client_ip),
        user_agent: user_agent(&headers),
        amr,
        ..SessionOrigin::default()
    };
    start_session(
        &state,
        &user,
        origin,
        "passkey",
        &return_to,
        StatusCode::SEE_OTHER,
    )
    .await
}
