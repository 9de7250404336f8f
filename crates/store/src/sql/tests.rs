use portcullis_core::session::{ProviderSession, Session};
use portcullis_core::user::UserStatus;
use portcullis_core::{Role, Timestamp};

use super::*;
use crate::{
    AcmeStore, AuditEvent, AuthFlow, Change, ChangeKind, LinkedIdentity, NewUser, StoredKey,
};

fn new_user(id: &str, username: &str, role: Role) -> NewUser {
    NewUser {
        id: id.into(),
        username: username.into(),
        email: Some(format!("{username}@example.com").parse().unwrap()),
        display_name: None,
        role,
        status: UserStatus::Active,
        password_hash: Some("hash".into()),
    }
}

#[tokio::test]
async fn every_change_writes_an_outbox_event_and_deliveries_follow_user_order() {
    let store = SqlStore::throwaway().await.unwrap();
    let now = Timestamp(100);
    store
        .create_user(new_user("u1", "ann", Role::User), now)
        .await
        .unwrap();
    store
        .create_user(new_user("u2", "ben", Role::User), now)
        .await
        .unwrap();
    store.add_to_group("u1", "ops", now).await.unwrap();
    store.set_role("u1", Role::Admin, now).await.unwrap();
    store.set_role("u1", Role::Admin, now).await.unwrap(); // no change, no event
    store
        .sync_groups("u2", "provider:x", &["a".into(), "b".into()], now)
        .await
        .unwrap();
    store
        .sync_groups("u2", "provider:x", &["a".into(), "b".into()], now)
        .await
        .unwrap(); // unchanged memberships write nothing
    assert_eq!(store.fan_out(&["hook".into()], now).await.unwrap(), 6);
    assert_eq!(
        store.fan_out(&["hook".into()], now).await.unwrap(),
        0,
        "once only"
    );
    let far = Timestamp(i64::MAX / 2);
    let due = store.claim_due_deliveries(far, far, 100).await.unwrap();
    let firsts: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.user_id.as_str(), d.kind.as_str()))
        .collect();
    assert_eq!(
        firsts,
        [("u1", "user_created"), ("u2", "user_created")],
        "oldest per user only"
    );
    let up_to = store
        .latest_pending_seq("hook", "u1")
        .await
        .unwrap()
        .unwrap();
    store.delivered("hook", "u1", up_to, now).await.unwrap();
    let due = store.claim_due_deliveries(far, far, 100).await.unwrap();
    assert_eq!(due.len(), 1, "u1's state covered all three of its events");
    assert_eq!(store.outbox_stats().await.unwrap().pending, 3);
}

/// Workers (replicas) never take the same delivery twice: a claim hides it until its lease
/// ends, then it is due again (a worker that died loses nothing).
#[tokio::test]
async fn released_claims_are_due_again_unless_settled_or_taken_over() {
    let store = SqlStore::throwaway().await.unwrap();
    let now = Timestamp(100);
    for (id, name) in [("u1", "ann"), ("u2", "ben"), ("u3", "cy")] {
        store
            .create_user(new_user(id, name, Role::User), now)
            .await
            .unwrap();
    }
    store.fan_out(&["hook".into()], now).await.unwrap();
    let lease = Timestamp(160);
    let claimed = store.claim_due_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    // One settles before the shutdown; the others are cut off.
    store
        .delivered("hook", &claimed[0].user_id, claimed[0].seq, now)
        .await
        .unwrap();
    let keys: Vec<(String, i64)> = claimed.iter().map(|d| (d.sink.clone(), d.seq)).collect();
    assert_eq!(
        store
            .release_claims(&keys, lease, Timestamp(101))
            .await
            .unwrap(),
        2
    );
    let again = store
        .claim_due_deliveries(Timestamp(101), Timestamp(200), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "due at once, not after the lease");
    // Released with the old lease again (a late call): the new holder's claims stay.
    assert_eq!(
        store
            .release_claims(&keys, lease, Timestamp(102))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn claimed_deliveries_wait_for_their_lease() {
    let store = SqlStore::throwaway().await.unwrap();
    let now = Timestamp(100);
    store
        .create_user(new_user("u1", "ann", Role::User), now)
        .await
        .unwrap();
    store.fan_out(&["hook".into()], now).await.unwrap();
    let first = store
        .claim_due_deliveries(now, Timestamp(160), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let during = store
        .claim_due_deliveries(Timestamp(150), Timestamp(210), 10)
        .await
        .unwrap();
    assert!(during.is_empty(), "held by the first worker: {during:?}");
    let after = store
        .claim_due_deliveries(Timestamp(160), Timestamp(220), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the lease ended: due again");
    assert_eq!(after[0].seq, first[0].seq);
}

#[tokio::test]
async fn users_are_found_by_username_or_email_case_insensitively() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("1", "Alice", Role::User), Timestamp(5))
        .await
        .unwrap();
    let (u, hash) = store.user_with_password("alice").await.unwrap().unwrap();
    assert_eq!((u.id.as_str(), hash.as_deref()), ("1", Some("hash")));
    assert!(
        store
            .user_with_password("ALICE@example.com")
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.user_with_password("bob").await.unwrap().is_none());
    store
        .add_to_group("1", "staff", Timestamp(6))
        .await
        .unwrap();
    store
        .add_to_group("1", "staff", Timestamp(6))
        .await
        .unwrap();
    store
        .add_to_group("1", "admins", Timestamp(6))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_id("1").await.unwrap().unwrap().groups,
        ["admins", "staff"]
    );
    let dup = store
        .create_user(new_user("2", "alice", Role::User), Timestamp(5))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}

#[tokio::test]
async fn only_one_first_admin() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_first_admin(new_user("1", "root", Role::Admin), Timestamp(1))
        .await
        .unwrap();
    let second = store
        .create_first_admin(new_user("2", "root2", Role::Admin), Timestamp(1))
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))));
    assert_eq!(store.count_admins().await.unwrap(), 1);
}

