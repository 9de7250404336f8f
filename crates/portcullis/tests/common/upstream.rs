//! A real HTTP upstream for the tests: echoes what it received, streams SSE under the test's
//! control, speaks WebSocket, counts uploads, and misbehaves on request (slow headers, stalls).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::sync::{Mutex, mpsc};

#[derive(Clone, Default)]
struct Shared {
    /// Events the test pushes; the SSE endpoint forwards each one as soon as it arrives.
    sse: Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    sse_tx: mpsc::UnboundedSender<String>,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests reached the upstream so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Makes the upstream's open SSE response send one event now.
    pub fn send_event(&self, data: &str) {
        self.sse_tx.send(data.to_owned()).unwrap();
    }
}

async fn echo(request: Request) -> Response {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    axum::Json(serde_json::json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
        "headers": headers,
    }))
    .into_response()
}

async fn sse(State(shared): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = shared
        .sse
        .lock()
        .await
        .take()
        .expect("one SSE stream per upstream");
    let stream = tokio_stream_from(rx).map(|data| Ok(Event::default().data(data)));
    Sse::new(stream)
}

fn tokio_stream_from(mut rx: mpsc::UnboundedReceiver<String>) -> impl Stream<Item = String> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn ws(upgrade: WebSocketUpgrade, request_headers: http::HeaderMap) -> Response {
    let user = request_headers
        .get("x-forwarded-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    upgrade.on_upgrade(move |socket| ws_echo(socket, user))
}

async fn ws_echo(mut socket: WebSocket, user: String) {
    let _ = socket
        .send(Message::Text(format!("hello {user}").into()))
        .await;
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(t) => Message::Text(format!("echo:{t}").into()),
            Message::Binary(b) => Message::Binary(b),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

async fn upload(request: Request) -> String {
    let mut body = request.into_body();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                }
            }
            Err(e) => return format!("error after {total}: {e}"),
        }
    }
    total.to_string()
}

async fn slow_headers() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

/// Sends a chunk every 200 ms, `n` times: a long stream that is never idle for long.
async fn trickle(axum::extract::Path(n): axum::extract::Path<u32>) -> Response {
    let stream = futures_util::stream::unfold(0u32, move |i| async move {
        if i >= n {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Response::new(Body::from_stream(stream))
}

/// Sends one chunk, then nothing, forever.
async fn stall() -> Response {
    let first =
        futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"first\n")) });
    let never = futures_util::stream::pending();
    Response::new(Body::from_stream(first.chain(never)))
}

pub async fn start() -> Upstream {
    let (sse_tx, sse_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        sse: Arc::new(Mutex::new(Some(sse_rx))),
    };
    let app = Router::new()
        .route("/sse", get(sse))
        .route("/ws", any(ws))
        .route("/upload", post(upload))
        .route("/slow-headers", get(slow_headers))
        .route("/trickle/{n}", get(trickle))
        .route("/stall", get(stall))
        .fallback(echo)
        .with_state(shared);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = app.layer(tower::util::MapRequestLayer::new(
        move |request: Request| {
            counter.fetch_add(1, Ordering::SeqCst);
            request
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream { addr, sse_tx, hits }
}
