//! Certificates over ACME (RFC 8555): ordered at start when the store has none, renewed when a
//! third of their life is left (or `renew_before`), answered by TLS-ALPN-01 on the listener
//! itself or HTTP-01 on the redirect listener.
//!
//! Everything is kept in the store: the account and the certificate (their keys sealed with the
//! token key) and, while an order runs, the challenge answers. Of several replicas on one
//! database the one that takes the ordering lease talks to the CA; the others copy the answers it
//! publishes (so a CA check landing on any replica is answered) and pick the certificate up from
//! the store when it is there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, header};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use portcullis_auth::seal::Sealer;
use portcullis_core::config::{AcmeChallenge, AcmeConfig, UpstreamTlsConfig};
use portcullis_core::{Clock, Timestamp};
use portcullis_proxy::upstream::tls as upstream_tls;
use portcullis_store::{Store, StoreError};
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsConnector;

use super::challenges::{ChallengeCertificateError, Published};
use super::{CertificateFacts, CurrentCertificate, humanize, provider};

/// The ordering lease: one replica orders at a time.
const LEASE: &str = "order";
/// Longer than an order takes (the CA's checks and issuance, each bounded by `CA_PATIENCE`).
const LEASE_SECONDS: i64 = 600;
const CERTIFICATE: &str = "certificate";
const PUBLISHED: &str = "challenges";
/// How often a replica that does not order copies the published answers while another orders.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// Between publishing an answer and asking the CA to check it: longer than `FOLLOW_EVERY`, so
/// every replica serves the answer by then.
const PUBLISH_SETTLE: Duration = Duration::from_millis(1200);
/// How long the CA may take to check, and then to issue.
const CA_PATIENCE: Duration = Duration::from_secs(120);
/// One request to the CA.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed order: CAs limit failed validations (Let's Encrypt: 5 per hour per name), so
/// retries start slow and back off to a few hours.
const FIRST_RETRY: Duration = Duration::from_secs(60);
const LAST_RETRY: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ACME CA at {directory}: {detail}")]
    Ca { directory: String, detail: String },
    #[error("the CA could not check {domain}: {detail}")]
    Check { domain: String, detail: String },
    #[error(
        "the stored ACME {what} cannot be used ({detail}); was the token key changed? Delete it from acme_state to start over"
    )]
    Stored { what: &'static str, detail: String },
    #[error(transparent)]
    Challenge(#[from] ChallengeCertificateError),
    #[error("TLS to the ACME CA: {0}")]
    Client(#[from] upstream_tls::UpstreamTlsError),
}

/// A certificate as kept in the store.
#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    directory: String,
    domains: Vec<String>,
    chain: String,
    sealed_key: String,
}

/// Orders and renews the listener's certificate for as long as it runs.
pub struct AcmeOrdering {
    config: AcmeConfig,
    store: Arc<dyn Store>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    certificate: Arc<CurrentCertificate>,
    /// This replica, in the lease.
    holder: String,
    /// How often the store is read for a certificate another replica renewed.
    recheck: Duration,
}

impl AcmeOrdering {
    pub fn new(
        config: AcmeConfig,
        store: Arc<dyn Store>,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        certificate: Arc<CurrentCertificate>,
        recheck: Duration,
    ) -> Self {
        let mut domains = config.domains.clone();
        domains.sort();
        domains.dedup();
        AcmeOrdering {
            config: AcmeConfig { domains, ..config },
            store,
            sealer,
            clock,
            certificate,
            holder: uuid::Uuid::new_v4().to_string(),
            recheck,
        }
    }

    /// Keeps the certificate current, for as long as the task runs.
    pub async fn run(self) {
        let mut failures = 0u32;
        loop {
            let wait = match self.step().await {
                Ok(wait) => {
                    failures = 0;
                    wait
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = FIRST_RETRY
                        .saturating_mul(2u32.saturating_pow(failures - 1))
                        .min(LAST_RETRY);
                    tracing::error!(error = %e, retry_in = %humanize(wait), "ACME: no certificate this time");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One look: serve the stored certificate, order a new one when it is due and this replica
    /// gets the lease. Returns how long until the next look.
    async fn step(&self) -> Result<Duration, AcmeError> {
        let stored = self.stored().await?;
        let now = self.clock.now();
        if let Some((certified, facts)) = stored {
            let renew_at = renew_at(&facts, self.config.renew_before);
            let leaf = certified.end_entity_cert().ok().map(|c| c.to_vec());
            if leaf != self.certificate.leaf() {
                self.certificate.install(certified);
                tracing::info!(domains = ?self.config.domains, renew_in = %humanize(seconds(renew_at.0 - now.0)), "ACME: serving the stored certificate");
            }
            if now < renew_at {
                return Ok(seconds(renew_at.0 - now.0).min(self.recheck));
            }
        }
        let until = Timestamp(now.0.saturating_add(LEASE_SECONDS));
        if !self
            .store
            .take_acme_lease(LEASE, &self.holder, now, until)
            .await?
        {
            self.follow().await?;
            return Ok(FOLLOW_EVERY);
        }
        tracing::info!(domains = ?self.config.domains, directory = %self.config.directory, "ACME: ordering a certificate");
        let ordered = self.order().await;
        self.certificate.challenges.clear();
        self.store.delete_acme_value(PUBLISHED).await?;
        self.store.release_acme_lease(LEASE, &self.holder).await?;
        let (chain, key) = ordered?;
        let record = StoredCertificate {
            directory: self.config.directory.clone(),
            domains: self.config.domains.clone(),
            chain,
            sealed_key: self.sealer.seal(&key),
        };
        let text = serde_json::to_string(&record).map_err(|e| AcmeError::Stored {
            what: "certificate",
            detail: e.to_string(),
        })?;
        self.store
            .put_acme_value(CERTIFICATE, &text, self.clock.now())
            .await?;
        tracing::info!(domains = ?self.config.domains, "ACME: certificate obtained");
        // The next look reads it back and serves it, through the same path as every replica.
        Ok(Duration::ZERO)
    }

    /// The stored certificate, if it is for this directory and these domains and can be used.
    async fn stored(&self) -> Result<Option<(CertifiedKey, CertificateFacts)>, AcmeError> {
        let Some(text) = self.store.acme_value(CERTIFICATE).await? else {
            return Ok(None);
        };
        let unusable = |detail: String| AcmeError::Stored {
            what: "certificate",
            detail,
        };
        let record: StoredCertificate =
            serde_json::from_str(&text).map_err(|e| unusable(e.to_string()))?;
        if record.directory != self.config.directory || record.domains != self.config.domains {
            // Ordered for other settings: a new one is due.
            return Ok(None);
        }
        let key = self
            .sealer
            .open(&record.sealed_key)
            .map_err(|e| unusable(e.to_string()))?;
        let certified = pair_from_pem(&record.chain, &key).map_err(unusable)?;
        let facts = CertificateFacts::of(&certified)
            .ok_or_else(|| unusable("the certificate does not parse as X.509".into()))?;
        Ok(Some((certified, facts)))
    }

    /// While another replica orders: serve the answers it published.
    async fn follow(&self) -> Result<(), AcmeError> {
        let published = match self.store.acme_value(PUBLISHED).await? {
            Some(text) => serde_json::from_str(&text).map_err(|e| AcmeError::Stored {
                what: "challenge answers",
                detail: e.to_string(),
            })?,
            None => Published::default(),
        };
        self.certificate.challenges.serve(published)?;
        Ok(())
    }

    async fn publish(&self, published: &Published) -> Result<(), AcmeError> {
        self.certificate.challenges.serve(published.clone())?;
        let text = serde_json::to_string(published).map_err(|e| AcmeError::Stored {
            what: "challenge answers",
            detail: e.to_string(),
        })?;
        self.store
            .put_acme_value(PUBLISHED, &text, self.clock.now())
            .await?;
        tokio::time::sleep(PUBLISH_SETTLE).await;
        Ok(())
    }

    fn ca(&self, e: impl std::error::Error) -> AcmeError {
        AcmeError::Ca {
            directory: self.config.directory.clone(),
            detail: portcullis_core::error::with_causes(&e),
        }
    }

    /// Orders a certificate for the domains: the chain and its new key, both PEM.
    async fn order(&self) -> Result<(String, String), AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| self.ca(e))?;
        let kind = match self.config.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut published = Published::default();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| self.ca(e))?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Check {
                        domain,
                        detail: format!("its authorization is {other:?}"),
                    });
                }
            }
            let mut challenge =
                authorization
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::Check {
                        domain: domain.clone(),
                        detail: format!("the CA does not offer the {kind:?} challenge"),
                    })?;
            let answer = challenge.key_authorization().as_str().to_owned();
            match self.config.challenge {
                AcmeChallenge::TlsAlpn01 => published.tls_alpn.insert(domain, answer),
                AcmeChallenge::Http01 => published.http.insert(challenge.token.clone(), answer),
            };
            self.publish(&published).await?;
            challenge.set_ready().await.map_err(|e| self.ca(e))?;
        }
        let patience = RetryPolicy::new().timeout(CA_PATIENCE);
        let status = order.poll_ready(&patience).await.map_err(|e| self.ca(e))?;
        if status != OrderStatus::Ready {
            return Err(why_refused(&mut order).await);
        }
        let key = rcgen::KeyPair::generate().map_err(|e| self.ca(e))?;
        let mut params =
            rcgen::CertificateParams::new(self.config.domains.clone()).map_err(|e| self.ca(e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| self.ca(e))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| self.ca(e))?;
        let chain = order
            .poll_certificate(&patience)
            .await
            .map_err(|e| self.ca(e))?;
        Ok((chain, key.serialize_pem()))
    }

    /// The stored account for this directory, or a new one (stored before it is used).
    async fn account(&self) -> Result<Account, AcmeError> {
        let name = format!("account {}", self.config.directory);
        let http = || -> Result<Box<dyn HttpClient>, AcmeError> {
            Ok(Box::new(AcmeHttp::new(self.config.directory_ca.clone())?))
        };
        if let Some(sealed) = self.store.acme_value(&name).await? {
            let unusable = |detail: String| AcmeError::Stored {
                what: "account",
                detail,
            };
            let text = self
                .sealer
                .open(&sealed)
                .map_err(|e| unusable(e.to_string()))?;
            let credentials: AccountCredentials =
                serde_json::from_str(&text).map_err(|e| unusable(e.to_string()))?;
            return Account::builder_with_http(http()?)
                .from_credentials(credentials)
                .await
                .map_err(|e| self.ca(e));
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let binding = match &self.config.eab {
            Some(eab) => {
                let key = URL_SAFE_NO_PAD
                    .decode(eab.hmac_key.trim_end_matches('='))
                    .map_err(|e| self.ca(e))?;
                Some(ExternalAccountKey::new(eab.kid.clone(), &key))
            }
            None => None,
        };
        let (account, credentials) = Account::builder_with_http(http()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    // Configuring `[tls.acme]` is agreeing to the CA's terms (docs/tls.md).
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                binding.as_ref(),
            )
            .await
            .map_err(|e| self.ca(e))?;
        let text = serde_json::to_string(&credentials).map_err(|e| AcmeError::Stored {
            what: "account",
            detail: e.to_string(),
        })?;
        self.store
            .put_acme_value(&name, &self.sealer.seal(&text), self.clock.now())
            .await?;
        tracing::info!(directory = %self.config.directory, "ACME: account created");
        Ok(account)
    }
}

