//! Worker threads: connections accepted in one place are handed, in turn, to a fixed set of
//! threads, each running its own single-threaded runtime.
//!
//! Why not one work-stealing runtime: a proxied request involves the client's connection, the
//! upstream connection and the tasks that drive them. On a shared runtime those tasks land on
//! different CPUs and wake each other across them (futex calls, inter-processor interrupts), and
//! idle workers are woken to steal work that is already being done. A connection that lives on
//! one thread for its whole life, with an upstream pool owned by that thread, never has to wake
//! another CPU — the event-loop-per-core model nginx uses. Measured in BENCHMARKS.md.
//!
//! Shared things still work across threads: a socket registered with one runtime (a pooled
//! PostgreSQL connection, say) may be used from another, its readiness arriving through the
//! runtime that owns it. Such sockets stop working once their runtime ends, which happens only at
//! shutdown, after the last request.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};

/// A connection handed to a worker: the socket (not yet registered with any runtime) and its peer.
pub type Handoff = (std::net::TcpStream, SocketAddr);

/// The running workers: where accepted connections go, and how to wait for the workers to end.
pub struct Workers {
    lanes: Vec<mpsc::UnboundedSender<Handoff>>,
    ended: Vec<oneshot::Receiver<()>>,
    next: usize,
}

impl Workers {
    /// Starts one thread per item of `each`, running `work(item, connections)` on its own
    /// single-threaded runtime until that future ends.
    pub fn start<T, F, Fut>(each: Vec<T>, work: F) -> std::io::Result<Self>
    where
        T: Send + 'static,
        F: Fn(T, mpsc::UnboundedReceiver<Handoff>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()>,
    {
        let mut workers = Workers {
            lanes: Vec::new(),
            ended: Vec::new(),
            next: 0,
        };
        for (index, item) in each.into_iter().enumerate() {
            let (lane, connections) = mpsc::unbounded_channel();
            let (ended_tx, ended) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let work = work.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(work(item, connections));
                    // Dropping the runtime here ends what the worker still had spawned before
                    // the acceptor hears that it is done.
                    drop(runtime);
                    let _ = ended_tx.send(());
                })?;
            workers.lanes.push(lane);
            workers.ended.push(ended);
        }
        Ok(workers)
    }

    /// Hands an accepted connection to the next worker. Turns keep the load even: with
    /// keep-alive, connections are long-lived and few, so hashing would leave some workers idle.
    pub fn dispatch(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "could not hand a connection to a worker");
                return;
            }
        };
        let Some(lane) = self.lanes.get(self.next % self.lanes.len().max(1)) else {
            return;
        };
        self.next = self.next.wrapping_add(1);
        if lane.send((stream, peer)).is_err() {
            tracing::warn!(%peer, "a worker has stopped; connection dropped");
        }
    }

    /// Tells every worker that no more connections will come, and waits until all have finished.
    pub async fn finish(self) {
        drop(self.lanes);
        for ended in self.ended {
            let _ = ended.await;
        }
    }
}
