//! Who an OAuth client is: registered by the operator (`[[oauth.clients]]`), registered
//! dynamically (RFC 7591), or identified by the URL of its metadata document.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use portcullis_core::config::{OAuthConfig, check_redirect_uri, redirect_uri_matches};
use portcullis_core::{Clock, Timestamp};
use portcullis_store::{OAuthClient, Store};
use serde::Deserialize;

use super::OAuthError;
use super::metadata::MetadataDocuments;
use crate::secret::{constant_time_eq, random_token, token_hash};

/// Prefix of dynamically registered client ids.
const REGISTERED_PREFIX: &str = "pcc_";
const MAX_REDIRECT_URIS: usize = 10;
const MAX_NAME_CHARS: usize = 100;

/// Where a client's registration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Configured,
    Registered,
    /// A Client ID Metadata Document: the client id is its https URL.
    MetadataDocument,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// SHA-256 of a confidential client's secret.
    pub secret_hash: Option<String>,
    pub kind: ClientKind,
}

impl Client {
    /// The registered redirect URI `presented` matches, if any.
    pub fn redirect_uri(&self, presented: &str) -> Option<&str> {
        self.redirect_uris
            .iter()
            .find(|r| redirect_uri_matches(r, presented))
            .map(String::as_str)
    }

    /// Whether every redirect URI goes to this machine: any program on the user's computer
    /// could have registered such a client, so the consent page says so.
    pub fn loopback_only(&self) -> bool {
        // Plain http is only ever registered for loopback addresses (`check_redirect_uri`).
        self.redirect_uris
            .iter()
            .all(|uri| uri.to_ascii_lowercase().starts_with("http://"))
    }

    /// Checks the client's credentials at the token endpoint: a confidential client must send
    /// its secret (compared in constant time); a public one must not claim one.
    pub fn authenticate(&self, secret: Option<&str>) -> Result<(), OAuthError> {
        match (&self.secret_hash, secret) {
            (None, None) => Ok(()),
            (Some(hash), Some(secret))
                if constant_time_eq(token_hash(secret).as_bytes(), hash.as_bytes()) =>
            {
                Ok(())
            }
            (Some(_), None) => Err(OAuthError::invalid_client(
                "this client is confidential: send its client_secret",
            )),
            (None, Some(_)) => Err(OAuthError::invalid_client(
                "this client is public and has no secret",
            )),
            (Some(_), Some(_)) => Err(OAuthError::invalid_client("wrong client_secret")),
        }
    }
}

/// A registration request (RFC 7591 §2); unknown fields are ignored, as the RFC says.
#[derive(Debug, Default, Deserialize)]
pub struct Registration {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
}

/// A registered client and, for a confidential one, its secret (shown once).
pub struct Registered {
    pub client: Client,
    pub secret: Option<String>,
    pub auth_method: &'static str,
    pub issued_at: Timestamp,
}

pub struct Clients {
    configured: HashMap<String, Client>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    documents: Option<MetadataDocuments>,
    dynamic_registration: bool,
    registrations: RegistrationLimit,
}

impl Clients {
    pub fn new(
        config: &OAuthConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        documents: Option<MetadataDocuments>,
    ) -> Self {
        let configured = config
            .clients
            .iter()
            .map(|c| {
                let client = Client {
                    id: c.id.clone(),
                    name: c.display_name().to_owned(),
                    redirect_uris: c.redirect_uris.clone(),
                    secret_hash: c.secret.as_deref().map(token_hash),
                    kind: ClientKind::Configured,
                };
                (c.id.clone(), client)
            })
            .collect();
        Clients {
            configured,
            store,
            clock,
            documents,
            dynamic_registration: config.dynamic_registration,
            registrations: RegistrationLimit::new(config.registrations_per_hour),
        }
    }

    pub fn metadata_documents_supported(&self) -> bool {
        self.documents.is_some()
    }

    pub fn registration_enabled(&self) -> bool {
        self.dynamic_registration
    }

