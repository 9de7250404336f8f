//! The HTTP server: Portcullis's own routes in front of the gateway, served by hyper with limits
//! on header size and header read time, protocol upgrades enabled, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::Uri;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use portcullis_core::Failure;
use portcullis_core::config::{
    OAUTH_DISCOVERY_PREFIXES, OAUTH_FALLBACK_PATHS, RESERVED_PREFIXES, SHARED_PREFIXES,
};
use portcullis_core::path::{canonicalize, has_prefix};
use portcullis_http::forwarded::TlsConnection;
use portcullis_http::respond;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::either::Either;
use tower::ServiceExt;

use crate::linger::Lingering;
use crate::state::AppState;
use crate::tls::{ACME_TLS_ALPN, ListenerTls};
use crate::workers::{Handoff, Workers};
use crate::{
    account, account_factors, admin, api, backchannel, factor_pages, factors, forward_auth,
    grants_panel, health, mcp, oauth, oidc, passkey_sign_in, passwords, scim, setup, sign_in,
    sign_out, whoami,
};
use portcullis_proxy::Gateway;

/// Largest request head (request line + headers) accepted; larger ones get 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send its request head (slowloris protection).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client has this long to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 streams one connection may have open at once (nginx: 128).
const MAX_CONCURRENT_STREAMS: u32 = 128;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ping", get(health::ping))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route(
            "/.portcullis/sign_in",
            get(sign_in::form).post(sign_in::submit),
        )
        .route(
            "/.portcullis/sign_out",
            get(sign_out::sign_out).post(sign_out::sign_out),
        )
        .route(
            "/oauth2/sign_out",
            get(sign_out::sign_out).post(sign_out::sign_out),
        )
        .route("/.portcullis/setup", get(setup::form).post(setup::submit))
        .route(
            passwords::RESET_PATH,
            get(passwords::reset_form).post(passwords::reset_submit),
        )
        .route(
            passwords::MUST_CHANGE_PATH,
            post(passwords::must_change_submit),
        )
        .route(factor_pages::FACTOR_PATH, post(factors::submit))
        .route(
            factor_pages::ENROL_PATH,
            get(account_factors::enrol_form).post(account_factors::enrol_submit),
        )
        .route(
            factor_pages::PASSKEY_PATH,
            post(account_factors::add_passkey),
        )
        .route(
            factor_pages::PASSKEY_SIGN_IN_PATH,
            post(passkey_sign_in::submit),
        )
        .route(
            "/.portcullis/account/factors/{id}/remove",
            post(account_factors::remove),
        )
        .route(
            "/.portcullis/account/recovery-codes",
            post(account_factors::renew_recovery_codes),
        )
        .route("/.portcullis/whoami", get(whoami::me))
        .route("/.portcullis/signed_out", get(sign_out::signed_out))
        .route("/.portcullis/start/{provider}", get(oidc::start))
        .route("/oauth2/start", get(oidc::oauth2_start))
        .route(
            "/.portcullis/backchannel_logout/{provider}",
            post(backchannel::receive),
        )
        .route("/oauth2/callback", get(oidc::callback))
        .route(
            "/oauth2/auth",
            axum::routing::any(forward_auth::oauth2_auth),
        )
        .route("/oauth2/userinfo", get(forward_auth::userinfo))
        .route("/.well-known/jwks.json", get(forward_auth::jwks))
        .route(
            "/.well-known/oauth-protected-resource",
            get(mcp::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(mcp::protected_resource),
        )
        .route("/.portcullis/jwks.json", get(forward_auth::jwks))
        .route(
            "/.portcullis/authz/auth-request",
            axum::routing::any(forward_auth::auth_request),
        )
        .route(
            "/.portcullis/authz/forward-auth",
            axum::routing::any(forward_auth::forward_auth),
        )
        .route("/.portcullis/callback", get(oidc::callback))
        .merge(api::routes())
        .merge(scim::routes())
        .merge(oauth::routes())
        // Always reachable, even where an app behind Portcullis has its own /api/v1.
        .nest("/.portcullis", api::routes())
        .merge(admin::routes())
        .route("/.portcullis/account", get(account::page))
        .route("/.portcullis/account/keys", post(account::create_key))
        .route(
            "/.portcullis/account/password",
            post(account::change_password),
        )
        .route(
            "/.portcullis/account/keys/{id}/revoke",
            post(account::revoke_key),
        )
        .route(
            "/.portcullis/account/grants/{id}/revoke",
            post(grants_panel::revoke_own),
        )
        .route(
            "/.portcullis/account/sessions/{id}/end",
            post(account::end_session),
        )
        .route("/api/v1/{*rest}", axum::routing::any(api::not_found))
        .route(
            "/.portcullis/api/v1/{*rest}",
            axum::routing::any(api::not_found),
        )
        .fallback(proxy)
        .with_state(state)
}