/// When a certificate is renewed: `renew_before` ahead of its expiry, or when a third of its
/// lifetime is left.
fn renew_at(facts: &CertificateFacts, renew_before: Option<Duration>) -> Timestamp {
    let (from, to) = (unix(facts.not_before), unix(facts.not_after));
    let ahead = match renew_before {
        Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        None => (to - from) / 3,
    };
    Timestamp(to.saturating_sub(ahead))
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// The CA's own words on why an order failed: the error of each failed challenge.
async fn why_refused(order: &mut Order) -> AcmeError {
    let mut domains = Vec::new();
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                domains.push(authorization.identifier().to_string());
                details.push(
                    problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                );
            }
        }
    }
    AcmeError::Check {
        domain: if domains.is_empty() {
            "the domains".into()
        } else {
            domains.join(", ")
        },
        detail: if details.is_empty() {
            "the order became invalid without a reason".into()
        } else {
            details.join("; ")
        },
    }
}

fn pair_from_pem(chain: &str, key: &str) -> Result<CertifiedKey, String> {
    use rustls::pki_types::pem::PemObject;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| e.to_string())?;
    CertifiedKey::from_der(certificates, key, &provider()).map_err(|e| e.to_string())
}

/// The CA client's HTTP: one HTTP/1.1 connection per request (an order makes a dozen), verified
/// like an https upstream: against `directory_ca` or the system's roots.
struct AcmeHttp {
    connector: TlsConnector,
}

