use super::*;
use portcullis_core::{ManualClock, Role};
use portcullis_store::{NewUser, SqlStore};

async fn setup() -> (SessionManager, Arc<dyn Store>, ManualClock, User) {
    let store: Arc<dyn Store> = Arc::new(SqlStore::throwaway().await.unwrap());
    let clock = ManualClock::at(Timestamp(1_000_000));
    let user = store
        .create_user(
            NewUser {
                id: "u1".into(),
                username: "alice".into(),
                email: None,
                display_name: Some("Alice".into()),
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
    let manager = SessionManager::new(store.clone(), Arc::new(clock.clone()), policy);
    (manager, store, clock, user)
}

#[tokio::test]
async fn create_resolve_revoke() {
    let (manager, store, _, user) = setup().await;
    let (token, _) = manager
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    let active = manager.resolve(&token).await.unwrap().unwrap();
    assert_eq!(active.identity.display_name, "Alice");
    assert_eq!(manager.revoke(&token).await.unwrap().as_deref(), Some("u1"));
    assert!(manager.resolve(&token).await.unwrap().is_none());
    assert_eq!(store.count_sessions().await.unwrap(), 0);
}

/// With a change watcher behind it, a cached session outlives an unreadable feed only for
/// the grace; a read makes it current again.
#[tokio::test]
async fn cached_sessions_outlive_a_store_outage_only_for_the_grace() {
    let (manager, _, _, user) = setup().await;
    let manager = manager.with_outage_grace(Duration::from_millis(200));
    let (token, _) = manager
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    manager.feed_read();
    assert!(manager.resolve(&token).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        manager.resolve(&token).await,
        Err(StoreError::Unavailable(_))
    ));
    manager.feed_read();
    assert!(manager.resolve(&token).await.unwrap().is_some());
}

#[tokio::test]
async fn sessions_survive_a_restart_through_the_store() {
    let (manager, store, clock, user) = setup().await;
    let (token, _) = manager
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    let fresh = SessionManager::new(store, Arc::new(clock), *manager.policy());
    assert!(fresh.resolve(&token).await.unwrap().is_some());
}

#[tokio::test]
async fn garbage_and_unknown_cookies_resolve_to_nothing() {
    let (manager, _, _, _) = setup().await;
    assert!(manager.resolve("").await.unwrap().is_none());
    assert!(
        manager
            .resolve("'; DROP TABLE sessions; --")
            .await
            .unwrap()
            .is_none()
    );
    assert!(manager.resolve(&random_token()).await.unwrap().is_none());
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_the_session() {
    let (manager, store, clock, user) = setup().await;
    let (token, _) = manager
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(599));
    assert!(manager.resolve(&token).await.unwrap().is_some());
    clock.advance(Duration::from_secs(600));
    assert!(manager.resolve(&token).await.unwrap().is_none(), "idle");
    assert_eq!(store.count_sessions().await.unwrap(), 0);

    let (token, _) = manager
        .create(&user, SessionOrigin::default())
        .await
        .unwrap();
    for _ in 0..7 {
        clock.advance(Duration::from_secs(500));
        let alive = manager.resolve(&token).await.unwrap().is_some();
        assert!(alive);
    }
    clock.advance(Duration::from_secs(500));
    assert!(manager.resolve(&token).await.unwrap().is_none(), "absolute");
}

/// A long-running process: sessions created, used (each one's stream guard taken, as the proxy
/// does) and ended leave nothing behind; so do sessions that simply expire. (5,000 here; the
/// `sessions` benchmark runs 100,000 in a release build, BENCHMARKS.md.)
#[tokio::test]
async fn ended_and_expired_sessions_leave_no_state_behind() {
    // In memory whatever the pass: this is about the process, not the database.
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
    let refused_for = Duration::from_millis(300);
    let manager = SessionManager::with_refusal_memory(
        store.clone(),
        Arc::new(clock.clone()),
        policy,
        refused_for,
    );
    let started = std::time::Instant::now();
    for _ in 0..5_000 {
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        let active = manager.resolve(&token).await.unwrap().unwrap();
        drop(manager.stream_guard(&active));
        manager.revoke(&token).await.unwrap();
    }
    // Some more that are never ended: they expire, and the sweep forgets them.
    for _ in 0..500 {
        let (token, _) = manager
            .create(&user, SessionOrigin::default())
            .await
            .unwrap();
        let active = manager.resolve(&token).await.unwrap().unwrap();
        drop(manager.stream_guard(&active));
    }
    clock.advance(Duration::from_secs(601));
    manager.sweep().await.unwrap();
    tokio::time::sleep(refused_for + Duration::from_millis(100)).await;
    assert_eq!(manager.held(), (0, 0, 0), "cached, refused, guards");
    assert_eq!(store.count_sessions().await.unwrap(), 0);
    eprintln!(
        "5,500 sessions created, used and ended in {:?}",
        started.elapsed()
    );
}
