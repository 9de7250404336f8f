use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;
use portcullis_auth::directory::Directory;
use portcullis_auth::oidc::{FlowManager, Providers};
use portcullis_auth::seal::Sealer;
use portcullis_auth::{LocalLogin, SessionManager, SetupToken};
use portcullis_core::Clock;
use portcullis_proxy::forwarded::{ClientFacts, TrustedProxies};
use portcullis_proxy::{Gateway, Metrics};
use portcullis_store::Store;

use portcullis_auth::audit::Audit;

/// Settings the web layer needs from the configuration.
#[derive(Clone, Debug)]
pub struct WebSettings {
    pub public_url: String,
    pub cookie_secure: bool,
    pub metrics_allowed: Vec<IpNet>,
    pub local_auth_enabled: bool,
    /// Hosts an absolute `rd=` on sign-out may point to (e.g. the IdP's logout endpoint).
    pub allowed_redirect_hosts: Vec<String>,
}

/// Everything a handler may use, passed explicitly (no globals).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<WebSettings>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub sessions: Arc<SessionManager>,
    pub local_login: Arc<LocalLogin>,
    pub setup: Arc<SetupToken>,
    pub gateway: Arc<Gateway>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub directory: Arc<Directory>,
    pub providers: Arc<Providers>,
    pub flows: Arc<FlowManager>,
    pub sealer: Sealer,
}

impl AppState {
    pub fn trusted(&self) -> &TrustedProxies {
        &self.gateway.trusted
    }

    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientFacts {
        self.trusted().client_facts(peer, headers)
    }
}
