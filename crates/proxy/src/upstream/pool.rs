//! Kept-alive HTTP/1.1 connections to one app — over TCP, TLS or a Unix socket — made and
//! reused by the worker that owns them.
//!
//! Every worker thread has its own route table, so a pool is only ever used from one thread:
//! a request, its upstream connection and the task driving that connection stay together, and
//! the pool's lock is never contended. (hyper-util's general-purpose client hashed a pool key,
//! boxed each request's future and spawned a task per request to return its connection.)
//!
//! A connection goes back to the pool when its response body has been read to the end; one
//! whose response was abandoned half-way is closed instead. A request that a reused connection
//! turned away unsent (the app had closed it while idle, as uvicorn does after 5 s) is sent again
//! on another connection.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use super::stream::Stream;
use super::tls::{UpstreamTls, handshake_failure};

/// How long an unused connection is kept: less than the keep-alive of common app servers would
/// be ideal, but those close their end and the pool notices; this bounds the rest.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// Enough for bursts of concurrent requests to one app; more are closed when they finish.
const MAX_IDLE: usize = 256;

/// Why a request did not get a response from the app.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, unresolvable, timed out).
    Connect(io::Error),
    /// The TLS handshake failed; the text says why (a certificate refused, say).
    Tls(String),
    /// The app's TLS client could not be set up (its files changed since the check).
    Setup(String),
    /// The connection failed before the response head arrived.
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Tls(why) => write!(f, "TLS: {why}"),
            SendError::Setup(why) => write!(f, "TLS setup: {why}"),
            SendError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

/// The connections to one app.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// How a new connection to the app is made.
#[derive(Debug)]
pub enum Transport {
    Tcp,
    Tls(UpstreamTls),
    Unix(std::path::PathBuf),
    /// The TLS client could not be built; every request gets a 502 saying why.
    Broken(String),
}

struct Shared {
    /// `host:port` to connect to (TCP and TLS).
    address: String,
    transport: Transport,
    connect_timeout: Duration,
    /// Most recently returned last: the warmest connection is reused first, and the coldest
    /// ones age out at the front.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// A pool for the app at `authority` (`host` or `host:port`, port 80 by default).
    pub fn new(authority: &str, transport: Transport, connect_timeout: Duration) -> Self {
        let address = match authority.rsplit_once(':') {
            Some((_, port)) if !port.contains(']') => authority.to_owned(),
            _ => format!("{authority}:80"),
        };
        Pool {
            shared: Arc::new(Shared {
                address,
                transport,
                connect_timeout,
                idle: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) and returns the response head. The
    /// connection returns to the pool once the response body has been read to its end.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<(Response<Incoming>, Connection), SendError> {
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let connection = Connection {
                        pool: self.clone(),
                        sender: Some(sender),
                    };
                    return Ok((response, connection));
                }
                Err(mut error) => match error.take_message() {
                    // Turned away unsent by a connection the app had closed: try another. A
                    // fresh connection that does this will not do better next time.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(error.into_error())),
                },
            }
        }
    }

    /// The warmest idle connection that is still open and ready for a request.
    async fn checkout(&self) -> Option<SendRequest<Body>> {
        loop {
            let Idle { mut sender, since } = self.idle().pop_back()?;
            if sender.is_closed() || since.elapsed() >= IDLE_FOR {
                continue;
            }
            // Ready at once in practice: a connection is only returned once its exchange is
            // over.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// A new connection, TLS handshake included, within the connect timeout.
    async fn open(&self) -> Result<Stream, SendError> {
        let address = self.shared.address.as_str();
        let tcp = || async {
            let stream = TcpStream::connect(address)
                .await
                .map_err(SendError::Connect)?;
            stream.set_nodelay(true).map_err(SendError::Connect)?;
            Ok::<_, SendError>(stream)
        };
        let opening = async {
            Ok(match &self.shared.transport {
                Transport::Tcp => Stream::Tcp(tcp().await?),
                Transport::Tls(tls) => {
                    let stream = tcp().await?;
                    let stream = tls
                        .connector
                        .connect(tls.server_name.clone(), stream)
                        .await
                        .map_err(|e| SendError::Tls(handshake_failure(&e)))?;
                    Stream::Tls(Box::new(stream))
                }
                Transport::Unix(path) => Stream::Unix(
                    UnixStream::connect(path)
                        .await
                        .map_err(SendError::Connect)?,
                ),
                Transport::Broken(why) => return Err(SendError::Setup(why.clone())),
            })
        };
        tokio::time::timeout(self.shared.connect_timeout, opening)
            .await
            .map_err(|_| {
                SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection to {address} within the connect timeout"),
                ))
            })?
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = self.open().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Exchange)?;
        // Driven on this worker, next to the requests that use it.
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn put_back(&self, sender: SendRequest<Body>) {
        let now = Instant::now();
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_FOR)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { sender, since: now });
        }
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// The connection a response came on, until its body is read to the end.
pub struct Connection {
    pool: Pool,
    sender: Option<SendRequest<Body>>,
}

