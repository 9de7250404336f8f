//! A long-running process's sessions: 100,000 created, used (a stream guard taken, as the proxy
//! does) and ended, then 10,000 more left to expire and swept. Reports the time per session and
//! what the process still holds afterwards (cached sessions, remembered refusals, stream guards,
//! resident memory), which must be nothing but the memory the allocator keeps.
//!
//! Run: `cargo bench -p portcullis-auth --bench sessions`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark setup: a panic is a failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_auth::SessionManager;
use portcullis_auth::session::SessionOrigin;
use portcullis_core::session::SessionPolicy;
use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, ManualClock, Role, Timestamp};
use portcullis_store::{NewUser, SqlStore, Store};

/// Resident set size in KiB, from /proc (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
        let clock = ManualClock::at(Timestamp(1_000_000));
        let user = store
            .create_user(
                NewUser {
                    id: "u1".into(),
                    username: "alice".into(),
                    email: None,
                    display_name: None,
                    role: Role::User,
                    status: UserStatus::Active,
                    password_hash: None,
                },
                clock.now(),
            )
            .await
            .unwrap();
        let policy = SessionPolicy {
            idle: Duration::from_secs(600),
            absolute: Duration::from_secs(3600),
        };
        let refused_for = Duration::from_secs(1);
        let manager =
            SessionManager::with_refusal_memory(store.clone(), Arc::new(clock.clone()), policy, refused_for);
        let before = rss_kib();
        let started = Instant::now();
        const ENDED: u32 = 100_000;
        for _ in 0..ENDED {
            let (token, _) = manager.create(&user, SessionOrigin::default()).await.unwrap();
            let active = manager.resolve(&token).await.unwrap().unwrap();
            drop(manager.stream_guard(&active));
            manager.revoke(&token).await.unwrap();
        }
        let churn = started.elapsed();
        for _ in 0..10_000 {
            let (token, _) = manager.create(&user, SessionOrigin::default()).await.unwrap();
            let active = manager.resolve(&token).await.unwrap().unwrap();
            drop(manager.stream_guard(&active));
        }
        let peak = rss_kib();
        clock.advance(Duration::from_secs(601));
        manager.sweep().await.unwrap();
        tokio::time::sleep(refused_for + Duration::from_millis(200)).await;
        let held = manager.held();
        println!(
            "sessions: {ENDED} created, used and ended in {:.2} s ({:.1} µs each); 10,000 more expired and swept",
            churn.as_secs_f64(),
            churn.as_secs_f64() * 1e6 / f64::from(ENDED)
        );
        println!(
            "held afterwards: {} cached, {} refused ids, {} stream guards; RSS {} KiB before, {} KiB at the peak, {} KiB after",
            held.0,
            held.1,
            held.2,
            before,
            peak,
            rss_kib()
        );
        assert_eq!(held, (0, 0, 0), "no per-session state may be left behind");
    });
}
