//! Sign-in through identity providers: `/.portcullis/start/{provider}` (and oauth2-proxy's
//! `/oauth2/start`) send the browser to the provider; `/oauth2/callback` (also
//! `/.portcullis/callback`) finishes the sign-in.
//!
//! The callback URL to register at the provider is `<public_url>/oauth2/callback` — the same path
//! oauth2-proxy uses, so an existing registration keeps working after a migration.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_auth::directory::{IdentitySource, LoginRefusal};
use portcullis_auth::oidc::flow::FlowError;
use portcullis_auth::oidc::provider::Tokens;
use portcullis_auth::oidc::{FlowOutcome, OidcError, Provider};
use portcullis_auth::secret::{looks_like_token, random_token};
use portcullis_auth::session::SessionOrigin;
use portcullis_core::claims::map_claims;
use portcullis_core::session::ProviderSession;
use portcullis_core::{Failure, FailureKind};
use portcullis_http::cookies;
use portcullis_http::respond;
use serde::Deserialize;

use crate::sign_in::{signed_in, start_session, user_agent};
use crate::state::AppState;
use portcullis_auth::audit::Entry;

/// Binds flows to the browser that started them (one value shared by all tabs).
pub const FLOW_COOKIE: &str = "_portcullis_flow";
pub const CALLBACK_PATH: &str = "/oauth2/callback";

#[derive(Deserialize, Default)]
pub struct StartQuery {
    #[serde(default)]
    rd: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

fn failure_page(kind: FailureKind, message: impl Into<String>, hint: &str) -> Response {
    respond::failure(&Failure::new(kind, message).with_hint(hint), true)
}

fn provider_failure(provider: &Provider, e: &OidcError) -> Response {
    match e {
        OidcError::Unavailable(detail) => {
            tracing::warn!(provider = provider.id(), error = %detail, "identity provider unavailable");
            failure_page(
                FailureKind::UpstreamUnavailable,
                format!(
                    "The identity provider \"{}\" is unavailable right now.",
                    provider.config.display_name()
                ),
                "try again in a moment; if it persists, tell the operator",
            )
        }
        OidcError::Rejected(reason) => {
            tracing::warn!(provider = provider.id(), reason = %reason, "sign-in response rejected");
            failure_page(
                FailureKind::Unauthenticated,
                format!("The sign-in response was rejected: {reason}."),
                "start the sign-in again; if it keeps failing, tell the operator",
            )
        }
    }
}

pub fn redirect_uri(state: &AppState) -> String {
    format!("{}{CALLBACK_PATH}", state.settings.public_url)
}

/// `/.portcullis/start/{provider}?rd=…`
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    match state.providers.get(&id) {
        Some(provider) => begin(&state, provider, &headers, query.rd.as_deref()).await,
        None => failure_page(
            FailureKind::NotFound,
            format!("No identity provider is called \"{id}\"."),
            "go back to the sign-in page",
        ),
    }
}

/// `/oauth2/start?rd=…`, as oauth2-proxy: the first configured provider, or the sign-in page.
pub async fn oauth2_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    match state.providers.all().next().cloned() {
        Some(provider) => begin(&state, provider, &headers, query.rd.as_deref()).await,
        None => {
            let return_to = state.settings.return_target(query.rd.as_deref());
            respond::redirect(StatusCode::FOUND, &respond::sign_in_location(&return_to))
        }
    }
}

async fn begin(
    state: &AppState,
    provider: Arc<Provider>,
    headers: &HeaderMap,
    rd: Option<&str>,
) -> Response {
    let return_to = state.settings.return_target(rd);
    let existing = cookies::first(headers, FLOW_COOKIE).filter(|b| looks_like_token(b));
    let binding = existing.clone().unwrap_or_else(random_token);
    let flow = match state.flows.start(provider.id(), &return_to, &binding).await {
        Ok(flow) => flow,
        Err(FlowError::TooMany) => {
            return failure_page(
                FailureKind::RateLimited,
                FlowError::TooMany.to_string(),
                "close other sign-in tabs",
            );
        }
        Err(FlowError::Store(e)) => return respond::failure(&Failure::from(e), true),
    };
    let url = match provider
        .authorization_url(
            &redirect_uri(state),
            &flow.state,
            &flow.nonce,
            &flow.challenge,
        )
        .await
    {
        Ok(url) => url,
        Err(e) => return provider_failure(&provider, &e),
    };
    let mut response = respond::redirect(StatusCode::FOUND, &url);
    if existing.is_none() {
        let cookie = cookies::set_cookie(FLOW_COOKIE, &binding, state.settings.cookie_secure, None);
        cookies::append(response.headers_mut(), &cookie);
    }
    response
}

