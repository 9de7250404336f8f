//! Everything `serve` builds from one configuration — the request path of each worker,
//! Portcullis's own handlers and the background tasks — so that a reload can build it again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portcullis_auth::assertion::Assertions;
use portcullis_auth::directory::Directory;
use portcullis_auth::external::ExternalAuth;
use portcullis_auth::factors::SecondFactors;
use portcullis_auth::hash_pool::CpuBudget;
use portcullis_auth::keys::KeyRing;
use portcullis_auth::ldap::LdapLogin;
use portcullis_auth::oauth::metadata::MetadataDocuments;
use portcullis_auth::oauth::{AuthorizationServer, Clients, GrantRing, Resource};
use portcullis_auth::oidc::refresh::ProviderRefresher;
use portcullis_auth::oidc::{FlowManager, Providers};
use portcullis_auth::password::HashingLimits;
use portcullis_auth::password::PasswordPolicy;
use portcullis_auth::principal::Authenticator;
use portcullis_auth::seal::Sealer;
use portcullis_auth::watch::ChangeWatcher;
use portcullis_auth::{LocalLogin, LoginThrottle, PasswordHasher, SessionManager, SetupToken};
use portcullis_core::Clock;
use portcullis_core::config::{CompiledRoutes, Config, Upstream};
use portcullis_http::forwarded::TrustedProxies;
use portcullis_provision::{ProvisionMetrics, Provisioner};
use portcullis_proxy::access::AccessLog;
use portcullis_proxy::{Gateway, Metrics, RouteTable};
use portcullis_store::Store;
use portcullis_web::{AppState, Audit, WebSettings};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

/// How often expired sessions are deleted from the store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

fn needs_whoami(routes: &CompiledRoutes) -> bool {
    routes.apps.iter().any(|a| a.upstream == Upstream::Whoami)
}

/// What stays for the life of the process, whatever the configuration reloads: the store, the
/// token key, the clock, the access log, and the first-admin setup link.
#[derive(Clone)]
pub(crate) struct Base {
    pub store: Arc<dyn Store>,
    pub sealer: Sealer,
    pub clock: Arc<dyn Clock>,
    pub access_log: Arc<dyn AccessLog>,
    pub setup: Arc<SetupToken>,
    pub workers: usize,
    /// The built-in whoami app's address, once an app has needed it.
    pub whoami: Arc<OnceCell<SocketAddr>>,
}

/// Everything built from one configuration: the state each worker serves with, and the
/// background tasks that go with it (not yet started).
pub(crate) struct Stack {
    pub states: Vec<AppState>,
    sessions: Arc<SessionManager>,
    watcher: ChangeWatcher,
    provisioner: Arc<Provisioner>,
}

/// The background tasks of one [`Stack`], stopped when it is replaced or the process ends.
pub(crate) struct Background {
    sweeper: JoinHandle<()>,
    watching: JoinHandle<()>,
    provisioning: Option<JoinHandle<()>>,
    stop_provisioning: tokio_util::sync::CancellationToken,
}

