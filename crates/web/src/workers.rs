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
        if each.is_empty() {
            return Err(std::io::Error::other("there must be at least one worker"));
        }
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
        // `start` made at least one lane.
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn connections_are_dealt_out_in_turn_and_finish_waits_for_every_worker() {
        let served: Arc<Mutex<Vec<(usize, std::thread::ThreadId)>>> = Arc::default();
        let seen = served.clone();
        let mut workers = Workers::start(vec![0, 1], move |index, mut connections| {
            let seen = seen.clone();
            async move {
                while connections.recv().await.is_some() {
                    seen.lock()
                        .unwrap()
                        .push((index, std::thread::current().id()));
                }
                // Still running after its lane closed: `finish` must wait for this.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                seen.lock()
                    .unwrap()
                    .push((index + 10, std::thread::current().id()));
            }
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..4 {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            workers.dispatch(stream, peer);
        }
        workers.finish().await;

        let served = served.lock().unwrap();
        let per_worker = |i| served.iter().filter(|(w, _)| *w == i).count();
        assert_eq!((per_worker(0), per_worker(1)), (2, 2), "{served:?}");
        assert_eq!(
            (per_worker(10), per_worker(11)),
            (1, 1),
            "both ran to the end"
        );
        for worker in [0, 1] {
            let threads: std::collections::HashSet<_> = served
                .iter()
                .filter(|(w, _)| *w % 10 == worker)
                .map(|(_, t)| *t)
                .collect();
            assert_eq!(threads.len(), 1, "worker {worker} ran on one thread");
        }
        assert_ne!(std::thread::current().id(), served[0].1);
    }

    #[test]
    fn no_workers_is_an_error() {
        let started = Workers::start(Vec::<()>::new(), |(), _| async {});
        assert!(started.is_err());
    }
}