/// `/oauth2/callback?code=…&state=…`
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let client_ip = state.client(peer, &headers).client_ip.to_string();
    let refuse = |reason: String| {
        let state = state.clone();
        let client_ip = client_ip.clone();
        async move {
            state.metrics.sign_in("failure");
            state
                .audit
                .record(Entry {
                    action: "sign_in",
                    success: false,
                    actor: None,
                    subject: None,
                    reason: Some(&reason),
                    client_ip: Some(client_ip),
                })
                .await;
        }
    };
    if let Some(error) = &query.error {
        let description = query.error_description.clone().unwrap_or_default();
        refuse(format!("provider_error: {error} {description}")).await;
        return failure_page(
            FailureKind::Forbidden,
            format!(
                "The identity provider did not sign you in ({error}{}).",
                if description.is_empty() {
                    String::new()
                } else {
                    format!(": {description}")
                }
            ),
            "start the sign-in again, or ask an administrator for access",
        );
    }
    let (Some(code), Some(flow_state)) = (&query.code, &query.state) else {
        return failure_page(
            FailureKind::BadRequest,
            "This sign-in callback is missing its code or state.",
            "start the sign-in again",
        );
    };
    let binding = cookies::first(&headers, FLOW_COOKIE);
    let flow = match state.flows.finish(flow_state, binding.as_deref()).await {
        Ok(FlowOutcome::Fresh(flow)) => flow,
        Ok(FlowOutcome::AlreadyCompleted { return_to }) => {
            if matches!(signed_in(&state, &headers).await, Ok(Some(_))) {
                return respond::redirect(StatusCode::FOUND, &return_to);
            }
            refuse("flow_already_used".into()).await;
            return stale_flow("This sign-in link was already used.");
        }
        Ok(FlowOutcome::Unknown) => {
            refuse("unknown_state".into()).await;
            return stale_flow(
                "This sign-in is not known: it expired, or the link was not made by this site.",
            );
        }
        Ok(FlowOutcome::Expired) => {
            refuse("flow_expired".into()).await;
            return stale_flow("This sign-in took too long and expired.");
        }
        Ok(FlowOutcome::WrongBrowser) => {
            refuse("flow_other_browser".into()).await;
            return stale_flow("This sign-in was started in another browser.");
        }
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let Some(provider) = state.providers.get(&flow.provider) else {
        return stale_flow("The identity provider of this sign-in is no longer configured.");
    };
    match complete(&state, &provider, code, &flow.verifier, &flow.nonce).await {
        Ok(done) => {
            let tokens = &done.tokens;
            let seal = |t: &String| state.sealer.seal(t);
            let origin = SessionOrigin {
                client_ip: Some(client_ip),
                user_agent: user_agent(&headers),
                provider: Some(ProviderSession {
                    provider: provider.id().to_owned(),
                    subject: done.provider_subject.clone(),
                    sid: done.provider_sid.clone(),
                    id_token_enc: tokens.id_token.as_ref().map(seal),
                    refresh_token_enc: tokens.refresh_token.as_ref().map(seal),
                    access_expires_at: tokens
                        .expires_in
                        .map(|secs| state.clock.now().plus(std::time::Duration::from_secs(secs))),
                    claim_sources: done.claim_sources.clone(),
                }),
                amr: done.amr.clone(),
            };
            let method = format!("oidc:{}", provider.id());
            start_session(
                &state,
                &done.user,
                origin,
                &method,
                &flow.return_to,
                StatusCode::FOUND,
            )
            .await
        }
        Err(Completion::Provider(e)) => {
            refuse(format!("provider: {e}")).await;
            provider_failure(&provider, &e)
        }
        Err(Completion::Refused(refusal)) => {
            refuse(format!("refused: {refusal}")).await;
            match refusal {
                LoginRefusal::Store(e) => respond::failure(&Failure::from(e), true),
                other => failure_page(
                    FailureKind::Forbidden,
                    other.to_string(),
                    "ask an administrator if you think this is wrong",
                ),
            }
        }
    }
}

fn stale_flow(message: &str) -> Response {
    failure_page(
        FailureKind::BadRequest,
        message,
        "go back to the app and sign in again",
    )
}

enum Completion {
    Provider(OidcError),
    Refused(LoginRefusal),
}

/// A finished sign-in at the provider.
struct Completed {
    user: portcullis_core::user::User,
    tokens: Tokens,
    /// The raw `sub` and `sid` claims, which back-channel logout tokens refer to.
    provider_subject: Option<String>,
    provider_sid: Option<String>,
    /// Where each identity field came from, for whoami.
    claim_sources: Vec<(String, String)>,
    /// How the provider proved the sign-in (`mfa` when its claims meet `mfa_amr`/`mfa_acr`).
    amr: Vec<String>,
}

/// Exchanges the code, verifies the claims, and finds or creates the user.
async fn complete(
    state: &AppState,
    provider: &Provider,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> Result<Completed, Completion> {
    let tokens = provider
        .exchange(code, verifier, &redirect_uri(state))
        .await
        .map_err(Completion::Provider)?;
    let claims = provider
        .claims(&tokens, nonce)
        .await
        .map_err(Completion::Provider)?;
    let mapped = map_claims(&claims, &provider.config.mapping())
        .map_err(|e| Completion::Provider(OidcError::Rejected(e.to_string())))?;
    if mapped.groups_overage {
        tracing::warn!(
            provider = provider.id(),
            user = %mapped.username,
            "the provider left out the groups claim (Entra groups overage: more than ~200 groups); \
             group rules will not see this user's groups — emit only groups assigned to the application, \
             or use app roles instead"
        );
    }
    let issuer = provider
        .metadata()
        .await
        .map_err(Completion::Provider)?
        .issuer;
    let (user, _) = state
        .directory
        .resolve_identity(&IdentitySource::of(&provider.config), &issuer, &mapped)
        .await
        .map_err(Completion::Refused)?;
    let claim = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Completed {
        user,
        tokens,
        provider_subject: claim("sub"),
        provider_sid: claim("sid"),
        amr: provider.amr(&claims),
        claim_sources: mapped
            .sources
            .iter()
            .map(|(field, claim)| ((*field).to_owned(), claim.clone()))
            .collect(),
    })
}