impl Stack {
    /// Builds every part from a validated configuration.
    pub(crate) async fn build(config: &Config, base: &Base) -> anyhow::Result<Stack> {
        let Base {
            store,
            sealer,
            clock,
            access_log,
            setup,
            workers,
            whoami,
        } = base;
        let providers = Arc::new(Providers::new(&config.providers, clock.clone())?);
        // The one owner of directory writes: sign-ins, refreshes, the admin surfaces and SCIM.
        let directory = Arc::new(
            Directory::new(
                store.clone(),
                clock.clone(),
                Audit::new(store.clone(), clock.clone()),
            )
            .with_known_apps(crate::config::known_apps(config)),
        );
        let sessions = session_manager(config, store, clock, &providers, sealer, &directory);
        let provision_metrics = Arc::new(ProvisionMetrics::default());
        let mut metrics = Metrics::new();
        provision_metrics.register(metrics.registry_mut());
        let local_login = Arc::new(local_login(config, store, clock, &directory)?);
        local_login
            .hasher()
            .register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let provisioner = provisioner(config, store, clock, provision_metrics)?;
        let (gateways, watcher) = gateways(
            config,
            *workers,
            Shared {
                store,
                clock,
                directory: &directory,
                sealer,
                sessions: &sessions,
                metrics: &metrics,
                access_log,
                whoami,
            },
        )
        .await?;
        // Portcullis's own handlers read the routes too; any worker's copy serves.
        let gateway = gateways
            .first()
            .cloned()
            .context("no worker to serve requests")?;
        let oauth = Arc::new(authorization_server(config, store, clock, &gateway)?);
        let state = AppState {
            oauth,
            settings: Arc::new(web_settings(config)),
            store: store.clone(),
            clock: clock.clone(),
            sessions: sessions.clone(),
            local_login,
            factors: Arc::new(second_factors(config, store, clock, sealer)),
            mailer: match &config.smtp {
                Some(smtp) => Some(Arc::new(
                    portcullis_web::mail::Mailer::new(smtp).map_err(anyhow::Error::msg)?,
                )),
                None => None,
            },
            setup: setup.clone(),
            gateway,
            metrics,
            audit: Audit::new(store.clone(), clock.clone()),
            directory,
            providers,
            flows: Arc::new(FlowManager::new(store.clone(), clock.clone())),
            sealer: sealer.clone(),
        };
        let states = gateways
            .into_iter()
            .map(|gateway| AppState {
                gateway,
                ..state.clone()
            })
            .collect();
        Ok(Stack {
            states,
            sessions,
            watcher,
            provisioner,
        })
    }

    /// Starts the background tasks; deliveries get `grace` to finish when they are stopped.
    pub(crate) fn start_background(self, grace: Duration) -> Background {
        let state = &self.states[0];
        let sweeper = tokio::spawn(sweep(
            self.sessions.clone(),
            state.oauth.clone(),
            state.local_login.clone(),
        ));
        let watching = tokio::spawn(self.watcher.run());
        // Delivery runs beside the request path: a sink that is down never slows sign-in.
        let stop_provisioning = tokio_util::sync::CancellationToken::new();
        let provisioning = (!self.provisioner.is_empty()).then(|| {
            tokio::spawn(
                self.provisioner
                    .clone()
                    .run(stop_provisioning.clone(), grace),
            )
        });
        Background {
            sweeper,
            watching,
            provisioning,
            stop_provisioning,
        }
    }
}

impl Background {
    /// Stops them; deliveries under way finish (or are cut off after the grace and their claims
    /// given back) before this returns.
    pub(crate) async fn stop(self) {
        self.sweeper.abort();
        self.watching.abort();
        self.stop_provisioning.cancel();
        if let Some(provisioning) = self.provisioning {
            let _ = provisioning.await;
        }
    }
}

