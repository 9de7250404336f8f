//! Directory pages at scale: 10,000 users and 100,000 audit entries in SQLite, and the queries
//! behind the admin list, search and audit pages.
//!
//! Run: `cargo bench -p portcullis-store --bench directory`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark setup: a panic is a failure report

use std::sync::OnceLock;

use portcullis_core::Role;
use portcullis_core::Timestamp;
use portcullis_core::user::UserStatus;
use portcullis_store::{AuditEvent, NewUser, SqlStore, Store};
use tokio::runtime::Runtime;

const USERS: usize = 10_000;
const AUDIT: usize = 100_000;

struct Fixture {
    runtime: Runtime,
    store: SqlStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = runtime.block_on(async {
            let store = SqlStore::open(dir.path()).await.unwrap();
            for i in 0..USERS {
                let user = NewUser {
                    id: format!("id-{i:05}"),
                    username: format!("user{i:05}"),
                    email: format!("user{i:05}@example{}.com", i % 50).parse().ok(),
                    display_name: Some(format!("User Number {i}")),
                    role: Role::User,
                    status: UserStatus::Active,
                    password_hash: None,
                };
                store.create_user(user, Timestamp(1)).await.unwrap();
            }
            for i in 0..AUDIT {
                let event = AuditEvent {
                    at: Timestamp(i64::try_from(i).unwrap()),
                    action: "sign_in".into(),
                    outcome: "success".into(),
                    actor: Some(format!("id-{:05}", i % USERS)),
                    subject: Some(format!("user{:05}", i % USERS)),
                    reason: Some("local_password".into()),
                    client_ip: Some("10.0.0.1".into()),
                };
                store.append_audit(&event).await.unwrap();
            }
            store
        });
        Fixture {
            runtime,
            store,
            _dir: dir,
        }
    })
}

fn main() {
    divan::main();
}

#[divan::bench]
fn users_first_page() {
    let f = fixture();
    let (users, total) = f.runtime.block_on(f.store.find_users(None, 0, 50)).unwrap();
    assert_eq!((users.len(), total), (50, USERS as u64));
}

#[divan::bench]
fn users_deep_page() {
    let f = fixture();
    let (users, _) = f
        .runtime
        .block_on(f.store.find_users(None, 9_000, 50))
        .unwrap();
    assert_eq!(users.len(), 50);
}

#[divan::bench]
fn users_search() {
    let f = fixture();
    let (_, total) = f
        .runtime
        .block_on(f.store.find_users(Some("example7.com"), 0, 50))
        .unwrap();
    assert_eq!(total, 200);
}

#[divan::bench]
fn audit_newest_page() {
    let f = fixture();
    let events = f
        .runtime
        .block_on(f.store.audit_page(&Default::default(), 50))
        .unwrap();
    assert_eq!(events.len(), 50);
}

#[divan::bench]
fn audit_deep_page() {
    let f = fixture();
    let events = f
        .runtime
        .block_on(f.store.audit_page(
            &portcullis_store::AuditFilter {
                before: Some(10_000),
                ..Default::default()
            },
            50,
        ))
        .unwrap();
    assert_eq!(events.len(), 50);
}
