//! Talking to apps: pooled HTTP/1.1 connections per app and worker (over TCP, TLS or a Unix
//! socket), streaming bodies both ways, and tunnels for protocol upgrades (WebSocket and any
//! other `Upgrade`).

mod pool;
mod stream;
pub mod tls;

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis_core::{Failure, FailureKind};

use portcullis_auth::guards::StreamGuard;

use crate::body::{ClientBodyError, FromClient, Guarded, IdleTimeout};
use crate::routes::App;

pub use pool::{Pool, Transport};
use pool::{Pooled, SendError};
use portcullis_core::config::{CompiledRoutes, Upstream, UpstreamTransport};
use portcullis_http::forwarded::strip_port;

/// How new connections to an app are made. An https app's TLS client is built from its files
/// here; if that fails (they changed since [`check_tls`] passed) the app answers 502 with why.
pub fn transport(upstream: &Upstream, authority: &str) -> Transport {
    match upstream {
        Upstream::Whoami => Transport::Tcp,
        Upstream::Http(url) => match &url.transport {
            UpstreamTransport::Tcp => Transport::Tcp,
            UpstreamTransport::Unix(path) => Transport::Unix(path.clone()),
            UpstreamTransport::Tls(config) => match tls::client(config, strip_port(authority)) {
                Ok(tls) => Transport::Tls(tls),
                Err(e) => {
                    tracing::error!(error = %e, "an app's TLS client could not be built");
                    Transport::Broken(e.to_string())
                }
            },
        },
    }
}

/// Every https app's TLS client, built once to find what is wrong with its files before
/// anything listens: `(config key, problem)` for each that fails. `check-config` reports them.
pub fn check_tls(routes: &CompiledRoutes) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, app) in routes.apps.iter().enumerate() {
        if let Upstream::Http(url) = &app.upstream
            && let UpstreamTransport::Tls(config) = &url.transport
        {
            if let Err(e) = tls::client(config, strip_port(&url.authority)) {
                problems.push((format!("apps[{i}].upstream_tls"), e.to_string()));
            }
            if config.insecure_skip_verify {
                tracing::warn!(
                    app = %app.name,
                    "upstream_tls.insecure_skip_verify is on: anyone between Portcullis and the app can read and change its traffic, identity headers included"
                );
            }
        }
    }
    problems
}

fn classify(error: &SendError, app: &str) -> Failure {
    if let SendError::Exchange(e) = error
        && let Some(client) = ClientBodyError::in_chain(e)
    {
        tracing::info!(app, error = %client, "request body failed on the client's side");
        return Failure::bad_request(client.to_string()).with_hint(
            "the request body was malformed or stopped arriving; check the client (e.g. its chunked encoding)",
        );
    }
    let message = match error {
        SendError::Connect(_) => format!("Portcullis could not connect to the app \"{app}\""),
        SendError::Exchange(_) => {
            format!("the app \"{app}\" closed the connection before answering")
        }
        SendError::Tls(why) => {
            format!("Portcullis did not trust the app \"{app}\" over TLS: {why}")
        }
        SendError::Setup(why) => {
            format!("Portcullis cannot make TLS connections to the app \"{app}\": {why}")
        }
    };
    tracing::warn!(app, error = %error, "upstream request failed");
    let hint = match error {
        SendError::Tls(_) | SendError::Setup(_) => {
            "nothing was sent to the app; the operator must fix its certificate or [apps.upstream_tls]"
        }
        _ => {
            "the app may be down or restarting; try again in a moment, or ask the operator to check it"
        }
    };
    Failure::new(FailureKind::UpstreamUnavailable, message).with_hint(hint)
}