/// The OAuth authorization server of the MCP apps, issuing tokens checked by the gateway's
/// grant ring.
fn authorization_server(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    gateway: &Gateway,
) -> anyhow::Result<AuthorizationServer> {
    let oauth = &config.oauth;
    let documents = if oauth.client_metadata_documents {
        Some(MetadataDocuments::new(oauth).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let clients = Clients::new(oauth, store.clone(), clock.clone(), documents);
    let resources = gateway
        .routes
        .apps()
        .filter_map(|app| {
            app.mcp.as_ref().map(|mcp| Resource {
                app: app.name.clone(),
                resource: mcp.resource.clone(),
                scopes: mcp.scopes.clone(),
            })
        })
        .collect();
    Ok(AuthorizationServer::new(
        oauth,
        config.public_url().trim_end_matches('/').to_owned(),
        clients,
        gateway.auth.grants.clone(),
        (store.clone(), clock.clone()),
        resources,
    ))
}

/// Sessions, refreshed through their providers, trusted during a store outage only for the grace.
fn session_manager(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    providers: &Arc<Providers>,
    sealer: &Sealer,
    directory: &Arc<Directory>,
) -> Arc<SessionManager> {
    let refresher = ProviderRefresher::new(
        providers.clone(),
        sealer.clone(),
        directory.clone(),
        clock.clone(),
    );
    Arc::new(
        SessionManager::new(store.clone(), clock.clone(), config.session.policy())
            .with_outage_grace(config.store.outage_grace)
            .with_refresher(Arc::new(refresher)),
    )
}

/// The sign-in form: local accounts, throttled, and LDAP for accounts without a local password.
fn local_login(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    directory: &Arc<Directory>,
) -> anyhow::Result<LocalLogin> {
    let local = &config.local_auth;
    // Half the cores by default: an attack on the sign-in form must leave the rest to the
    // signed-in traffic (docs/operations.md says how to size it).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let concurrent = local.max_concurrent_hashes.unwrap_or((cores / 2).max(1));
    // Over time hashing gets its share of every core, whatever its slots could take; a second
    // of CPU at full speed first serves a burst of real sign-ins (~50) without waiting.
    let budget = (local.hashing_cpu_share < 1.0).then(|| CpuBudget {
        cores: local.hashing_cpu_share * cores as f64,
        burst: Duration::from_secs(1),
    });
    let hasher = PasswordHasher::with_limits(HashingLimits {
        concurrent,
        queue: local.hash_queue.unwrap_or(concurrent * 4),
        wait: local.hash_queue_wait,
        budget,
    })?;
    // Counted in the store too, so replicas share the counts (the factors' throttle has its own).
    let throttle = LoginThrottle::new(
        clock.clone(),
        local.free_attempts,
        local.base_backoff,
        local.max_backoff,
    )
    .shared(store.clone(), "password");
    let ldap = match &config.ldap {
        Some(ldap) => Some(Arc::new(
            LdapLogin::new(ldap.clone(), directory.clone()).context("setting up LDAP sign-in")?,
        )),
        None => None,
    };
    let policy = PasswordPolicy::with_min_length(local.min_password_length);
    Ok(LocalLogin::new(store.clone(), hasher, throttle)
        .with_policy(policy)
        .with_ldap(ldap))
}

/// Second factors, throttled like passwords (with their own counts: a wrong code does not
/// bring a wrong password's lock closer, and the other way round).
fn second_factors(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    sealer: &Sealer,
) -> SecondFactors {
    let local = &config.local_auth;
    let throttle = LoginThrottle::new(
        clock.clone(),
        local.free_attempts,
        local.base_backoff,
        local.max_backoff,
    )
    .shared(store.clone(), "factor");
    SecondFactors::new(
        store.clone(),
        clock.clone(),
        sealer.clone(),
        throttle,
        &config.mfa.issuer,
    )
    .with_passkeys_for(&config.public_url())
}

fn provisioner(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    metrics: Arc<ProvisionMetrics>,
) -> anyhow::Result<Arc<Provisioner>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client for provisioning")?;
    Ok(Arc::new(Provisioner::new(
        store.clone(),
        clock.clone(),
        portcullis_provision::targets(config, &http),
        config.provisioning.clone(),
        metrics,
    )))
}

/// What every worker's gateway shares with the others and with Portcullis's own handlers.
struct Shared<'a> {
    store: &'a Arc<dyn Store>,
    clock: &'a Arc<dyn Clock>,
    directory: &'a Arc<Directory>,
    sealer: &'a Sealer,
    sessions: &'a Arc<SessionManager>,
    metrics: &'a Arc<Metrics>,
    access_log: &'a Arc<dyn AccessLog>,
    whoami: &'a OnceCell<SocketAddr>,
}

