use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::HeaderMap;
use http::request::Parts;
use ipnet::IpNet;
use portcullis_auth::directory::Directory;
use portcullis_auth::factors::SecondFactors;
use portcullis_auth::oidc::{FlowManager, Providers};
use portcullis_auth::seal::Sealer;
use portcullis_auth::{LocalLogin, SessionManager, SetupToken};
use portcullis_core::Clock;
use portcullis_http::forwarded::{ClientFacts, TrustedProxies};
use portcullis_http::respond::allowed_redirect;
use portcullis_proxy::{Gateway, Metrics};
use portcullis_store::Store;

use portcullis_auth::audit::{Actor, Audit};

/// Settings the web layer needs from the configuration.
#[derive(Clone, Debug)]
pub struct WebSettings {
    pub public_url: String,
    pub cookie_secure: bool,
    /// The SCIM bearer token; `None`: SCIM is off.
    pub scim_token: Option<String>,
    /// `Domain` of the session cookie (e.g. `example.com`), for forward-auth across subdomains.
    pub cookie_domain: Option<String>,
    pub metrics_allowed: Vec<IpNet>,
    pub local_auth_enabled: bool,
    /// Hosts an absolute `rd=` on sign-out may point to (e.g. the IdP's logout endpoint).
    pub allowed_redirect_hosts: Vec<String>,
    /// How long a password reset link made in the UI or API works.
    pub reset_link_lifetime: std::time::Duration,
    /// `mfa.required`: Portcullis's admin pages and API need a second factor too.
    pub mfa_required: bool,
    /// How long a refused sign-in (throttled, or the hashing queue full) waits before its answer.
    pub refusal_delay: std::time::Duration,
}

impl WebSettings {
    /// Where to go after signing in or out: a local path, or an absolute URL on an allowed host
    /// (configured hosts, the apps' hosts, Portcullis's own); anything else becomes `/`.
    pub fn return_target(&self, rd: Option<&str>) -> String {
        rd.and_then(|rd| allowed_redirect(rd, &self.allowed_redirect_hosts))
            .unwrap_or_else(|| "/".to_owned())
    }
}

/// Everything a handler may use, passed explicitly (no globals).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<WebSettings>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub sessions: Arc<SessionManager>,
    pub local_login: Arc<LocalLogin>,
    pub factors: Arc<SecondFactors>,
    /// Sends reset links by mail (`[smtp]`); `None`: links are shown once instead.
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    pub setup: Arc<SetupToken>,
    pub gateway: Arc<Gateway>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub directory: Arc<Directory>,
    pub providers: Arc<Providers>,
    pub flows: Arc<FlowManager>,
    pub sealer: Sealer,
    /// The OAuth authorization server of the MCP apps.
    pub oauth: Arc<portcullis_auth::oauth::AuthorizationServer>,
}

impl AppState {
    /// Applies a user change in this process at once; other processes follow the change feed
    /// within a second, and so would this one if applying here failed.
    pub async fn apply_user_change(&self, user_id: &str) {
        if let Err(e) = self.gateway.auth.user_changed(user_id).await {
            tracing::warn!(error = %e, "could not apply a user change at once; the change feed will");
        }
    }

    /// Rebuilds the API key ring at once after a key changed (see [`Self::apply_user_change`]).
    pub async fn apply_key_change(&self) {
        if let Err(e) = self.gateway.auth.keys.reload().await {
            tracing::warn!(error = %e, "could not reload API keys at once; the change feed will");
        }
    }

    /// Reloads the OAuth grants at once after one was revoked (see [`Self::apply_user_change`]).
    pub async fn apply_grant_change(&self) {
        if let Err(e) = self.gateway.auth.grants.reload().await {
            tracing::warn!(error = %e, "could not reload grants at once; the change feed will");
        }
    }

    pub fn trusted(&self) -> &TrustedProxies {
        &self.gateway.trusted
    }

    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientFacts {
        self.trusted().client_facts(peer, headers)
    }
}

/// The client address of a request, resolved from the socket peer and the trusted proxies; what
/// the audit trail records as "from where".
pub struct ClientAddr(pub Option<String>);

impl ClientAddr {
    /// The audit actor for `user_id` acting from this address.
    pub fn actor(&self, user_id: &str) -> Actor {
        Actor::new(user_id, self.0.clone())
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientAddr(peer.map(|ConnectInfo(peer)| {
            state.client(*peer, &parts.headers).client_ip.to_string()
        })))
    }
}
