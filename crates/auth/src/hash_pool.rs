//! The threads password hashes run on: a pool of their own, at a lower scheduling priority than
//! the proxy's workers (nice 10 on Linux), paced to a CPU budget. The pool's size bounds how many
//! cores hashing can take at once (the hasher's slots bound how many hashes are given to it); the
//! priority makes hashing yield to signed-in traffic whenever both want the CPU; the budget bounds
//! what hashing takes over time even where priority does not help (a hash's 19 MiB also evicts
//! the proxy's working set from the shared caches, whatever its priority). So a flood of wrong
//! passwords slows sign-ins down instead of the gateway, while a burst of real sign-ins after a
//! quiet spell runs at full speed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

/// A job gives its slot back when it is done, for the thread to release after resting.
type Job = Box<dyn FnOnce() -> Slot + Send>;

/// Niceness of the hashing threads: weight 110 against a normal thread's 1024. Not 19 (weight
/// 15): on a machine saturated by other work hashes then crawled past the queue's wait and
/// sign-ins were turned away without any attack (BENCHMARKS.md has the figures of both).
const HASH_NICENESS: i32 = 10;

/// How much CPU hashing may use over time: `cores` worth of CPU on average (0.5: half of one
/// core), after a `burst` of CPU time at full speed. A hash that would go past it runs, and its
/// slot then rests until the budget has caught up: its answer is not delayed, the next hash is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuBudget {
    pub cores: f64,
    pub burst: Duration,
}

/// Where a job runs: the hashing slot it holds, kept until its thread has rested so that nothing
/// starts in its place meanwhile, and whether its work counts against the budget.
pub struct Slot {
    permit: OwnedSemaphorePermit,
    paced: bool,
}

impl Slot {
    /// A slot whose work is paced to the pool's budget.
    pub fn paced(permit: OwnedSemaphorePermit) -> Self {
        Slot {
            permit,
            paced: true,
        }
    }

    /// A slot that runs at full speed whatever the budget (the one kept for known devices:
    /// strangers cannot fill it, so it has nothing to be paced against).
    pub fn unpaced(permit: OwnedSemaphorePermit) -> Self {
        Slot {
            permit,
            paced: false,
        }
    }
}

/// The budget as a generic cell rate algorithm over CPU time: every paced hash moves `paid_until`
/// on by its CPU time divided by the budget's cores, and a slot rests while `paid_until` is more
/// than the burst ahead of now. One shared cell, so the budget is the pool's, however many
/// threads share it.
#[derive(Debug)]
struct Pacer {
    budget: CpuBudget,
    paid_until: Option<Instant>,
}

impl Pacer {
    /// Charges `cpu` of hashing finished at `now`: how long its slot must rest.
    fn charge(&mut self, now: Instant, cpu: Duration) -> Duration {
        let from = self.paid_until.map_or(now, |paid| paid.max(now));
        let paid_until = from + cpu.div_f64(self.budget.cores);
        self.paid_until = Some(paid_until);
        let tolerance = self.budget.burst.div_f64(self.budget.cores);
        paid_until
            .saturating_duration_since(now)
            .saturating_sub(tolerance)
    }
}

#[derive(Clone)]
pub struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// `threads` threads (at least one), each taking the next job as it is free, paced to
    /// `budget` (none: full speed).
    pub fn new(threads: usize, budget: Option<CpuBudget>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let pacer = budget
            .filter(|b| b.cores > 0.0 && b.cores.is_finite())
            .map(|budget| {
                Arc::new(Mutex::new(Pacer {
                    budget,
                    paid_until: None,
                }))
            });
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let pacer = pacer.clone();
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
                            Ok(job) => run_paced(job, pacer.as_deref()),
                            Err(_) => return, // every sender is gone: the hasher was dropped
                        }
                    }
                })?;
        }
        Ok(HashPool { jobs })
    }

    /// Runs `work` on the pool in `slot`; `None` if the pool is gone or the work panicked. The
    /// answer comes as soon as the work is done; the slot is given back once its thread rested.
    pub async fn run<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = done.send(outcome.ok());
            slot
        });
        self.jobs.send(job).ok()?;
        result.await.ok().flatten()
    }
}

/// Runs one job, then rests as long as the budget asks before the slot is given back.
fn run_paced(job: Job, pacer: Option<&Mutex<Pacer>>) {
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    let slot = job();
    let Some(pacer) = pacer.filter(|_| slot.paced) else {
        return;
    };
    // Where the thread's own CPU clock is missing, wall time stands in (and charges waiting too).
    let used = match (cpu, thread_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => wall.elapsed(),
    };
    let rest = pacer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .charge(Instant::now(), used);
    if !rest.is_zero() {
        std::thread::sleep(rest);
    }
    drop(slot.permit);
}

