//! A body wrapper that ends a stream which stays silent for too long.
//!
//! This is an idle timeout, not a total one: a 20-minute SSE stream that keeps sending lives on.
//! The clock only runs while the body is waiting for data, so time spent waiting for the other
//! side to accept data (back-pressure) does not count.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use portcullis_auth::guards::StreamGuard;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub struct IdleTimeoutError(pub Duration);

impl std::fmt::Display for IdleTimeoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no data for {} s; stream closed", self.0.as_secs())
    }
}

impl std::error::Error for IdleTimeoutError {}

pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Made on the first wait: most bodies (short responses) are ready when first polled and
    /// never need a timer.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle = this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        // The clock runs from the start of a wait, not from each poll during it.
        if !this.waiting {
            timer.as_mut().reset(Instant::now() + idle);
            this.waiting = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeoutError(idle))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a guarded stream ended early.
#[derive(Debug, Clone, Copy)]
pub struct AccessEnded;

impl std::fmt::Display for AccessEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the session or key behind this stream ended")
    }
}

impl std::error::Error for AccessEnded {}

/// A body that ends as soon as the session or API key that opened it ends (sign-out, disabled
/// user, revoked key), so a long SSE stream cannot outlive the access that started it.
pub struct Guarded<B> {
    inner: B,
    guard: StreamGuard,
    /// Made on the first wait, like [`IdleTimeout`]'s timer.
    ended: Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, guard: StreamGuard) -> Self {
        Guarded {
            inner,
            guard,
            ended: None,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        // Data already there flows (a short response that raced the end completes cleanly); a
        // stream that is waiting for more is cut once its access has ended.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let guard = &this.guard;
        let ended = this
            .ended
            .get_or_insert_with(|| Box::pin(guard.cancelled_owned()));
        if ended.as_mut().poll(cx).is_ready() {
            Poll::Ready(Some(Err(Box::new(AccessEnded))))
        } else {
            Poll::Pending
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed on its way to the app: a malformed chunked encoding, a
/// connection cut mid-upload, or no data for the idle timeout. The gateway answers 400 for it
/// instead of blaming the app with a 502.
#[derive(Debug)]
pub struct ClientBodyError(pub BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body could not be read: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl ClientBodyError {
    /// The client's body failure somewhere in an error's chain of causes, if that is what it was.
    pub fn in_chain<'e>(
        error: &'e (dyn std::error::Error + 'static),
    ) -> Option<&'e ClientBodyError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// Marks every failure of the wrapped request body as the client's ([`ClientBodyError`]).
pub struct FromClient<B>(pub B);

impl<B> Body for FromClient<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|f| f.map_err(|e| Box::new(ClientBodyError(e.into())) as BoxError))
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
