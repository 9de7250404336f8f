//! Password hashing under attack: a bounded pool and a bounded queue, so wrong-password floods
//! are refused cheaply (`503` + `Retry-After`) instead of taking the machine, and a real person
//! still gets in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Harness, post_sign_in, set_cookie_value, sign_in_at};
use portcullis_core::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn a_full_hashing_queue_refuses_with_503_and_a_returning_user_still_signs_in() {
    let h = Harness::start(
        // No refusal delay: the attackers here must keep the queue full (the delay itself is
        // checked in sign_in_flow.rs).
        "[local_auth]\nmax_concurrent_hashes = 1\nhash_queue = 1\nhash_queue_wait = '100ms'\n\
         free_attempts = 100000\nrefusal_delay = '0s'\n",
    )
    .await;
    h.setup_admin().await;
    h.add_user("real", Some("real@example.com"), None, Role::User, &[])
        .await;
    h.add_user("back", Some("back@example.com"), None, Role::User, &[])
        .await;
    // "back" signed in from this browser before the attack: it keeps a device cookie.
    let device = {
        let signed_in = post_sign_in(&h.http, &h.base, "back", "user-password-1", "").await;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        set_cookie_value(&signed_in, "_portcullis_device").expect("a device cookie")
    };

    // Many accounts, wrong passwords, from many tasks at once, for as long as the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let (busy, retry_after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let attackers: Vec<_> = (0..16)
        .map(|i| {
            let (http, base) = (h.http.clone(), h.base.clone());
            let (stop, busy, retry_after) = (stop.clone(), busy.clone(), retry_after.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if let Err(response) =
                        sign_in_at(&http, &base, &format!("victim{i}-{n}"), "wrong-password-1")
                            .await
                        && response.status() == StatusCode::SERVICE_UNAVAILABLE
                    {
                        busy.fetch_add(1, Ordering::Relaxed);
                        if response.headers().get("retry-after").is_some() {
                            retry_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The browser that signed "back" in before gets in at its first try: the flood fills the
    // shared queue, not the slot kept for known devices.
    let refused_before = busy.load(Ordering::Relaxed);
    for _ in 0..3 {
        let again = post_sign_in(
            &h.http,
            &h.base,
            "back",
            "user-password-1",
            &format!("_portcullis_device={device}"),
        )
        .await;
        assert_eq!(
            again.status(),
            StatusCode::SEE_OTHER,
            "a known device is not turned away by the flood"
        );
    }
    assert!(
        busy.load(Ordering::Relaxed) > refused_before,
        "the flood was being refused meanwhile (the queue was full)"
    );

    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    // A browser that never signed in has no lane of its own: during a flood without any refusal
    // delay (turned off here) it only gets in when a queue place happens to be free. Once the
    // flood stops nothing is left behind (no place held, no count leaked): it gets in at once.
    assert!(
        sign_in_at(&h.http, &h.base, "real", "user-password-1")
            .await
            .is_ok(),
        "a first sign-in right after the flood"
    );
    let refused = busy.load(Ordering::Relaxed);
    assert!(
        refused > 0,
        "the queue never filled: the bound is not applied"
    );
    assert_eq!(
        retry_after.load(Ordering::Relaxed),
        refused,
        "every 503 says when to retry"
    );
    // Refusals are counted in the metrics (not written to the audit trail one by one).
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outcome=\"busy\""), "{metrics}");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert!(value("portcullis_password_hash_refused_total") >= refused as f64);
    assert!(value("portcullis_password_hash_duration_seconds_count") > 0.0);
    assert_eq!(
        value("portcullis_password_hash_queue"),
        0.0,
        "nobody waits now"
    );
}
