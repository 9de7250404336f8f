//! Delivery throughput: events per second from the outbox to a local webhook receiver, through
//! the real store (SQLite in a temporary directory), signing and HTTP included.
//!
//!     cargo bench -p portcullis-provision --bench delivery

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::config::ProvisioningConfig;
use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, Role, SystemClock};
use portcullis_provision::webhook::Webhook;
use portcullis_provision::{ProvisionMetrics, Provisioner, Target};
use portcullis_store::{NewUser, SqlStore, Store};

const USERS: usize = 5_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { axum::http::StatusCode::NO_CONTENT }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqlStore::open(dir.path()).await.unwrap());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        for i in 0..USERS {
            let user = NewUser {
                id: format!("u{i}"),
                username: format!("user{i}"),
                email: format!("user{i}@example.com").parse().ok(),
                display_name: None,
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
            };
            store.create_user(user, clock.now()).await.unwrap();
        }
        let sink = Webhook::new(
            "hook",
            &url,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            reqwest::Client::new(),
        );
        let provisioner = Arc::new(Provisioner::new(
            store.clone(),
            clock,
            vec![Target {
                sink: Arc::new(sink),
                policy: None,
            }],
            ProvisioningConfig::default(),
            Arc::new(ProvisionMetrics::default()),
        ));
        let started = Instant::now();
        while store.outbox_stats().await.unwrap().pending > 0
            || received.load(Ordering::Relaxed) == 0
        {
            provisioner.round().await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(600), "stalled");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let delivered = received.load(Ordering::Relaxed);
        println!(
            "{delivered} events delivered to a local webhook in {elapsed:.2} s: {:.0} events/s",
            delivered as f64 / elapsed
        );
    });
}
