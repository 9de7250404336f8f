//! The threads password hashes run on: a pool of their own, at a lower scheduling priority than
//! the proxy's workers (nice 10 on Linux). The pool's size bounds how many cores hashing can take
//! (the hasher's slots bound how many hashes are given to it); the priority makes hashing yield
//! to signed-in traffic whenever both want the CPU, so a flood of wrong passwords slows sign-ins
//! down instead of the gateway. With the CPU idle a hash runs at full speed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the hashing threads: weight 110 against a normal thread's 1024. Not 19 (weight
/// 15): on a machine saturated by other work hashes then crawled past the queue's wait and
/// sign-ins were turned away without any attack (BENCHMARKS.md has the figures of both).
const HASH_NICENESS: i32 = 10;

#[derive(Clone)]
pub struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// `threads` threads (at least one), each taking the next job as it is free.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let next = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return, // every sender is gone: the hasher was dropped
                        }
                    }
                })?;
        }
        Ok(HashPool { jobs })
    }

    /// Runs `work` on the pool; `None` if the pool is gone or the work panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = done.send(outcome.ok());
        });
        self.jobs.send(job).ok()?;
        result.await.ok().flatten()
    }
}

/// This thread yields to normal-priority threads (Linux: niceness is per thread, so the thread's
/// id names it). A refusal (not permitted) leaves it as it was: hashing then only runs at normal
/// priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let this_thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(this_thread), HASH_NICENESS) {
            tracing::warn!(error = %e, "password hashing could not lower its priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_pool_at_a_lower_priority() {
        let pool = HashPool::new(2).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("portcullis-hash-"));
        #[cfg(target_os = "linux")]
        {
            let nice = pool
                .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(nice, HASH_NICENESS);
        }
        let panicked: Option<()> = pool.run(|| panic!("a hash that panics")).await;
        assert_eq!(panicked, None, "a panic is an error, not a lost pool");
        assert_eq!(pool.run(|| 7).await, Some(7), "the thread survived it");
    }
}