#[tokio::test]
async fn sessions_round_trip_and_expire() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    let s = Session {
        id_hash: "h".into(),
        user_id: "u".into(),
        created_at: Timestamp(10),
        last_seen: Timestamp(10),
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        provider: Some(ProviderSession {
            provider: "idp".into(),
            subject: Some("sub-1".into()),
            sid: Some("sid-1".into()),
            id_token_enc: None,
            refresh_token_enc: Some("sealed".into()),
            access_expires_at: Some(Timestamp(99)),
            claim_sources: vec![("name".into(), "given_name + family_name".into())],
        }),
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
    };
    store.insert_session(&s).await.unwrap();
    store.touch_session("h", Timestamp(20)).await.unwrap();
    store.touch_session("h", Timestamp(15)).await.unwrap();
    assert_eq!(
        store.session("h").await.unwrap().unwrap().last_seen,
        Timestamp(20)
    );
    store
        .update_session_tokens("h", None, Some(Timestamp(120)))
        .await
        .unwrap();
    let stored = store.session("h").await.unwrap().unwrap();
    assert_eq!(
        stored.amr,
        ["pwd", "otp", "mfa"],
        "how it was proved survives"
    );
    let provider = stored.provider.unwrap();
    assert_eq!(
        provider.refresh_token_enc.as_deref(),
        Some("sealed"),
        "kept when not rotated"
    );
    assert_eq!(provider.access_expires_at, Some(Timestamp(120)));
    let by_sid = store
        .delete_provider_sessions("idp", None, Some("other-sid"))
        .await
        .unwrap();
    assert!(by_sid.is_empty());
    let other_idp = store
        .delete_provider_sessions("other-idp", Some("sub-1"), None)
        .await
        .unwrap();
    assert!(other_idp.is_empty());
    assert_eq!(
        store
            .delete_expired_sessions(Timestamp(5), Timestamp(19))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .delete_expired_sessions(Timestamp(5), Timestamp(21))
            .await
            .unwrap(),
        1
    );
    assert!(store.session("h").await.unwrap().is_none());
}

#[tokio::test]
async fn provider_groups_never_touch_local_ones() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    store
        .add_to_group("u", "hand-made", Timestamp(1))
        .await
        .unwrap();
    store
        .sync_groups(
            "u",
            "provider:idp",
            &["staff".into(), "hand-made".into()],
            Timestamp(2),
        )
        .await
        .unwrap();
    assert_eq!(
        store.user_by_id("u").await.unwrap().unwrap().groups,
        ["hand-made", "staff"]
    );
    store
        .sync_groups("u", "provider:idp", &[], Timestamp(3))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_id("u").await.unwrap().unwrap().groups,
        ["hand-made"]
    );
}

