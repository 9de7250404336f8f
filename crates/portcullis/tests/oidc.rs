//! Sign-in through a real OpenID provider (npm `oidc-provider`): the code flow to a proxied
//! upstream, concurrent sign-ins, replayed and forged callbacks, the provider going down, and
//! RP-initiated logout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::idp::{Idp, Person, free_port};
use common::{Harness, received, set_cookie_value};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};

const APP: &str = "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\nidentity_headers = { profile = 'openwebui' }\n";

struct Setup {
    h: Harness,
    idp: Idp,
}

async fn setup(idp_env: &[(&str, &str)], provider_extra: &str) -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&base, idp_env);
    let h = Harness::start_at(port, &format!("{APP}{}", idp.provider_toml(provider_extra))).await;
    Setup { h, idp }
}

/// Starts a sign-in in "the browser" (flow cookie kept in `flow_cookie`), returns the provider URL.
async fn start(h: &Harness, rd: &str, flow_cookie: &mut Option<String>) -> String {
    start_with(h, "idp", rd, flow_cookie).await
}

async fn start_with(
    h: &Harness,
    provider: &str,
    rd: &str,
    flow_cookie: &mut Option<String>,
) -> String {
    let mut request = h
        .http
        .get(h.url(&format!("/.portcullis/start/{provider}?rd={rd}")));
    if let Some(cookie) = flow_cookie.as_ref() {
        request = request.header(COOKIE, format!("_portcullis_flow={cookie}"));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    if let Some(cookie) = set_cookie_value(&response, "_portcullis_flow") {
        *flow_cookie = Some(cookie);
    }
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

async fn callback(
    h: &Harness,
    callback_url: &str,
    flow_cookie: Option<&str>,
    session: Option<&str>,
) -> reqwest::Response {
    let path = &callback_url[callback_url.find("/oauth2/callback").unwrap()..];
    let mut cookies = Vec::new();
    if let Some(flow) = flow_cookie {
        cookies.push(format!("_portcullis_flow={flow}"));
    }
    if let Some(session) = session {
        cookies.push(format!("_portcullis={session}"));
    }
    let mut request = h.http.get(h.url(path)).header("accept", "text/html");
    if !cookies.is_empty() {
        request = request.header(COOKIE, cookies.join("; "));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn code_flow_reaches_the_app_with_the_mapped_identity() {
    let Setup { h, idp: _idp } = setup(&[], "").await;
    let sign_in_page = h
        .http
        .get(h.url("/.portcullis/sign_in?rd=/c/1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sign_in_page.contains("href=\"/.portcullis/start/idp?rd=%2Fc%2F1\">Continue with Test IdP"),
        "{sign_in_page}"
    );

    let mut flow = None;
    let authorize = start(&h, "/c/1", &mut flow).await;
    assert!(
        authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="),
        "{authorize}"
    );
    let back = Person::default()
        .sign_in_at_provider(&authorize, "alice")
        .await;
    let response = callback(&h, &back, flow.as_deref(), None).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "{}",
        response.text().await.unwrap_or_default()
    );
    assert_eq!(response.headers()[LOCATION], "/c/1");
    let session = set_cookie_value(&response, "_portcullis").unwrap();

    let echo = h.echo("/c/1", &session).await;
    assert_eq!(received(&echo, "x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(received(&echo, "x-forwarded-user"), ["Alice Anders"]);
    assert_eq!(received(&echo, "x-forwarded-groups"), ["ml,staff"]);

    // The same person signing in again is the same user, keyed on issuer + subject.
    let mut flow2 = flow.clone();
    let again = Person::default()
        .sign_in_at_provider(&start(&h, "/", &mut flow2).await, "alice")
        .await;
    let response = callback(&h, &again, flow2.as_deref(), None).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let user = h
        .running
        .state
        .store
        .user_by_identity(&_idp.issuer, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Alice Anders"));
    assert_eq!(user.username, "alice");
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_guid_subject_never_becomes_the_display_name() {
    // Profile claims only in userinfo (the provider's default): Portcullis must read userinfo.
    let Setup { h, idp: _idp } = setup(&[], "").await;
    let mut flow = None;
    let authorize = start(&h, "/", &mut flow).await;
    let back = Person::default()
        .sign_in_at_provider(&authorize, "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01")
        .await;
    let response = callback(&h, &back, flow.as_deref(), None).await;
    let session = set_cookie_value(&response, "_portcullis").unwrap();
    let echo = h.echo("/", &session).await;
    assert_eq!(received(&echo, "x-forwarded-email"), ["maria@example.com"]);
    assert_eq!(
        received(&echo, "x-forwarded-user"),
        ["maria@example.com"],
        "the email, never the GUID"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn two_tabs_signing_in_at_once_both_succeed() {
    let Setup { h, idp: _idp } = setup(&[("CONFORM", "false")], "").await;
    let mut flow = None;
    let first = start(&h, "/tab-1", &mut flow).await;
    let second = start(&h, "/tab-2", &mut flow).await;
    let person = Person::default();
    let back_first = person.sign_in_at_provider(&first, "alice").await;
    let back_second = person.sign_in_at_provider(&second, "alice").await;
    // The second tab finishes first.
    let r2 = callback(&h, &back_second, flow.as_deref(), None).await;
    let r1 = callback(&h, &back_first, flow.as_deref(), None).await;
    assert_eq!(
        (r1.status(), r2.status()),
        (StatusCode::FOUND, StatusCode::FOUND)
    );
    assert_eq!(r1.headers()[LOCATION], "/tab-1");
    assert_eq!(r2.headers()[LOCATION], "/tab-2");
    h.running.shutdown().await;
}

#[tokio::test]
async fn replayed_forged_and_foreign_callbacks_are_refused() {
    let Setup { h, idp: _idp } = setup(&[], "").await;
    let mut flow = None;
    let authorize = start(&h, "/dest", &mut flow).await;
    let back = Person::default()
        .sign_in_at_provider(&authorize, "alice")
        .await;

    // Another browser (no flow cookie, or another one) cannot use this callback.
    let foreign = callback(&h, &back, Some("x".repeat(43).as_str()), None).await;
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    assert!(
        foreign
            .text()
            .await
            .unwrap()
            .contains("started in another browser")
    );

    let first = callback(&h, &back, flow.as_deref(), None).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    let session = set_cookie_value(&first, "_portcullis").unwrap();

    // Replaying the same callback: with the session, land where the user was going...
    let replay = callback(&h, &back, flow.as_deref(), Some(&session)).await;
    assert_eq!(replay.status(), StatusCode::FOUND);
    assert_eq!(replay.headers()[LOCATION], "/dest");
    assert!(
        set_cookie_value(&replay, "_portcullis").is_none(),
        "no second session from a replayed code"
    );
    // ...without it, a clear refusal.
    let replay = callback(&h, &back, flow.as_deref(), None).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.unwrap().contains("already used"));

    // A forged state.
    let forged = back.replace("state=", "state=forged");
    let forged = callback(&h, &forged, flow.as_deref(), None).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // A provider error (the user declined) is shown, not swallowed.
    let declined = h
        .http
        .get(h.url("/oauth2/callback?error=access_denied&error_description=user+declined&state=x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::FORBIDDEN);
    assert!(
        declined
            .text()
            .await
            .unwrap()
            .contains("access_denied: user declined")
    );

    let reasons: Vec<String> = h
        .running
        .state
        .store
        .recent_audit(20)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for expected in [
        "flow_other_browser",
        "flow_already_used",
        "unknown_state",
        "provider_error: access_denied user declined",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} missing from {reasons:?}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn provider_down_at_sign_in_is_clear_and_sessions_outlive_it() {
    let Setup { h, idp } = setup(&[], "").await;
    let mut flow = None;
    let back = Person::default()
        .sign_in_at_provider(&start(&h, "/", &mut flow).await, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    drop(idp);
    // Existing sessions keep working: they are Portcullis's own.
    assert_eq!(h.echo("/still-here", &session).await["path"], "/still-here");
    h.running.shutdown().await;

    // A provider that is down when the sign-in starts gets a clear page, not a hang or a 500.
    let port = free_port();
    let dead = free_port();
    let config = format!(
        "{APP}[[providers]]\nid = 'idp'\nissuer = 'http://127.0.0.1:{dead}'\nclient_id = 'c'\nclient_secret = 's'\n"
    );
    let h = Harness::start_at(port, &config).await;
    let response = h
        .http
        .get(h.url("/.portcullis/start/idp?rd=/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("is unavailable right now")
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn sign_out_ends_the_provider_session_too() {
    let Setup { h, idp } = setup(&[], "").await;
    let mut flow = None;
    let person = Person::default();
    let back = person
        .sign_in_at_provider(&start(&h, "/", &mut flow).await, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();

    let out = h
        .http
        .get(h.url("/.portcullis/sign_out"))
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);
    let end_session = out.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        end_session.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{end_session}"
    );
    assert!(end_session.contains("id_token_hint="), "{end_session}");
    assert!(
        end_session.contains("post_logout_redirect_uri=http%3A%2F%2F127.0.0.1"),
        "{end_session}"
    );
    // The session is gone on our side already.
    let after = h
        .http
        .get(h.url("/"))
        .header(COOKIE, format!("_portcullis={session}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The provider accepts the request and sends the browser back to the signed-out page.
    let landed = person.confirm_logout(&end_session).await;
    assert_eq!(landed, format!("{}/.portcullis/signed_out", h.base));
    // Signing in again needs the provider's login page again (its session ended too).
    let mut flow2 = flow.clone();
    let authorize = start(&h, "/", &mut flow2).await;
    assert_eq!(person.prompt_at(&authorize).await.as_deref(), Some("login"));
    let back = person.sign_in_at_provider(&authorize, "alice").await;
    assert!(back.contains("/oauth2/callback?code="), "{back}");
    h.running.shutdown().await;
}

/// oauth2-proxy users sign out with `/oauth2/sign_out?rd=…`: the provider's session must end
/// too (or the next visit signs them straight back in), then the browser goes on to `rd`.
#[tokio::test]
async fn sign_out_with_rd_ends_the_provider_session_then_continues_to_rd() {
    let Setup { h, idp } = setup(&[], "").await;
    let mut flow = None;
    let person = Person::default();
    let back = person
        .sign_in_at_provider(&start(&h, "/", &mut flow).await, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    // While the provider's session lives, it signs the person in without asking.
    let mut again = flow.clone();
    assert_eq!(
        person.prompt_at(&start(&h, "/", &mut again).await).await,
        None
    );

    let out = h
        .http
        .get(h.url("/oauth2/sign_out?rd=/after/sign-out"))
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);
    let end_session = out.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        end_session.starts_with(&format!("{}/session/end?", idp.issuer)),
        "the provider's sign-out comes first: {end_session}"
    );
    let after = set_cookie_value(&out, "_portcullis_after_sign_out").unwrap();
    let landed = person.confirm_logout(&end_session).await;
    assert_eq!(landed, format!("{}/.portcullis/signed_out", h.base));
    let onward = h
        .http
        .get(&landed)
        .header(COOKIE, format!("_portcullis_after_sign_out={after}"))
        .send()
        .await
        .unwrap();
    assert_eq!(onward.status(), StatusCode::FOUND);
    assert_eq!(onward.headers()[LOCATION], "/after/sign-out");

    let mut flow2 = flow.clone();
    let authorize = start(&h, "/", &mut flow2).await;
    assert_eq!(
        person.prompt_at(&authorize).await.as_deref(),
        Some("login"),
        "the provider asks for the password again"
    );

    // An rd that is the provider's own logout (a hand-built chain) is followed as it is.
    let back = person.sign_in_at_provider(&authorize, "alice").await;
    let session = set_cookie_value(
        &callback(&h, &back, flow2.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    let chain = format!("{}/session/end?client_id=portcullis", idp.issuer);
    let out = h
        .http
        .get(h.url("/oauth2/sign_out"))
        .query(&[("rd", chain.as_str())])
        .header(COOKIE, format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    // (The provider runs on 127.0.0.1, Portcullis's own host, so it is an allowed target.)
    assert_eq!(out.status(), StatusCode::FOUND);
    assert_eq!(out.headers()[LOCATION], chain.as_str());
    assert!(set_cookie_value(&out, "_portcullis_after_sign_out").is_none());
    h.running.shutdown().await;
}

#[tokio::test]
async fn back_channel_logout_ends_the_session_at_once() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let backchannel = format!("{base}/.portcullis/backchannel_logout/idp");
    let idp = Idp::start(&base, &[("BACKCHANNEL_URI", backchannel.as_str())]);
    let h = Harness::start_at(port, &format!("{APP}{}", idp.provider_toml(""))).await;
    let mut flow = None;
    let person = Person::default();
    let back = person
        .sign_in_at_provider(&start(&h, "/", &mut flow).await, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    assert_eq!(h.echo("/", &session).await["path"], "/");

    // The person signs out at the provider itself; it tells Portcullis over the back channel.
    person
        .confirm_logout(&format!("{}/session/end", idp.issuer))
        .await;
    let mut refused = false;
    for _ in 0..20 {
        let status = h
            .http
            .get(h.url("/"))
            .header(COOKIE, format!("_portcullis={session}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "the session must end after the provider's back-channel logout"
    );
    let audit = h.running.state.store.recent_audit(5).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.reason.as_deref() == Some("backchannel:idp: 1 session(s)")),
        "{audit:?}"
    );

    // Forged or malformed logout tokens are refused with the spec's 400.
    for token in ["", "not-a-jwt", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0."] {
        let response = h
            .http
            .post(h.url("/.portcullis/backchannel_logout/idp"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{token:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    h.running.shutdown().await;
}

/// Polls `check` every 100 ms for up to 5 s.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn access_tokens_are_refreshed_and_a_refused_refresh_ends_the_session() {
    // Access tokens live 2 s, so every request finds them due for refresh.
    let scopes = "scopes = ['openid', 'email', 'profile', 'offline_access']\n";
    let Setup { h, idp } = setup(&[("ACCESS_TTL", "2")], scopes).await;
    let mut flow = None;
    let authorize = start(&h, "/", &mut flow).await;
    assert!(
        authorize.contains("prompt=consent"),
        "offline_access needs consent: {authorize}"
    );
    let back = Person::default()
        .sign_in_at_provider(&authorize, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    let state = &h.running.state;
    let id_hash = portcullis_auth::secret::token_hash(&session);
    let stored = || async {
        state
            .store
            .session(&id_hash)
            .await
            .unwrap()
            .and_then(|s| s.provider)
    };
    let first = stored().await.expect("a provider session");
    let first_expiry = first
        .access_expires_at
        .expect("the provider gave an expiry");
    assert!(
        first.refresh_token_enc.is_some(),
        "offline_access yields a refresh token"
    );

    // A request finds the access token due: it is refreshed in the background.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(h.echo("/", &session).await["path"], "/");
    let refreshed = eventually(|| async {
        stored().await.and_then(|p| p.access_expires_at) > Some(first_expiry)
    })
    .await;
    assert!(
        refreshed,
        "the access token expiry moves forward after a refresh"
    );

    // The provider revokes the refresh token: the next refresh is refused and the session ends.
    let current = stored().await.unwrap().refresh_token_enc.unwrap();
    let refresh_token = state.sealer.open(&current).unwrap();
    let revoked = reqwest::Client::new()
        .post(format!("{}/token/revocation", idp.issuer))
        .basic_auth("portcullis", Some("portcullis-test-secret"))
        .form(&[
            ("token", refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ended = eventually(|| async {
        let status = h
            .http
            .get(h.url("/api/chats"))
            .header(COOKIE, format!("_portcullis={session}"))
            .send()
            .await
            .unwrap()
            .status();
        status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        ended,
        "a refused refresh ends the session: API requests get 401"
    );
    assert!(
        stored().await.is_none(),
        "the session is deleted from the store too"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn linking_by_email_needs_a_verified_email_and_the_operator_s_consent() {
    use portcullis_core::Role;
    async fn sign_in_as(h: &Harness, login: &str) -> reqwest::Response {
        let mut flow = None;
        let back = Person::default()
            .sign_in_at_provider(&start(h, "/", &mut flow).await, login)
            .await;
        callback(h, &back, flow.as_deref(), None).await
    }

    // Without link_by_email: an existing account with the same email is not taken over.
    let Setup { h, idp: _idp } = setup(&[], "").await;
    h.add_user(
        "alice-local",
        Some("alice@example.com"),
        None,
        Role::User,
        &["hand-made"],
    )
    .await;
    let refused = sign_in_as(&h, "alice").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("already exists"));
    // An unverified email is refused outright.
    let unverified = sign_in_as(&h, "unverified").await;
    assert_eq!(unverified.status(), StatusCode::FORBIDDEN);
    assert!(unverified.text().await.unwrap().contains("not verified"));
    h.running.shutdown().await;

    // With link_by_email: the verified identity joins the existing user, whose hand-made group
    // survives next to the provider's groups.
    let Setup { h, idp } = setup(&[], "link_by_email = true\nadmin_groups = ['ml']\n").await;
    h.add_user(
        "alice-local",
        Some("alice@example.com"),
        None,
        Role::User,
        &["hand-made"],
    )
    .await;
    let linked = sign_in_as(&h, "alice").await;
    assert_eq!(linked.status(), StatusCode::FOUND);
    let user = h
        .running
        .state
        .store
        .user_by_identity(&idp.issuer, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "alice-local");
    assert_eq!(user.groups, ["hand-made", "ml", "staff"]);
    assert_eq!(
        user.role,
        Role::Admin,
        "admin_groups maps the ml group to admin"
    );
    // The link and what the claims changed are audited, by the provider.
    let trail: Vec<(String, String)> = h
        .running
        .state
        .store
        .recent_audit(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor.as_deref() == Some("provider:idp"))
        .map(|e| (e.action, e.reason.unwrap_or_default()))
        .collect();
    for (action, reason) in [
        ("identity_linked", idp.issuer.as_str()),
        ("role_changed", "user -> admin (admin_groups)"),
        ("groups_synced", "added [ml, staff], removed []"),
    ] {
        assert!(
            trail.iter().any(|(a, r)| a == action && r == reason),
            "{action} ({reason}) is not audited: {trail:?}"
        );
    }
    // Still refused for an unverified address, even with linking on.
    assert_eq!(
        sign_in_as(&h, "unverified").await.status(),
        StatusCode::FORBIDDEN
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn group_changes_at_the_provider_apply_at_the_next_refresh() {
    let scopes = "scopes = ['openid', 'email', 'profile', 'groups', 'offline_access']\n";
    let Setup { h, idp } = setup(&[("ACCESS_TTL", "2")], scopes).await;
    let mut flow = None;
    let back = Person::default()
        .sign_in_at_provider(&start(&h, "/", &mut flow).await, "alice")
        .await;
    let session = set_cookie_value(
        &callback(&h, &back, flow.as_deref(), None).await,
        "_portcullis",
    )
    .unwrap();
    assert_eq!(
        received(&h.echo("/", &session).await, "x-forwarded-groups"),
        ["ml,staff"]
    );

    // An administrator changes alice's groups at the provider; no new sign-in happens.
    let changed = reqwest::Client::new()
        .post(format!("{}/test/groups?sub=alice&set=ops", idp.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let applied = eventually(|| async {
        received(&h.echo("/", &session).await, "x-forwarded-groups") == ["ops"]
    })
    .await;
    assert!(
        applied,
        "the refresh re-reads userinfo and the app sees the new groups"
    );
    h.running.shutdown().await;
}

/// What oauth2-proxy (v7, `pass_user_headers`, its legacy header options) sends upstream for a
/// user's claims: X-Forwarded-User is the `user` of its session, which is the `sub` whatever
/// `user_id_claim` says (issue #3165); email, preferred username and groups from their claims.
fn oauth2_proxy_sends(claims: &serde_json::Value) -> Vec<(&'static str, String)> {
    let text = |k: &str| claims[k].as_str().map(str::to_owned);
    let groups: Vec<&str> = claims["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    [
        ("x-forwarded-user", text("sub")),
        ("x-forwarded-email", text("email")),
        ("x-forwarded-preferred-username", text("preferred_username")),
        (
            "x-forwarded-groups",
            Some(groups.join(",")).filter(|g| !g.is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect()
}

/// `portcullis import oauth2-proxy` on a real oauth2-proxy configuration, run against the real
/// provider: the same person gets the same headers as oauth2-proxy sent — except where
/// oauth2-proxy's bug put the subject in X-Forwarded-User, which the import reported.
#[tokio::test]
async fn an_imported_oauth2_proxy_configuration_sends_the_same_identity() {
    let port = free_port();
    let idp = Idp::start(&format!("http://127.0.0.1:{port}"), &[]);
    let env = format!(
        "OAUTH2_PROXY_PROVIDER=oidc\nOAUTH2_PROXY_OIDC_ISSUER_URL={}\nOAUTH2_PROXY_CLIENT_ID=portcullis\n\
         OAUTH2_PROXY_CLIENT_SECRET=portcullis-test-secret\nOAUTH2_PROXY_UPSTREAMS={{upstream}}\n\
         OAUTH2_PROXY_EMAIL_DOMAINS=*\nOAUTH2_PROXY_PASS_USER_HEADERS=true\nOAUTH2_PROXY_USER_ID_CLAIM=email\n\
         OAUTH2_PROXY_SCOPE=openid email profile groups\n",
        idp.issuer
    );
    let mut settings = portcullis_doctor::Settings::default();
    settings.read_env(&env, "oauth2-proxy.env");
    let imported = portcullis_doctor::import::oauth2_proxy(&settings).unwrap();
    assert!(
        imported.notes.iter().any(|n| n.contains("user-id-claim")),
        "the bug is reported: {:?}",
        imported.notes
    );
    // The secret comes from the environment in real use; the test writes it in.
    let toml = imported
        .toml
        .replace("${OAUTH2_PROXY_CLIENT_SECRET}", "portcullis-test-secret");
    let h = Harness::start_at(port, &toml).await;

    for (login, claims) in [
        (
            "alice",
            serde_json::json!({"sub": "alice", "email": "alice@example.com", "preferred_username": "alice", "groups": ["staff", "ml"]}),
        ),
        (
            "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01",
            serde_json::json!({"sub": "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01", "email": "maria@example.com"}),
        ),
    ] {
        let mut flow = None;
        let authorize = start_with(&h, "oidc", "/", &mut flow).await;
        let back = Person::default()
            .sign_in_at_provider(&authorize, login)
            .await;
        let response = callback(&h, &back, flow.as_deref(), None).await;
        let session = set_cookie_value(&response, "_portcullis").unwrap();
        let echo = h.echo("/", &session).await;
        for (name, theirs) in oauth2_proxy_sends(&claims) {
            let ours = received(&echo, name);
            if name == "x-forwarded-user" && theirs == claims["sub"] && login != "alice" {
                // oauth2-proxy's bug: the subject (a GUID) where a user name belongs.
                assert_eq!(ours, ["maria@example.com"], "{login}: never the GUID");
                continue;
            }
            if name == "x-forwarded-groups" {
                let mut ours: Vec<String> = ours[0].split(',').map(str::to_owned).collect();
                let mut theirs: Vec<String> = theirs.split(',').map(str::to_owned).collect();
                ours.sort();
                theirs.sort();
                assert_eq!(ours, theirs, "{login}: {name}");
                continue;
            }
            assert_eq!(ours, [theirs], "{login}: {name}");
        }
    }
    h.running.shutdown().await;
}