/// The request path (routes, sessions, keys, assertions, identities from outside) for each of
/// `workers` worker threads, and the change watcher that keeps its caches current. The workers
/// share everything but their routes, whose upstream connection pools each worker owns.
async fn gateways(
    config: &Config,
    workers: usize,
    shared: Shared<'_>,
) -> anyhow::Result<(Vec<Arc<Gateway>>, ChangeWatcher)> {
    let Shared {
        store,
        clock,
        directory,
        sealer,
        sessions,
        metrics,
        access_log,
        whoami,
    } = shared;
    // Compiled by the same pass that validated it at load: this cannot fail, but says why if it
    // somehow did rather than starting half-configured.
    let compiled = config.compile().map_err(|issues| {
        anyhow::anyhow!(
            "the configuration is not valid: {}",
            portcullis_core::config::ConfigIssue::list(&issues)
        )
    })?;
    let whoami = if needs_whoami(&compiled.routes) {
        // Started once for the process: a reload reuses it.
        Some(
            *whoami
                .get_or_try_init(portcullis_web::whoami::spawn_upstream)
                .await
                .context("starting the built-in whoami app")?,
        )
    } else {
        None
    };
    let keys = Arc::new(KeyRing::new(store.clone(), clock.clone()));
    keys.reload().await.context("loading API keys")?;
    let grants = Arc::new(GrantRing::new(store.clone(), clock.clone(), sealer.clone()));
    grants.reload().await.context("loading OAuth grants")?;
    let assertions = if config.assertion.enabled {
        let assertions = Assertions::load(
            store.clone(),
            Arc::new(sealer.clone()),
            clock.clone(),
            config.public_url(),
            config.assertion.lifetime,
        )
        .await
        .context("loading the assertion signing keys")?;
        Some(Arc::new(assertions))
    } else {
        None
    };
    let external = ExternalAuth::new(
        config,
        directory.clone(),
        clock.clone(),
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client for identity sources")?,
    );
    let external = (!external.is_empty()).then(|| Arc::new(external));
    let auth = Arc::new(Authenticator {
        sessions: sessions.clone(),
        keys: keys.clone(),
        grants,
        external,
    });
    let watcher = ChangeWatcher::new(store.clone(), auth.clone())
        .await?
        .with_assertions(assertions.clone());
    let trusted = TrustedProxies::new(config.trusted_proxies.clone());
    let gateways = (0..workers.max(1))
        .map(|_| {
            Ok(Arc::new(Gateway {
                routes: Arc::new(RouteTable::build(&compiled.routes, whoami)),
                auth: auth.clone(),
                trusted: trusted.clone(),
                metrics: metrics.clone(),
                assertions: assertions.clone(),
                access_log: access_log.clone(),
                audit: Audit::new(store.clone(), clock.clone()),
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((gateways, watcher))
}

fn web_settings(config: &Config) -> WebSettings {
    WebSettings {
        public_url: config.public_url(),
        cookie_secure: config.cookie_secure(),
        cookie_domain: config.cookie.domain.clone(),
        scim_token: config.scim.as_ref().map(|s| s.token.trim().to_owned()),
        metrics_allowed: config.metrics_allowed.clone(),
        local_auth_enabled: config.local_auth.enabled,
        allowed_redirect_hosts: config.redirect_hosts(),
        reset_link_lifetime: config.local_auth.reset_link_lifetime,
        mfa_required: config.mfa.required,
        refusal_delay: config.local_auth.refusal_delay,
    }
}

/// Deletes expired sessions, the OAuth codes, grants, tokens and idle clients that can no
/// longer be used, and stale sign-in failure counts, every [`SWEEP_INTERVAL`].
async fn sweep(
    sessions: Arc<SessionManager>,
    oauth: Arc<AuthorizationServer>,
    local_login: Arc<LocalLogin>,
) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        match sessions.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired sessions"),
        }
        match oauth.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                "expired OAuth codes, grants and idle clients deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "could not delete expired OAuth rows"),
        }
        // Stale counts of both scopes (the factors' throttle remembers as long as this one).
        match local_login.throttle().sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "stale sign-in failure counts deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete stale sign-in failure counts"),
        }
    }
}