#[tokio::test]
async fn identities_and_flows() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    let link = LinkedIdentity {
        issuer: "https://idp".into(),
        subject: "s1".into(),
        user_id: "u".into(),
        provider: "idp".into(),
        email: None,
    };
    store.link_identity(&link, Timestamp(2)).await.unwrap();
    store.link_identity(&link, Timestamp(3)).await.unwrap();
    assert_eq!(
        store
            .user_by_identity("https://idp", "s1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u"
    );
    assert!(
        store
            .user_by_identity("https://other", "s1")
            .await
            .unwrap()
            .is_none()
    );
    let flow = AuthFlow {
        state_hash: "st".into(),
        provider: "idp".into(),
        binding_hash: "b".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        return_to: "/x".into(),
        created_at: Timestamp(10),
        completed_at: None,
    };
    store.insert_flow(&flow).await.unwrap();
    assert_eq!(store.count_flows("b", Timestamp(5)).await.unwrap(), 1);
    assert!(store.complete_flow("st", Timestamp(11)).await.unwrap());
    assert!(
        !store.complete_flow("st", Timestamp(12)).await.unwrap(),
        "a flow completes once"
    );
    assert_eq!(
        store.flow("st").await.unwrap().unwrap().completed_at,
        Some(Timestamp(11))
    );
    assert_eq!(store.delete_flows_before(Timestamp(11)).await.unwrap(), 1);
}

#[tokio::test]
async fn keys_and_the_change_feed() {
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    let key = StoredKey {
        id: "k1".into(),
        hash: "h1".into(),
        name: "ci".into(),
        owner_id: "u".into(),
        allowed_apps: vec!["chat".into(), "n8n".into()],
        expires_at: Some(Timestamp(100)),
        created_at: Timestamp(2),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_key(&key).await.unwrap();
    assert_eq!(store.active_keys().await.unwrap(), vec![key]);
    assert!(store.revoke_key("k1", Timestamp(3)).await.unwrap());
    assert!(!store.revoke_key("k1", Timestamp(4)).await.unwrap());
    assert!(store.active_keys().await.unwrap().is_empty());
    assert_eq!(
        store.keys_of("u").await.unwrap()[0].revoked_at,
        Some(Timestamp(3))
    );

    // The feed is written by triggers: the user's creation, the key's creation and revocation.
    let seen = |changes: &[Change]| -> Vec<(ChangeKind, String)> {
        changes
            .iter()
            .map(|c| (c.kind, c.subject.clone()))
            .collect()
    };
    let changes = store.changes_since(0).await.unwrap();
    assert_eq!(
        seen(&changes),
        [
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::Key, "k1".to_owned()),
            (ChangeKind::Key, "k1".to_owned())
        ],
        "the second revocation changed nothing and wrote nothing"
    );
    let mark = store.latest_change().await.unwrap();
    assert_eq!(mark, changes[2].seq);

    // Every-use columns write nothing: key use, session activity, last-seen time.
    store.touch_key("k1", Timestamp(7)).await.unwrap();
    let session = Session {
        id_hash: "s1".into(),
        user_id: "u".into(),
        created_at: Timestamp(8),
        last_seen: Timestamp(8),
        client_ip: None,
        user_agent: None,
        provider: None,
        amr: Vec::new(),
    };
    store.insert_session(&session).await.unwrap();
    store.touch_session("s1", Timestamp(9)).await.unwrap();
    assert_eq!(store.changes_since(mark).await.unwrap(), []);

    // What caches depend on: profile, role, groups (added, removed, by sync), ended sessions.
    store
        .update_profile("u", None, Some("U Changed"), Timestamp(10))
        .await
        .unwrap();
    store
        .set_role("u", Role::Admin, Timestamp(10))
        .await
        .unwrap();
    store
        .add_to_group("u", "staff", Timestamp(10))
        .await
        .unwrap();
    store
        .sync_groups("u", "provider:idp", &["ml".to_owned()], Timestamp(10))
        .await
        .unwrap();
    store
        .sync_groups("u", "provider:idp", &[], Timestamp(11))
        .await
        .unwrap();
    assert!(store.delete_session("s1").await.unwrap());
    let after = store.changes_since(mark).await.unwrap();
    assert_eq!(
        seen(&after),
        [
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::User, "u".to_owned()),
            (ChangeKind::Session, "s1".to_owned()),
        ]
    );
    assert!(after.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.changes_since(after[5].seq).await.unwrap(),
        [],
        "read from a position, the feed has nothing new"
    );
}

