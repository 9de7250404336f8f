//! The plain-HTTP listener of `[tls] redirect_http`: it answers ACME HTTP-01 checks and
//! redirects everything else to https.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use portcullis_http::forwarded::{strip_port, valid_host};
use tokio::net::TcpListener;

use super::CurrentCertificate;

/// Where HTTP-01 checks ask (RFC 8555 §8.3).
const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Serves the plain-HTTP listener of `[tls] redirect_http`: every request is answered `308` to
/// the same host and path over https (on `https_port`), except the CA's HTTP-01 checks while an
/// ACME order runs (answered from `certificate`'s challenges). Nothing else is served on it.
pub async fn redirect_to_https(
    listener: TcpListener,
    https_port: u16,
    certificate: Arc<CurrentCertificate>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the redirect listener");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let certificate = certificate.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let answer = challenge_answer(&request, &certificate);
            async move {
                Ok::<_, Infallible>(match answer {
                    Some(answer) => answered(answer),
                    None => redirect(&request, https_port),
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn challenge_answer(
    request: &Request<Incoming>,
    certificate: &CurrentCertificate,
) -> Option<String> {
    let token = request.uri().path().strip_prefix(CHALLENGE_PATH)?;
    certificate.challenges.http_answer(token)
}

fn answered(key_authorization: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(key_authorization)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn redirect(request: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| strip_port(h).to_owned())
        .filter(|h| valid_host(h));
    let Some(host) = host else {
        return plain(
            StatusCode::BAD_REQUEST,
            None,
            "This address needs a Host header.\n",
        );
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => plain(
            StatusCode::PERMANENT_REDIRECT,
            Some(location),
            "This site is served over https.\n",
        ),
        Err(_) => plain(
            StatusCode::BAD_REQUEST,
            None,
            "The request URL is not valid.\n",
        ),
    }
}

fn plain(
    status: StatusCode,
    location: Option<HeaderValue>,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    response
}
