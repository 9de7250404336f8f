//! Lingering close: a connection closed while the client is still sending (an oversized head
//! refused with 431, a 401 to a large upload) must not be closed with data unread. The kernel
//! answers unread data with a reset, and a reset can destroy the refusal before the client has
//! read it. As nginx does, such a connection is half-closed and what the client still sends is
//! read and discarded for a short while, so the answer arrives.
//!
//! The check runs when the connection's socket is dropped, that is after hyper and any upgraded
//! tunnel are done with it, so lingering never reads a byte a live connection needed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a closing connection may keep delivering data to be discarded.
const LINGER_FOR: Duration = Duration::from_secs(5);
/// How much is discarded at most before the connection is closed anyway.
const LINGER_BYTES: usize = 1024 * 1024;

/// A client connection that lingers on close when the client's data is still arriving.
pub struct Lingering {
    stream: Option<TcpStream>,
}

impl Lingering {
    pub fn new(stream: TcpStream) -> Self {
        Lingering {
            stream: Some(stream),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        // One non-blocking read tells whether the client is still sending: nothing pending, an
        // end of stream or an error all close cleanly as they are.
        let mut probe = [0u8; 1];
        if !matches!(stream.try_read(&mut probe), Ok(n) if n > 0) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// Half-closes `stream` (the answer already written goes out, then FIN) and discards what the
/// client still sends until it closes, for at most [`LINGER_FOR`] and [`LINGER_BYTES`].
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let until = Instant::now() + LINGER_FOR;
    let mut discarded = 0;
    let mut buf = [0u8; 4096];
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_refusal_reaches_a_client_that_is_still_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = Lingering::new(stream);
            let mut head = [0u8; 1024];
            conn.read_exact(&mut head).await.unwrap();
            conn.write_all(
                b"HTTP/1.1 431 Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
            // Closed with most of the request unread.
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let big = vec![b'x'; 512 * 1024];
        let (mut reader, mut writer) = client.split();
        let send = async {
            let _ = writer.write_all(&big).await;
            let _ = writer.shutdown().await;
        };
        let mut answer = Vec::new();
        let read = reader.read_to_end(&mut answer);
        let (_, read) = tokio::join!(send, read);
        server.await.unwrap();
        assert!(read.is_ok(), "the connection was reset: {read:?}");
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}