#[tokio::test]
async fn audit_is_newest_first() {
    let store = SqlStore::throwaway().await.unwrap();
    for (i, action) in ["sign_in", "sign_out"].iter().enumerate() {
        let event = AuditEvent {
            at: Timestamp(i64::try_from(i).unwrap()),
            action: (*action).into(),
            outcome: "success".into(),
            actor: None,
            subject: None,
            reason: None,
            client_ip: None,
        };
        store.append_audit(&event).await.unwrap();
    }
    let events = store.recent_audit(10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["sign_out", "sign_in"]
    );
}

#[tokio::test]
async fn factor_codes_and_recovery_codes_work_once() {
    use crate::{CredentialStore, Factor, FactorKind};
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    let factor = |id: &str, at| Factor {
        id: id.into(),
        user_id: "u".into(),
        kind: FactorKind::Totp,
        label: format!("phone {id}"),
        secret_enc: "sealed".into(),
        credential_id: None,
        last_step: 0,
        created_at: Timestamp(at),
        last_used_at: None,
    };
    store.insert_factor(&factor("f1", 2)).await.unwrap();
    store.insert_factor(&factor("f2", 3)).await.unwrap();
    let listed = store.factors("u").await.unwrap();
    assert_eq!(
        listed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["f1", "f2"]
    );
    // A time step is accepted once, and never an older one after it.
    assert!(store.use_totp_step("f1", 100, Timestamp(5)).await.unwrap());
    assert!(!store.use_totp_step("f1", 100, Timestamp(6)).await.unwrap());
    assert!(!store.use_totp_step("f1", 99, Timestamp(6)).await.unwrap());
    assert!(store.use_totp_step("f1", 101, Timestamp(7)).await.unwrap());
    assert_eq!(
        store.factors("u").await.unwrap()[0].last_used_at,
        Some(Timestamp(7))
    );
    // A passkey is found by its credential id; its counter must grow, unless it keeps none.
    let passkey = Factor {
        kind: FactorKind::Passkey,
        credential_id: Some("cred-1".into()),
        ..factor("p1", 4)
    };
    store.insert_factor(&passkey).await.unwrap();
    let found = store.factor_by_credential("cred-1").await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.kind), ("p1", FactorKind::Passkey));
    assert!(
        store
            .factor_by_credential("cred-2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .use_passkey_counter("p1", 0, Timestamp(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .use_passkey_counter("p1", 0, Timestamp(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .use_passkey_counter("p1", 3, Timestamp(6))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_passkey_counter("p1", 3, Timestamp(6))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_passkey_counter("p1", 0, Timestamp(6))
            .await
            .unwrap()
    );
    assert!(store.delete_factor("u", "p1").await.unwrap());
    // Recovery codes: each once; a new set replaces the old.
    let hashes = vec!["a".to_owned(), "b".to_owned()];
    store
        .replace_recovery_codes("u", &hashes, Timestamp(8))
        .await
        .unwrap();
    assert!(
        store
            .use_recovery_code("u", "a", Timestamp(9))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code("u", "a", Timestamp(9))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code("other", "b", Timestamp(9))
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left("u").await.unwrap(), 1);
    store
        .replace_recovery_codes("u", &["c".to_owned()], Timestamp(10))
        .await
        .unwrap();
    assert!(
        !store
            .use_recovery_code("u", "b", Timestamp(11))
            .await
            .unwrap()
    );
    // Removing one factor keeps the codes; removing the last takes them along.
    assert!(store.delete_factor("u", "f1").await.unwrap());
    assert!(!store.delete_factor("u", "f1").await.unwrap());
    assert_eq!(store.recovery_codes_left("u").await.unwrap(), 1);
    assert!(store.delete_factor("u", "f2").await.unwrap());
    assert_eq!(store.recovery_codes_left("u").await.unwrap(), 0);
    // An admin's reset takes everything; deleting the user would too (cascade).
    store.insert_factor(&factor("f3", 12)).await.unwrap();
    store
        .replace_recovery_codes("u", &hashes, Timestamp(12))
        .await
        .unwrap();
    assert_eq!(store.delete_factors("u").await.unwrap(), 1);
    assert!(store.factors("u").await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left("u").await.unwrap(), 0);
}

