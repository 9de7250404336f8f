//! A stand-in for Traefik (not packaged in Debian), running the static and dynamic blocks of
//! docs/forward-auth.md. It does what Traefik 3.7 does with exactly those options, read from its
//! source (`pkg/middlewares/forwardedheaders`, `pkg/middlewares/auth/forward.go`,
//! `pkg/server/server_entrypoint_tcp.go`) and documentation:
//!
//! 1. entry point: the client's managed X-headers (`X-Forwarded-For/Proto/Host/Port/Server/Uri/
//!    Method/Prefix/Scheme`, `X-Real-Ip`…) are deleted (the client is not a trusted IP), headers
//!    whose name contains `_` too (`underscoreHeadersStrategy: delete`), then Traefik's own
//!    `X-Forwarded-For/Proto/Host/Port` and `X-Real-Ip` are set;
//! 2. router: `Host(…)` and `!HeaderRegexp(`Upgrade`, `(?i)h2c`)`, else 404;
//! 3. `headers.customRequestHeaders` entries with an empty value delete that header;
//! 4. `forwardAuth` (no `trustForwardHeader`): a GET to `address` with the client's headers
//!    minus hop-by-hop ones and `X-Forwarded-For/Proto/Method/Host/Uri` set from the request; a
//!    non-2xx answer goes to the client as it is (hop-by-hop headers removed); on 2xx each
//!    `authResponseHeaders` name is deleted from the request and copied from the answer;
//! 5. the service: the request is proxied with hop-by-hop and `Connection`-named headers removed.
//!
//! Anything else in the blocks (another rule, another middleware type) fails the test loudly
//! rather than being ignored.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_yaml::Value;

struct Config {
    underscores_deleted: bool,
    host: String,
    excludes_h2c: bool,
    strip: Vec<HeaderName>,
    auth_address: String,
    auth_response_headers: Vec<HeaderName>,
    service: String,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Traefik's managed X-headers (forwardedheaders.XHeadersSet), deleted when sent by a client
/// that is not a trusted IP.
const MANAGED_X_HEADERS: &[&str] = &[
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-scheme",
    "x-real-ip",
];

fn get<'v>(value: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(value, |v, key| {
        v.get(*key)
            .unwrap_or_else(|| panic!("the Traefik block has no {}", path.join(".")))
    })
}

fn text(value: &Value, path: &[&str]) -> String {
    get(value, path).as_str().unwrap().to_owned()
}

fn parse(static_yaml: &str, dynamic_yaml: &str) -> Config {
    let static_config: Value = serde_yaml::from_str(static_yaml).unwrap();
    let dynamic: Value = serde_yaml::from_str(dynamic_yaml).unwrap();
    let strategy = text(
        &static_config,
        &["entryPoints", "web", "http", "underscoreHeadersStrategy"],
    );
    let router = get(&dynamic, &["http", "routers", "chat"]);
    let rule = text(router, &["rule"]);
    let (host, excludes_h2c) = match rule.split_once(" && ") {
        Some((host, "!HeaderRegexp(`Upgrade`, `(?i)h2c`)")) => (host, true),
        None => (rule.as_str(), false),
        Some(_) => panic!("the stand-in does not understand the rule {rule:?}"),
    };
    let host = host
        .strip_prefix("Host(`")
        .and_then(|h| h.strip_suffix("`)"))
        .unwrap_or_else(|| panic!("the stand-in does not understand the rule {rule:?}"))
        .to_owned();
    let middlewares: Vec<String> = get(router, &["middlewares"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        middlewares,
        ["portcullis-strip", "portcullis"],
        "the stand-in runs the strip middleware, then forwardAuth"
    );
    let strip = get(
        &dynamic,
        &[
            "http",
            "middlewares",
            "portcullis-strip",
            "headers",
            "customRequestHeaders",
        ],
    )
    .as_mapping()
    .unwrap()
    .iter()
    .map(|(name, value)| {
        assert_eq!(value.as_str(), Some(""), "only removals are modelled");
        HeaderName::from_bytes(name.as_str().unwrap().as_bytes()).unwrap()
    })
    .collect();
    let auth = get(
        &dynamic,
        &["http", "middlewares", "portcullis", "forwardAuth"],
    );
    let auth_response_headers = get(auth, &["authResponseHeaders"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| HeaderName::from_bytes(n.as_str().unwrap().as_bytes()).unwrap())
        .collect();
    let servers = get(
        &dynamic,
        &["http", "services", "chat", "loadBalancer", "servers"],
    );
    Config {
        underscores_deleted: strategy == "delete",
        host,
        excludes_h2c,
        strip,
        auth_address: text(auth, &["address"]),
        auth_response_headers,
        service: text(&servers[0], &["url"]),
    }
}

/// Starts the stand-in on a free loopback port.
pub async fn start(static_yaml: &str, dynamic_yaml: &str) -> (tokio::task::JoinHandle<()>, u16) {
    let config = Arc::new(parse(static_yaml, dynamic_yaml));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            let http = http.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let config = config.clone();
                    let http = http.clone();
                    async move { Ok::<_, Infallible>(handle(&config, &http, peer, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (task, port)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).unwrap());
}

async fn handle(
    config: &Config,
    http: &reqwest::Client,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let request_uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let headers = &mut parts.headers;

    // 1. The entry point.
    for name in MANAGED_X_HEADERS {
        headers.remove(*name);
    }
    if config.underscores_deleted {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().contains('_'))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
    let client_ip = peer.ip().to_string();
    set(headers, "x-real-ip", &client_ip);
    set(headers, "x-forwarded-proto", "http");
    set(headers, "x-forwarded-host", &host);
    set(headers, "x-forwarded-for", &client_ip);

    // 2. The router.
    let bare_host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let h2c = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("h2c"));
    if !bare_host.eq_ignore_ascii_case(&config.host) || (config.excludes_h2c && h2c) {
        return status(StatusCode::NOT_FOUND);
    }

    // 3. The strip middleware.
    for name in &config.strip {
        headers.remove(name);
    }

    // 4. forwardAuth.
    let mut auth_headers = headers.clone();
    remove_hop_by_hop(&mut auth_headers);
    auth_headers.remove("host");
    set(&mut auth_headers, "x-forwarded-for", &client_ip);
    set(&mut auth_headers, "x-forwarded-proto", "http");
    set(
        &mut auth_headers,
        "x-forwarded-method",
        parts.method.as_str(),
    );
    set(&mut auth_headers, "x-forwarded-host", &host);
    set(&mut auth_headers, "x-forwarded-uri", &request_uri);
    let Ok(answer) = http
        .get(&config.auth_address)
        .headers(auth_headers)
        .send()
        .await
    else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if !answer.status().is_success() {
        let code = answer.status();
        let mut copied = answer.headers().clone();
        remove_hop_by_hop(&mut copied);
        copied.remove("content-length");
        let body = answer.bytes().await.unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = code;
        *response.headers_mut() = copied;
        return response;
    }
    for name in &config.auth_response_headers {
        headers.remove(name);
        for value in answer.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }

    // 5. The service.
    remove_hop_by_hop(headers);
    headers.remove("host");
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(response) = http
        .request(
            parts.method.clone(),
            format!("{}{request_uri}", config.service),
        )
        .headers(parts.headers)
        .body(body)
        .send()
        .await
    else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = response.status();
    let mut copied = response.headers().clone();
    remove_hop_by_hop(&mut copied);
    copied.remove("content-length");
    let body = response.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = code;
    *out.headers_mut() = copied;
    out
}