impl Connection {
    /// Returns the connection to its pool. One still finishing its exchange (the app answered
    /// before reading the whole request body, say) waits for that on its own task.
    fn release(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        if sender.is_ready() {
            self.pool.put_back(sender);
        } else if !sender.is_closed() {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put_back(sender);
                }
            });
        }
    }

    /// Keeps the connection open until an upgrade completes, then lets it go.
    pub fn into_sender(mut self) -> Option<SendRequest<Body>> {
        self.sender.take()
    }
}

/// A response body that returns its connection to the pool when read to the end. Dropped
/// before that, it closes the connection (the rest of the body would have to be read first).
pub struct Pooled {
    inner: Incoming,
    connection: Connection,
}

impl Pooled {
    pub fn new(inner: Incoming, mut connection: Connection) -> Self {
        // An empty body is never polled.
        if http_body::Body::is_end_stream(&inner) {
            connection.release();
        }
        Pooled { inner, connection }
    }
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            // A body of known length is over with its last frame, and may not be polled again.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.connection.release(),
            Poll::Ready(None) => this.connection.release(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An app that answers every request on a connection with `body`, counting connections,
    /// and closes each connection after `per_connection` requests.
    async fn app(body: &'static str, per_connection: usize) -> (String, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(Mutex::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                *count.lock().unwrap() += 1;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..per_connection {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = socket.read(&mut buf).await.unwrap();
                            if n == 0 {
                                return;
                            }
                            seen.extend_from_slice(&buf[..n]);
                        }
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        socket.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (address, connections)
    }

    fn get(address: &str) -> Request<Body> {
        Request::get("/")
            .header(http::header::HOST, address)
            .body(Body::empty())
            .unwrap()
    }

    async fn read(pool: &Pool, address: &str) -> String {
        let (response, connection) = pool.send(get(address)).await.unwrap();
        let body = Pooled::new(response.into_body(), connection);
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (address, connections) = app("hello", 100).await;
        let pool = Pool::new(&address, Transport::Tcp, Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(read(&pool, &address).await, "hello");
        }
        assert_eq!(*connections.lock().unwrap(), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_response_does_not_return_its_connection() {
        let (address, connections) = app("hello", 100).await;
        let pool = Pool::new(&address, Transport::Tcp, Duration::from_secs(1));
        let (response, connection) = pool.send(get(&address)).await.unwrap();
        drop(Pooled::new(response.into_body(), connection));
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(read(&pool, &address).await, "hello");
        assert_eq!(*connections.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_while_idle_is_replaced() {
        // The app closes every connection after one answer, as if its keep-alive had run out.
        let (address, connections) = app("again", 1).await;
        let pool = Pool::new(&address, Transport::Tcp, Duration::from_secs(1));
        for _ in 0..3 {
            assert_eq!(read(&pool, &address).await, "again");
        }
        assert_eq!(*connections.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Pool::new(&address, Transport::Tcp, Duration::from_secs(1));
        match pool.send(get(&address)).await {
            Err(SendError::Connect(_)) => {}
            Err(other) => panic!("expected a connect error, got {other}"),
            Ok(_) => panic!("a closed port answered"),
        }
    }

    #[test]
    fn the_port_defaults_to_80() {
        let address = |authority| {
            Pool::new(authority, Transport::Tcp, Duration::ZERO)
                .shared
                .address
                .clone()
        };
        assert_eq!(address("app"), "app:80");
        assert_eq!(address("app:8080"), "app:8080");
        assert_eq!(address("[::1]"), "[::1]:80");
        assert_eq!(address("[::1]:3000"), "[::1]:3000");
    }
}