#[tokio::test]
async fn codes_redeem_once_and_refresh_tokens_rotate_with_a_grace() {
    use crate::{AuthCode, Grant, OAuthStore, Redeemed, Rotation};
    let store = SqlStore::throwaway().await.unwrap();
    store
        .create_user(new_user("u", "u", Role::User), Timestamp(1))
        .await
        .unwrap();
    let code = AuthCode {
        code_hash: "c1".into(),
        user_id: "u".into(),
        client_id: "client".into(),
        client_name: "Claude".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "challenge".into(),
        app: "tools".into(),
        resource: "https://gw/mcp".into(),
        scopes: vec!["mcp".into(), "read".into()],
        expires_at: Timestamp(60),
    };
    store.insert_code(&code).await.unwrap();
    assert_eq!(store.code("c1").await.unwrap().unwrap(), code);
    let grant = |id: &str| Grant {
        id: id.into(),
        user_id: "u".into(),
        client_id: "client".into(),
        client_name: "Claude".into(),
        app: "tools".into(),
        resource: "https://gw/mcp".into(),
        scopes: vec!["mcp".into()],
        created_at: Timestamp(10),
        last_used_at: None,
        expires_at: Timestamp(1000),
    };
    let changes_before = store.latest_change().await.unwrap();
    assert_eq!(
        store
            .redeem_code("c1", &grant("g1"), "r1", Timestamp(10))
            .await
            .unwrap(),
        Redeemed::Issued
    );
    let changes = store.changes_since(changes_before).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.kind == ChangeKind::Grant && c.subject == "g1"),
        "a new grant is announced on the change feed"
    );
    assert_eq!(store.live_grants(Timestamp(10)).await.unwrap().len(), 1);
    assert!(store.live_grants(Timestamp(1000)).await.unwrap().is_empty());

    // Rotation: the new token works, the old one for the grace only.
    let Rotation::Rotated(rotated) = store
        .rotate_refresh("r1", "r2", None, 30, Timestamp(2000), Timestamp(20))
        .await
        .unwrap()
    else {
        panic!("a fresh refresh token rotates")
    };
    assert_eq!(rotated.expires_at, Timestamp(2000));
    let narrowed = ["mcp".to_owned()];
    let Rotation::Rotated(narrow) = store
        .rotate_refresh(
            "r2",
            "r2n",
            Some(&narrowed),
            30,
            Timestamp(2000),
            Timestamp(21),
        )
        .await
        .unwrap()
    else {
        panic!("narrowing rotates too")
    };
    assert_eq!(narrow.scopes, ["mcp"]);
    assert!(matches!(
        store
            .rotate_refresh("r1", "r2b", None, 30, Timestamp(2000), Timestamp(40))
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        store
            .rotate_refresh("nope", "x", None, 30, Timestamp(2000), Timestamp(40))
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        store
            .rotate_refresh("r1", "r3", None, 30, Timestamp(2000), Timestamp(51))
            .await
            .unwrap(),
        Rotation::Reused,
        "a rotated token presented after the grace"
    );
    assert_eq!(
        store.grant("g1").await.unwrap(),
        None,
        "reuse ends the grant"
    );
    assert_eq!(
        store
            .rotate_refresh("r2", "r4", None, 30, Timestamp(2000), Timestamp(52))
            .await
            .unwrap(),
        Rotation::Unknown,
        "with the grant gone, its newer tokens are gone too"
    );

    // A replayed code takes the grant it became with it.
    let second = AuthCode {
        code_hash: "c2".into(),
        ..code.clone()
    };
    store.insert_code(&second).await.unwrap();
    store
        .redeem_code("c2", &grant("g2"), "s1", Timestamp(60))
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_code("c2", &grant("g3"), "s2", Timestamp(61))
            .await
            .unwrap(),
        Redeemed::Replayed
    );
    assert!(store.grants_of("u").await.unwrap().is_empty());

    // A new grant to the same client and resource replaces the earlier one.
    for (c, g) in [("c3", "g4"), ("c4", "g5")] {
        store
            .insert_code(&AuthCode {
                code_hash: c.into(),
                ..code.clone()
            })
            .await
            .unwrap();
        store
            .redeem_code(c, &grant(g), &format!("t{c}"), Timestamp(70))
            .await
            .unwrap();
    }
    let left = store.grants_of("u").await.unwrap();
    assert_eq!(
        left.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        ["g5"]
    );
    assert_eq!(
        store.grant_of_refresh("tc4").await.unwrap().map(|g| g.id),
        Some("g5".into())
    );
    // An expired grant refreshes no more.
    assert_eq!(
        store
            .rotate_refresh("tc4", "x", None, 30, Timestamp(5000), Timestamp(1000))
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert!(store.delete_grant("g5").await.unwrap());
    assert!(!store.delete_grant("g5").await.unwrap());

    // The sweep: expired codes and grants go; idle clients go unless a grant still names them.
    assert!(
        store
            .delete_expired_oauth(Timestamp(5000), Timestamp(0))
            .await
            .unwrap()
            > 0
    );
    assert!(store.code("c1").await.unwrap().is_none());
    for id in ["client", "idle"] {
        store
            .insert_client(&crate::OAuthClient {
                id: id.into(),
                name: id.into(),
                redirect_uris: vec!["http://127.0.0.1/cb".into()],
                secret_hash: None,
                created_at: Timestamp(100),
                last_used_at: None,
            })
            .await
            .unwrap();
    }
    let kept = AuthCode {
        code_hash: "c9".into(),
        expires_at: Timestamp(9000),
        ..code.clone()
    };
    store.insert_code(&kept).await.unwrap();
    let mut lasting = grant("g9");
    lasting.expires_at = Timestamp(9000);
    store
        .redeem_code("c9", &lasting, "t9", Timestamp(100))
        .await
        .unwrap();
    assert_eq!(store.delete_idle_clients(Timestamp(200)).await.unwrap(), 1);
    assert!(
        store.client("client").await.unwrap().is_some(),
        "its grant keeps it"
    );
    assert!(store.client("idle").await.unwrap().is_none());
}