/// Sends `request` (already rewritten, with an origin-form URI) to the app and returns its
/// response with a streaming body. A `101 Switching Protocols` answer to an upgrade request becomes a byte tunnel between the
/// client and the app, run on its own task.
///
/// With a `guard`, the response stream (or tunnel) closes as soon as the session or key that
/// opened it ends.
pub async fn send(
    app: &App,
    mut request: Request<Body>,
    upgrade: Option<HeaderValue>,
    guard: Option<StreamGuard>,
) -> Result<Response<Body>, Failure> {
    let timeouts = &app.timeouts;
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    if let Some(protocol) = &upgrade {
        let headers = request.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    // An empty body (most GETs) needs no idle timer.
    let request = if request.body().is_end_stream() {
        request
    } else {
        request.map(|body| Body::new(FromClient(IdleTimeout::new(body, timeouts.idle))))
    };

    let (response, connection) =
        match tokio::time::timeout(timeouts.response_header, app.upstream.send(request)).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::UpstreamTimeout,
                    format!(
                        "the app \"{}\" did not start answering within {} s",
                        app.name,
                        timeouts.response_header.as_secs()
                    ),
                )
                .with_hint(
                    "the app may be overloaded; the operator can raise timeouts.response_header",
                ));
            }
            Ok(Err(e)) => return Err(classify(&e, &app.name)),
            Ok(Ok(response)) => response,
        };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return tunnel(app, response, connection, client_upgrade, upgrade, guard);
    }

    let (mut parts, body) = response.into_parts();
    app.response_drop.apply(&mut parts.headers);
    let body = IdleTimeout::new(Pooled::new(body, connection), timeouts.idle);
    let body = match guard {
        Some(guard) => Body::new(Guarded::new(body, guard)),
        None => Body::new(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// The protocol of an app's `101` answer, if it is one the client asked for.
fn switched_to<'r>(
    response: &'r Response<Incoming>,
    requested: &HeaderValue,
) -> Option<&'r HeaderValue> {
    let answered = response.headers().get(header::UPGRADE)?;
    let name = |p: &str| p.split('/').next().unwrap_or(p).trim().to_ascii_lowercase();
    let answered_name = name(answered.to_str().ok()?);
    requested
        .to_str()
        .ok()?
        .split(',')
        .any(|p| name(p) == answered_name)
        .then_some(answered)
}

/// Turns the app's `101 Switching Protocols` into a byte tunnel between the client and the
/// app, run on its own task. Only an answer to an upgrade the client asked for (and the gateway
/// admitted), switching to one of the requested protocols, becomes a tunnel; the 101 keeps only
/// `Connection: upgrade` and `Upgrade` of its hop-by-hop headers.
fn tunnel(
    app: &App,
    mut response: Response<Incoming>,
    connection: pool::Connection,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    requested: Option<HeaderValue>,
    guard: Option<StreamGuard>,
) -> Result<Response<Body>, Failure> {
    let protocol = match (&client_upgrade, &requested) {
        (Some(_), Some(requested)) => switched_to(&response, requested).cloned(),
        _ => None,
    };
    let (Some(client_upgrade), Some(protocol)) = (client_upgrade, protocol) else {
        tracing::warn!(app = %app.name, "the app switched protocols unasked, or to another protocol than requested");
        return Err(Failure::new(
            FailureKind::UpstreamUnavailable,
            format!(
                "the app \"{}\" switched to a protocol the client did not ask for",
                app.name
            ),
        )
        .with_hint("the app's answer was not passed on; ask the operator to check the app"));
    };
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let name = app.name.clone();
    let guard = guard.unwrap_or_default();
    let sender = connection.into_sender();
    tokio::spawn(async move {
        let upgraded = tokio::try_join!(client_upgrade, upstream_upgrade);
        drop(sender);
        match upgraded {
            Ok((client_io, upstream_io)) => {
                let mut client_io = TokioIo::new(client_io);
                let mut upstream_io = TokioIo::new(upstream_io);
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io) => {
                        if let Err(e) = copied {
                            tracing::debug!(app = %name, error = %e, "upgraded connection ended with an error");
                        }
                    }
                    () = guard.cancelled() => {
                        tracing::info!(app = %name, "closing an upgraded connection: its session or key ended");
                    }
                }
            }
            Err(e) => tracing::debug!(app = %name, error = %e, "upgrade did not complete"),
        }
    });
    let (mut parts, _) = response.into_parts();
    app.response_drop.apply(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, protocol);
    Ok(Response::from_parts(parts, Body::empty()))
}