    /// The client with this id, wherever it is registered.
    pub async fn find(&self, client_id: &str) -> Result<Client, OAuthError> {
        if let Some(client) = self.configured.get(client_id) {
            return Ok(client.clone());
        }
        if client_id.starts_with("https://") {
            return match &self.documents {
                Some(documents) => documents.client(client_id).await,
                None => Err(OAuthError::invalid_client(
                    "client metadata documents are turned off here (oauth.client_metadata_documents)",
                )),
            };
        }
        if client_id.starts_with(REGISTERED_PREFIX)
            && let Some(stored) = self.store.client(client_id).await?
        {
            return Ok(Client {
                id: stored.id,
                name: stored.name,
                redirect_uris: stored.redirect_uris,
                secret_hash: stored.secret_hash,
                kind: ClientKind::Registered,
            });
        }
        Err(OAuthError::invalid_client(format!(
            "no client is registered with the id {client_id:?}"
        )))
    }

    /// Notes that a registered client was used, so it does not expire while in use.
    pub async fn used(&self, client: &Client) {
        if client.kind == ClientKind::Registered
            && let Err(e) = self.store.touch_client(&client.id, self.clock.now()).await
        {
            tracing::warn!(error = %e, "could not record a client's use");
        }
    }

    /// Registers a client (RFC 7591), at most `registrations_per_hour` per client address.
    pub async fn register(
        &self,
        request: Registration,
        from: IpAddr,
    ) -> Result<Registered, OAuthError> {
        if !self.dynamic_registration {
            return Err(OAuthError::new(
                "access_denied",
                "dynamic client registration is turned off here; ask the operator to register the client",
            ));
        }
        let auth_method = match request.token_endpoint_auth_method.as_deref() {
            None | Some("none") => "none",
            Some("client_secret_post") => "client_secret_post",
            Some("client_secret_basic") => "client_secret_basic",
            Some(other) => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "token_endpoint_auth_method {other:?} is not supported (none, client_secret_post, client_secret_basic)"
                )));
            }
        };
        check_registration(&request)?;
        let now = self.clock.now();
        if !self.registrations.admit(from, now) {
            return Err(OAuthError::new(
                "slow_down",
                "too many clients were registered from this address in the last hour; try again later",
            )
            .with_status(429));
        }
        let secret = (auth_method != "none").then(|| format!("pcs_secret_{}", random_token()));
        let stored = OAuthClient {
            id: format!("{REGISTERED_PREFIX}{}", random_token()),
            name: request
                .client_name
                .as_deref()
                .map(|n| n.trim().chars().take(MAX_NAME_CHARS).collect::<String>())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Unnamed client".to_owned()),
            redirect_uris: request.redirect_uris,
            secret_hash: secret.as_deref().map(token_hash),
            created_at: now,
            last_used_at: None,
        };
        self.store.insert_client(&stored).await?;
        Ok(Registered {
            client: Client {
                id: stored.id,
                name: stored.name,
                redirect_uris: stored.redirect_uris,
                secret_hash: stored.secret_hash,
                kind: ClientKind::Registered,
            },
            secret,
            auth_method,
            issued_at: now,
        })
    }
}

/// What registration and metadata documents share: redirect URIs that are safe to send codes
/// to, and only the code flow.
pub(super) fn check_registration(request: &Registration) -> Result<(), OAuthError> {
    if request.redirect_uris.is_empty() {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            "redirect_uris is missing or empty",
        ));
    }
    if request.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for uri in &request.redirect_uris {
        check_redirect_uri(uri).map_err(|e| OAuthError::new("invalid_redirect_uri", e))?;
    }
    if let Some(types) = &request.grant_types
        && let Some(other) = types
            .iter()
            .find(|t| !matches!(t.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "grant type {other:?} is not supported (authorization_code, refresh_token)"
        )));
    }
    if let Some(types) = &request.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err(OAuthError::invalid_client_metadata(
            "only the response type \"code\" is supported",
        ));
    }
    Ok(())
}

/// Registrations per client address in a sliding hour, in memory (each replica counts its own:
/// the bound is per replica, which is what protects its store from filling up).
struct RegistrationLimit {
    per_hour: u32,
    recent: Mutex<HashMap<IpAddr, Vec<i64>>>,
}

impl RegistrationLimit {
    fn new(per_hour: u32) -> Self {
        RegistrationLimit {
            per_hour,
            recent: Mutex::new(HashMap::new()),
        }
    }

    fn admit(&self, from: IpAddr, now: Timestamp) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() > 10_000 {
            recent.retain(|_, times| times.iter().any(|t| now.0 - t < 3600));
        }
        let times = recent.entry(from).or_default();
        times.retain(|t| now.0 - t < 3600);
        if times.len() >= usize::try_from(self.per_hour).unwrap_or(usize::MAX) {
            return false;
        }
        times.push(now.0);
        true
    }
}