/// CPU time this thread has used (Linux: so time spent waiting for a core is not charged).
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(Duration::new(
            u64::try_from(now.tv_sec).ok()?,
            u32::try_from(now.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
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
    use tokio::sync::Semaphore;

    fn slot(paced: bool) -> Slot {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        if paced {
            Slot::paced(permit)
        } else {
            Slot::unpaced(permit)
        }
    }

    #[tokio::test]
    async fn work_runs_on_the_pool_at_a_lower_priority() {
        let pool = HashPool::new(2, None).unwrap();
        let name = pool
            .run(slot(true), || {
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("portcullis-hash-"));
        #[cfg(target_os = "linux")]
        {
            let nice = pool
                .run(slot(true), || {
                    rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(nice, HASH_NICENESS);
        }
        let panicked: Option<()> = pool.run(slot(true), || panic!("a hash that panics")).await;
        assert_eq!(panicked, None, "a panic is an error, not a lost pool");
        assert_eq!(
            pool.run(slot(true), || 7).await,
            Some(7),
            "the thread survived it"
        );
    }

    #[test]
    fn the_budget_lets_a_burst_through_then_paces_to_its_share() {
        let budget = CpuBudget {
            cores: 0.5,
            burst: Duration::from_millis(100),
        };
        let mut pacer = Pacer {
            budget,
            paid_until: None,
        };
        let start = Instant::now();
        let hash = Duration::from_millis(20);
        // Back to back at full speed: each 20 ms hash pays 40 ms at half a core, so the budget
        // falls 20 ms behind per hash and the burst (100 ms of CPU: 200 ms behind) lets nine
        // through ...
        let mut now = start;
        for n in 0..9 {
            now += hash;
            assert_eq!(pacer.charge(now, hash), Duration::ZERO, "hash {n}");
        }
        // ... the tenth must rest as long as it ran: half a core.
        now += hash;
        let rest = pacer.charge(now, hash);
        assert_eq!(rest, hash);
        // Hashing in step with the budget (run 20 ms, rest 20 ms) never rests longer.
        for _ in 0..100 {
            now += rest + hash;
            assert_eq!(pacer.charge(now, hash), hash);
        }
        // A quiet spell refills the burst (up to its bound, not beyond).
        now += Duration::from_secs(60);
        for _ in 0..9 {
            now += hash;
            assert_eq!(pacer.charge(now, hash), Duration::ZERO);
        }
        assert!(pacer.charge(now + hash, hash) > Duration::ZERO);
    }

    #[test]
    fn threads_sharing_the_budget_share_its_cores() {
        // Two threads finishing hashes at the same instants: the budget is the pool's, so each
        // rests twice as long as one alone would.
        let mut pacer = Pacer {
            budget: CpuBudget {
                cores: 0.5,
                burst: Duration::ZERO,
            },
            paid_until: None,
        };
        let now = Instant::now() + Duration::from_millis(20);
        let hash = Duration::from_millis(20);
        let first = pacer.charge(now, hash);
        let second = pacer.charge(now, hash);
        assert_eq!(first, Duration::from_millis(40));
        assert_eq!(second, Duration::from_millis(80));
    }

    #[tokio::test]
    async fn a_paced_slot_is_given_back_after_its_rest_and_an_unpaced_one_at_once() {
        let budget = CpuBudget {
            cores: 0.05,
            burst: Duration::ZERO,
        };
        let pool = HashPool::new(1, Some(budget)).unwrap();
        let semaphore = Arc::new(Semaphore::new(1));
        let spin = || {
            // ~10 ms of CPU: 200 ms of rest at a twentieth of a core.
            let until = thread_cpu_time().map(|t| t + Duration::from_millis(10));
            let wall = Instant::now();
            while match (until, thread_cpu_time()) {
                (Some(until), Some(now)) => now < until,
                _ => wall.elapsed() < Duration::from_millis(10),
            } {
                std::hint::black_box(0u64);
            }
        };
        let started = Instant::now();
        pool.run(
            Slot::paced(semaphore.clone().try_acquire_owned().unwrap()),
            spin,
        )
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "the answer is not held by the rest"
        );
        assert!(
            semaphore.try_acquire().is_err(),
            "the slot is still resting"
        );
        let _permit = semaphore.acquire().await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "the slot came back after {:?}",
            started.elapsed()
        );
        drop(_permit);

        let started = Instant::now();
        pool.run(
            Slot::unpaced(semaphore.clone().try_acquire_owned().unwrap()),
            spin,
        )
        .await
        .unwrap();
        let _permit = semaphore.acquire().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "an unpaced slot does not rest"
        );
    }
}