impl AcmeHttp {
    fn new(ca: Option<std::path::PathBuf>) -> Result<Self, AcmeError> {
        let settings = UpstreamTlsConfig {
            ca,
            ..UpstreamTlsConfig::default()
        };
        // The name given here is replaced per request; only the verifier and roots are kept.
        let client = upstream_tls::client(&settings, "acme.invalid")?;
        Ok(AcmeHttp {
            connector: client.connector,
        })
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let connector = self.connector.clone();
        Box::pin(async move {
            tokio::time::timeout(REQUEST_TIMEOUT, send(connector, request))
                .await
                .unwrap_or_else(|_| Err("the request timed out".into()))
                .map_err(instant_acme::Error::Other)
        })
    }
}

async fn send(
    connector: TlsConnector,
    request: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, Failure> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme_str() != Some("https") {
        return Err(format!("{} is not an https URL", parts.uri).into());
    }
    let host = parts.uri.host().ok_or("the URL has no host")?.to_owned();
    let port = parts.uri.port_u16().unwrap_or(443);
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port)).await?;
    let tls = connector.connect(ServerName::try_from(bare)?, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()?;
    parts.headers.insert(header::HOST, authority.parse()?);
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    Ok(BytesResponse::from(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn facts(from: u64, to: u64) -> CertificateFacts {
        CertificateFacts {
            not_before: UNIX_EPOCH + Duration::from_secs(from),
            not_after: UNIX_EPOCH + Duration::from_secs(to),
            names: vec![],
        }
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_life_left_or_as_configured() {
        let ninety_days = 90 * 86_400;
        let facts = facts(1_000, 1_000 + ninety_days);
        assert_eq!(
            renew_at(&facts, None),
            Timestamp(1_000 + 60 * 86_400),
            "Let's Encrypt's 90 days: renewed 30 days ahead"
        );
        assert_eq!(
            renew_at(&facts, Some(Duration::from_secs(7 * 86_400))),
            Timestamp(1_000 + 83 * 86_400)
        );
    }
}