#[tokio::test]
async fn failures_count_up_in_one_statement_and_are_forgotten_when_stale() {
    use crate::CredentialStore;
    let store = SqlStore::throwaway().await.unwrap();
    let key = "password/address:10.0.0.7";
    for expected in 1..=3 {
        let counted = store
            .count_failure(key, Timestamp(100 + expected), Timestamp(0))
            .await
            .unwrap();
        assert_eq!(counted, u32::try_from(expected).unwrap());
    }
    // Two replicas counting at once both count.
    let (a, b) = tokio::join!(
        store.count_failure(key, Timestamp(110), Timestamp(0)),
        store.count_failure(key, Timestamp(110), Timestamp(0))
    );
    let mut both = [a.unwrap(), b.unwrap()];
    both.sort_unstable();
    assert_eq!(both, [4, 5]);
    store
        .count_failure("password/account:alice", Timestamp(50), Timestamp(0))
        .await
        .unwrap();
    let mut seen = store
        .failures(&[key, "password/account:alice", "password/account:nobody"])
        .await
        .unwrap();
    seen.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(
        seen,
        vec![
            crate::FailureCount {
                key: "password/account:alice".into(),
                failures: 1,
                last_failure: Timestamp(50),
            },
            crate::FailureCount {
                key: key.into(),
                failures: 5,
                last_failure: Timestamp(110),
            },
        ]
    );
    // A count idle since before the window starts again.
    assert_eq!(
        store
            .count_failure(key, Timestamp(500), Timestamp(200))
            .await
            .unwrap(),
        1
    );
    store.clear_failures(key).await.unwrap();
    assert_eq!(store.failures(&[key]).await.unwrap(), vec![]);
    assert_eq!(store.delete_stale_failures(Timestamp(60)).await.unwrap(), 1);
    assert!(
        store
            .failures(&["password/account:alice"])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn acme_values_are_replaced_and_one_holder_gets_the_lease() {
    let store = SqlStore::throwaway().await.unwrap();
    assert_eq!(store.acme_value("account").await.unwrap(), None);
    store
        .put_acme_value("account", "one", Timestamp(1))
        .await
        .unwrap();
    store
        .put_acme_value("account", "two", Timestamp(2))
        .await
        .unwrap();
    assert_eq!(
        store.acme_value("account").await.unwrap().as_deref(),
        Some("two")
    );
    store.delete_acme_value("account").await.unwrap();
    assert_eq!(store.acme_value("account").await.unwrap(), None);

    let (now, until) = (Timestamp(100), Timestamp(700));
    assert!(
        store
            .take_acme_lease("order", "a", now, until)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_acme_lease("order", "b", now, until)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        store
            .take_acme_lease("order", "a", now, until)
            .await
            .unwrap(),
        "a extends its own"
    );
    assert!(
        store
            .take_acme_lease("order", "b", Timestamp(700), Timestamp(1300))
            .await
            .unwrap(),
        "expired leases are taken over"
    );
    store.release_acme_lease("order", "a").await.unwrap();
    assert!(
        !store
            .take_acme_lease("order", "a", Timestamp(701), until)
            .await
            .unwrap(),
        "a cannot release b's lease"
    );
    store.release_acme_lease("order", "b").await.unwrap();
    assert!(
        store
            .take_acme_lease("order", "a", Timestamp(701), until)
            .await
            .unwrap()
    );
}