/// What the router does not serve itself. Shared paths that no app claimed go to the gateway
/// (the built-in whoami app, when no app is configured); Portcullis's own prefixes never do:
/// an unknown `/.portcullis/…` or `/oauth2/…` path is a 404 from Portcullis, not an app's page.
async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path();
    if RESERVED_PREFIXES
        .iter()
        .any(|prefix| has_prefix(path, prefix))
    {
        let failure = Failure::new(
            portcullis_core::FailureKind::NotFound,
            "Portcullis has no page at this address",
        )
        .with_hint("check the link; Portcullis's own pages live under /.portcullis/");
        let browser = respond::is_browser_navigation(request.headers(), path);
        return respond::failure(&failure, browser);
    }
    state.gateway.handle(request, peer).await
}

/// Routing happens on the canonical path, so `/x/../.portcullis/sign_in` and
/// `/%2eportcullis/sign_in` reach the same handler as the plain spelling.
fn canonical_uri(uri: &Uri) -> Result<Option<Uri>, Failure> {
    let canonical = canonicalize(uri.path()).map_err(|e| Failure::bad_request(e.to_string()))?;
    if canonical == uri.path() {
        return Ok(None);
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map(Some)
        .map_err(|_| Failure::bad_request("the request URL is not valid"))
}

/// Whether Portcullis answers this (canonical) path itself; everything else goes to an app.
fn is_own_path(path: &str) -> bool {
    matches!(path, "/ping" | "/ready" | "/metrics")
        || RESERVED_PREFIXES
            .iter()
            .chain(OAUTH_DISCOVERY_PREFIXES)
            .any(|prefix| has_prefix(path, prefix))
}

/// The paths Portcullis shares with apps (`/api/v1`, …): its own unless a configured app matches.
fn is_shared_path(path: &str) -> bool {
    SHARED_PREFIXES
        .iter()
        .any(|prefix| has_prefix(path, prefix))
}

/// Starts the worker threads and returns the accept loop, which serves Portcullis on `listener`
/// until `shutdown` resolves and then lets in-flight requests finish for up to `grace`. Fails
/// only when the workers cannot be started.
///
/// Connections are accepted here and served by one worker thread per state in `workers` (see
/// [`crate::workers`]); each state carries the gateway whose upstream pools that worker owns.
pub fn serve(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    workers: Vec<watch::Receiver<AppState>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<impl Future<Output = ()>> {
    let mut workers = Workers::start(workers, move |live, connections| {
        serve_connections(connections, live, tls.clone(), grace)
    })?;
    Ok(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => workers.dispatch(stream, peer),
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!(
            "shutting down: waiting up to {} s for in-flight requests",
            grace.as_secs()
        );
        workers.finish().await;
        tracing::info!("every worker has stopped");
    })
}

/// One worker: serves the connections it is handed until the acceptor stops handing them, then
/// lets in-flight requests finish for up to `grace`. Requests for apps go straight to the
/// gateway; the router sees only Portcullis's own paths.
async fn serve_connections(
    mut connections: mpsc::UnboundedReceiver<Handoff>,
    mut live: watch::Receiver<AppState>,
    tls: Option<ListenerTls>,
    grace: Duration,
) {
    let mut state = live.borrow_and_update().clone();
    let mut router = router(state.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    // Rapid-reset protection (CVE-2023-44487) is h2's default: at most 20 streams reset by the
    // client before they were handled, then the connection is closed.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024));
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = connections.recv().await {
        // A reloaded configuration serves the connections accepted from now on; those open
        // keep the state they started with.
        if live.has_changed().unwrap_or(false) {
            state = live.borrow_and_update().clone();
            router = crate::server::router(state.clone());
        }
        // Registered with this worker's runtime: the connection is driven here for its life.
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "could not take over a connection");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.metrics.connections.inc();
        let router = router.clone();
        let gateway = state.gateway.clone();
        let hsts = tls.as_ref().and_then(|tls| tls.hsts.clone());
        let secure = tls.is_some();
        let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            let router = router.clone();
            let gateway = gateway.clone();
            let hsts = hsts.clone();
            async move {
                if let Err(failure) = authority_as_host(&mut request) {
                    return Ok::<_, Infallible>(respond::failure(&failure, false));
                }
                if secure {
                    request.extensions_mut().insert(TlsConnection);
                }
                let mut response = route(request, &router, &gateway, peer).await;
                if let Some(hsts) = hsts {
                    response
                        .headers_mut()
                        .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(stream) = handshake(Lingering::new(stream), tls.as_ref(), peer).await else {
                return;
            };
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("a worker's connections have all closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// The connection as HTTP will read it: as it came, or after the TLS handshake (within its
/// timeout). `None`: the handshake failed, and the connection is dropped.
async fn handshake(
    stream: Lingering,
    tls: Option<&ListenerTls>,
    peer: SocketAddr,
) -> Option<Either<Lingering, tokio_rustls::server::TlsStream<Lingering>>> {
    let Some(tls) = tls else {
        return Some(Either::Left(stream));
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        // An ACME CA's TLS-ALPN-01 check: it has seen the challenge certificate, and the
        // connection carries nothing else (RFC 8737 §3).
        Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => None,
        Ok(Ok(stream)) => Some(Either::Right(stream)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// One request: Portcullis's own paths to the router, everything else to the gateway.
async fn route(
    mut request: Request<hyper::body::Incoming>,
    router: &Router,
    gateway: &Gateway,
    peer: SocketAddr,
) -> Response {
    match canonical_uri(request.uri()) {
        Ok(Some(uri)) => *request.uri_mut() = uri,
        Ok(None) => {}
        Err(failure) => return respond::failure(&failure, false),
    }
    let path = request.uri().path();
    let own = is_own_path(path)
        || (is_shared_path(path) && !gateway.app_claims(&request, peer))
        || (OAUTH_FALLBACK_PATHS.contains(&path) && !gateway.web_app_claims(&request, peer));
    if !own {
        return gateway.handle(request.map(Body::new), peer).await;
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    match router.clone().oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// One host per request, in the `Host` header where every part of Portcullis reads it. HTTP/2
/// carries it in `:authority` (which hyper puts in the URI) and usually sends no `Host`; an
/// HTTP/1.1 request in absolute form has both. When both are present they must agree: a
/// request naming two hosts could be routed by one and judged by the other.
fn authority_as_host<B>(request: &mut Request<B>) -> Result<(), Failure> {
    let Some(authority) = request.uri().authority().map(|a| a.as_str().to_owned()) else {
        return Ok(());
    };
    match request.headers().get(http::header::HOST) {
        None => {
            let value = http::HeaderValue::from_str(&authority)
                .map_err(|_| Failure::bad_request("the request's authority is not a valid host"))?;
            request.headers_mut().insert(http::header::HOST, value);
            Ok(())
        }
        Some(host) if host.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => Ok(()),
        Some(_) => Err(Failure::bad_request(
            "the request names two different hosts (its URL and its Host header)",
        )
        .with_hint("send one host: the Host header must match the URL's authority")),
    }
}
