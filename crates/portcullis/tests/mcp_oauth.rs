//! Portcullis as the OAuth 2.1 authorization server of its MCP apps, over HTTP as a client
//! speaks it: metadata, registration, authorization with consent, code and refresh token
//! exchanges, revocation, and every refusal the MCP authorization specification asks for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, received};
use portcullis_core::{Clock, ManualClock, Role, Timestamp};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};

const APPS: &str = r#"
[[apps]]
name = "tools"
path_prefix = "/mcp"
upstream = "{upstream}"
kind = "mcp"
scopes = ["mcp:tools", "mcp:admin"]

[[apps]]
name = "other"
path_prefix = "/mcp-other"
upstream = "{upstream}"
kind = "mcp"

[[apps]]
name = "staff-only"
path_prefix = "/staff-mcp"
upstream = "{upstream}"
kind = "mcp"
access = { groups = ["staff"] }

[[apps]]
name = "chat"
upstream = "{upstream}"
"#;

const REDIRECT: &str = "http://127.0.0.1/callback";
const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-1234567890";

fn now() -> Timestamp {
    Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap(),
    )
}

/// A registered client as the test drives it.
struct Client {
    id: String,
    secret: Option<String>,
}

async fn register(h: &Harness, body: Value) -> (StatusCode, Value) {
    let response = h
        .http
        .post(h.url("/.portcullis/oauth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn public_client(h: &Harness) -> Client {
    let (status, body) = register(
        h,
        json!({"client_name": "Claude Code", "redirect_uris": [REDIRECT]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Client {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: None,
    }
}

/// The authorization request's query for `client` and `resource`.
fn authorize_query(client: &str, resource: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", "http://127.0.0.1:51234/callback"),
        ("state", "the-state"),
        ("code_challenge", &portcullis_auth::oauth::s256(VERIFIER)),
        ("code_challenge_method", "S256"),
        ("resource", resource),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in extra {
        query.retain(|(k, _)| k != name);
        if !value.is_empty() {
            query.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    query
}

async fn authorize(
    h: &Harness,
    cookie: Option<&str>,
    query: &[(String, String)],
) -> reqwest::Response {
    let mut request = h
        .http
        .get(h.url("/.portcullis/oauth/authorize"))
        .query(query);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, format!("_portcullis={cookie}"));
    }
    request.send().await.unwrap()
}

/// Signs in as `cookie`'s user, allows on the consent page, and returns the redirect's query.
async fn consent(h: &Harness, cookie: &str, query: &[(String, String)]) -> Vec<(String, String)> {
    let page = authorize(h, Some(cookie), query).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = common::hidden_field(&html, "csrf");
    let mut form = query.to_vec();
    form.push(("csrf".into(), csrf));
    form.push(("decision".into(), "allow".into()));
    let answer = h
        .http
        .post(h.url("/.portcullis/oauth/authorize"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    redirect_query(&answer, "http://127.0.0.1:51234/callback?")
}

fn redirect_query(response: &reqwest::Response, expected_prefix: &str) -> Vec<(String, String)> {
    let location = response.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with(expected_prefix), "{location}");
    serde_urlencoded::from_str(&location[expected_prefix.len()..]).unwrap()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn token(h: &Harness, client: &Client, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    fields.push(("client_id", &client.id));
    if let Some(secret) = &client.secret {
        fields.push(("client_secret", secret));
    }
    let response = h
        .http
        .post(h.url("/.portcullis/oauth/token"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

async fn exchange(h: &Harness, client: &Client, code: &str) -> (StatusCode, Value) {
    token(
        h,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:51234/callback"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn mcp_status(h: &Harness, path: &str, access_token: &str) -> reqwest::Response {
    h.http
        .post(h.url(path))
        .header(AUTHORIZATION, format!("Bearer {access_token}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
}

async fn start(extra: &str) -> (Harness, ManualClock, String) {
    let clock = ManualClock::at(now());
    let h = Harness::start_with_clock(&format!("{APPS}{extra}"), Arc::new(clock.clone())).await;
    h.setup_admin().await;
    h.add_user("agent", Some("agent@example.com"), None, Role::User, &[])
        .await;
    let cookie = h.sign_in("agent", "user-password-1").await.unwrap();
    (h, clock, cookie)
}

#[tokio::test]
async fn the_authorization_server_describes_itself_as_mcp_clients_expect() {
    let (h, _, _) = start("").await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp",
    ] {
        let response = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let metadata: Value = response.json().await.unwrap();
        assert_eq!(metadata["issuer"], h.base);
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(metadata["client_id_metadata_document_supported"], true);
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(
            metadata["authorization_endpoint"],
            h.url("/.portcullis/oauth/authorize")
        );
        assert_eq!(
            metadata["token_endpoint"],
            h.url("/.portcullis/oauth/token")
        );
        assert_eq!(
            metadata["registration_endpoint"],
            h.url("/.portcullis/oauth/register")
        );
        assert_eq!(
            metadata["revocation_endpoint"],
            h.url("/.portcullis/oauth/revoke")
        );
    }
    // The protected resource names this server; an app at / never sees discovery.
    let resource: Value = h
        .http
        .get(h.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["authorization_servers"], json!([h.base]));
    assert_eq!(h.upstream.hits(), 0);
    // OpenID discovery is a shared path: an app at / (an identity provider, say) keeps its
    // own; where no app claims it, Portcullis serves the same document there.
    let kept = h
        .http
        .get(h.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.status(),
        StatusCode::UNAUTHORIZED,
        "the app at / (behind its sign-in) keeps its own discovery"
    );
    let alone = Harness::start(
        "[[apps]]\nname = 'tools'\npath_prefix = '/mcp'\nupstream = '{upstream}'\nkind = 'mcp'\n",
    )
    .await;
    let response = alone
        .http
        .get(alone.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], alone.base);
}

#[tokio::test]
async fn a_client_connects_refreshes_and_is_revoked() {
    let (h, clock, cookie) = start("").await;
    let client = public_client(&h).await;
    let resource = h.url("/mcp");
    let query = authorize_query(&client.id, &resource, &[("scope", "mcp:tools mcp:admin")]);

    // Not signed in: to the sign-in page, and back here afterwards.
    let anonymous = authorize(&h, None, &query).await;
    assert_eq!(anonymous.status(), StatusCode::FOUND);
    let location = anonymous.headers()[LOCATION].to_str().unwrap();
    assert!(
        location.starts_with(
            "/.portcullis/sign_in?rd=/.portcullis/oauth/authorize%3Fresponse_type%3Dcode"
        ),
        "{location}"
    );

    // The consent page names the client, where it sends the user, and the app; a client that
    // redirects only to this machine carries a warning.
    let page = authorize(&h, Some(&cookie), &query).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:51234"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    for shown in [
        "Claude Code",
        "127.0.0.1:51234",
        "tools",
        "agent",
        "mcp:admin",
        "own computer",
    ] {
        assert!(
            html.contains(shown),
            "{shown} missing from the consent page"
        );
    }

    // Cancelling sends the user back with access_denied.
    let mut declined = query.clone();
    declined.push(("csrf".into(), common::hidden_field(&html, "csrf")));
    declined.push(("decision".into(), "deny".into()));
    let answer = h
        .http
        .post(h.url("/.portcullis/oauth/authorize"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .form(&declined)
        .send()
        .await
        .unwrap();
    let back = redirect_query(&answer, "http://127.0.0.1:51234/callback?");
    assert_eq!(param(&back, "error"), Some("access_denied"));
    assert_eq!(param(&back, "state"), Some("the-state"));

    // Allowing: a code, the state and the issuer.
    let back = consent(&h, &cookie, &query).await;
    assert_eq!(param(&back, "state"), Some("the-state"));
    assert_eq!(param(&back, "iss"), Some(h.base.as_str()));
    let code = param(&back, "code").unwrap().to_owned();

    // A wrong verifier does not redeem it (and does not spend it).
    let (status, body) = token(
        &h,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:51234/callback"),
            (
                "code_verifier",
                "another-verifier-that-is-long-enough-for-pkce-12345",
            ),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, tokens) = exchange(&h, &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp:tools mcp:admin");
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The token works at its MCP server, and is not passed through to it.
    let response = mcp_status(&h, "/mcp", &access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert!(
        received(&echo, "authorization").is_empty(),
        "no token passthrough: {echo}"
    );
    assert_eq!(received(&echo, "x-portcullis-assertion").len(), 1);
    assert_eq!(
        received(&echo, "x-forwarded-user"),
        ["agent"],
        "the identity headers name the user: {echo}"
    );
    // Not at another MCP server (its audience is /mcp, and /mcp-other is not /mcp), and not
    // at a web app, where it is not a credential at all.
    let other = mcp_status(&h, "/mcp-other", &access).await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    assert!(
        other.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // A forged token (right shape, wrong tag) is refused.
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_eq!(
        mcp_status(&h, "/mcp", &forged).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A replayed code is refused and takes the tokens it gave with it.
    let (status, body) = exchange(&h, &client, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = token(
        &h,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Again, properly: then refresh rotates, and the previous token has a short grace.
    let back = consent(&h, &cookie, &query).await;
    let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh_with = |token: String, scope: Option<&'static str>| {
        let (h, client) = (&h, &client);
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            token_owned(h, client, &form).await
        }
    };
    let (status, rotated) = refresh_with(first_refresh.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        mcp_status(&h, "/mcp", rotated["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    // Scopes only narrow.
    let (status, body) = refresh_with(second_refresh.clone(), Some("mcp:tools other:scope")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    clock.advance(Duration::from_secs(10));
    let (status, _) = refresh_with(first_refresh.clone(), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "within the grace the previous token still works"
    );
    clock.advance(Duration::from_secs(60));
    let (status, body) = refresh_with(first_refresh.clone(), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = refresh_with(second_refresh.clone(), None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "reuse after the grace ended the whole grant"
    );

    // Revocation ends the grant at once; an unknown token is not an error.
    let back = consent(&h, &cookie, &query).await;
    let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::OK
    );
    for revoked in [tokens["refresh_token"].as_str().unwrap(), "pcr_unknown"] {
        let response = h
            .http
            .post(h.url("/.portcullis/oauth/revoke"))
            .form(&[("token", revoked), ("client_id", &client.id)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A grant ends when unused for grant_lifetime; disabling the user ends it at once.
    let back = consent(&h, &cookie, &query).await;
    let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let state = &h.running.state;
    state
        .store
        .set_status(
            &common::uuid_like("agent"),
            portcullis_core::user::UserStatus::Disabled,
            clock.now(),
        )
        .await
        .unwrap();
    state.apply_user_change(&common::uuid_like("agent")).await;
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) =
        refresh_with(tokens["refresh_token"].as_str().unwrap().to_owned(), None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a disabled user's grant refreshes no more"
    );
}

async fn token_owned(h: &Harness, client: &Client, form: &[(&str, &str)]) -> (StatusCode, Value) {
    token(h, client, form).await
}

#[tokio::test]
async fn an_expired_grant_and_an_insufficient_scope_are_refused() {
    let (h, clock, cookie) = start("[oauth]\ngrant_lifetime = '2h'\n").await;
    let client = public_client(&h).await;
    // Only one of the app's two scopes: the token is valid but not enough.
    let narrow = authorize_query(&client.id, &h.url("/mcp"), &[("scope", "mcp:tools")]);
    let back = consent(&h, &cookie, &narrow).await;
    let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    let response = mcp_status(&h, "/mcp", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    assert_eq!(h.upstream.hits(), 0);

    let full = authorize_query(&client.id, &h.url("/mcp"), &[]);
    let back = consent(&h, &cookie, &full).await;
    let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    clock.advance(Duration::from_secs(3 * 3600));
    let (status, body) = token(
        &h,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn bad_authorization_requests_are_refused_where_it_is_safe_to_say_so() {
    let (h, _, cookie) = start("").await;
    let client = public_client(&h).await;
    let resource = h.url("/mcp");

    // Until the client and redirect URI are known, nothing goes to the redirect URI.
    for (what, extra) in [
        (
            "unregistered redirect",
            vec![("redirect_uri", "https://evil.example/callback")],
        ),
        ("unknown client", vec![("client_id", "pcc_nobody")]),
        ("no client", vec![("client_id", "")]),
    ] {
        let response = authorize(
            &h,
            Some(&cookie),
            &authorize_query(&client.id, &resource, &extra),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        assert!(
            response.headers().get(LOCATION).is_none(),
            "{what}: never redirected"
        );
    }
    // After, the client hears of it, with the state and the issuer.
    let root = h.url("/");
    for (what, extra, error) in [
        (
            "plain PKCE",
            vec![("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            "no PKCE",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "unknown resource",
            vec![("resource", "https://elsewhere.example/mcp")],
            "invalid_target",
        ),
        (
            "a web app as resource",
            vec![("resource", root.as_str())],
            "invalid_target",
        ),
        ("no resource", vec![("resource", "")], "invalid_target"),
        (
            "unknown scope",
            vec![("scope", "mcp:tools root")],
            "invalid_scope",
        ),
        (
            "implicit flow",
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
    ] {
        let response = authorize(
            &h,
            Some(&cookie),
            &authorize_query(&client.id, &resource, &extra),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{what}");
        let back = redirect_query(&response, "http://127.0.0.1:51234/callback?");
        assert_eq!(param(&back, "error"), Some(error), "{what}");
        assert_eq!(param(&back, "state"), Some("the-state"), "{what}");
        assert_eq!(param(&back, "iss"), Some(h.base.as_str()), "{what}");
    }

    // A code for /mcp with another resource named at the token endpoint: invalid_target.
    let back = consent(&h, &cookie, &authorize_query(&client.id, &resource, &[])).await;
    let (status, body) = token(
        &h,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", param(&back, "code").unwrap()),
            ("redirect_uri", "http://127.0.0.1:51234/callback"),
            ("code_verifier", VERIFIER),
            ("resource", &h.url("/mcp-other")),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );

    // The app's access policy applies before consent.
    let response = authorize(
        &h,
        Some(&cookie),
        &authorize_query(&client.id, &h.url("/staff-mcp"), &[]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("may not use staff-only")
    );

    // Registration refuses what could leak a code, and is rate-limited per address.
    for (what, body) in [
        (
            "plain http elsewhere",
            json!({"redirect_uris": ["http://evil.example/cb"]}),
        ),
        (
            "javascript",
            json!({"redirect_uris": ["javascript:alert(1)"]}),
        ),
        ("no redirect", json!({"client_name": "x"})),
        (
            "implicit",
            json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}),
        ),
    ] {
        let (status, answer) = register(&h, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    }
}

#[tokio::test]
async fn confidential_clients_prove_their_secret_and_registration_is_limited() {
    let (h, _, cookie) = start("[oauth]\nregistrations_per_hour = 3\n").await;
    let (status, body) = register(
        &h,
        json!({
            "client_name": "Server-side agent",
            "redirect_uris": ["https://agent.example.com/callback", REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    let mut client = Client {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: Some("pcs_secret_wrong".into()),
    };
    let back = consent(
        &h,
        &cookie,
        &authorize_query(&client.id, &h.url("/mcp"), &[]),
    )
    .await;
    let code = param(&back, "code").unwrap().to_owned();
    let (status, body) = exchange(&h, &client, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    client.secret = None;
    let (status, _) = exchange(&h, &client, &code).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no secret at all");
    client.secret = Some(secret.clone());
    let (status, tokens) = exchange(&h, &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // HTTP Basic works as well.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", client.id));
    let response = h
        .http
        .post(h.url("/.portcullis/oauth/token"))
        .header(AUTHORIZATION, format!("Basic {basic}"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Two more registrations from this address, then 429.
    for _ in 0..2 {
        assert_eq!(
            register(&h, json!({"redirect_uris": [REDIRECT]})).await.0,
            StatusCode::CREATED
        );
    }
    let (status, body) = register(&h, json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

/// Runs the official SDK's OAuth client (tests/mcp/oauth-client.mjs); what it reported.
async fn sdk_oauth_client(
    url: &str,
    state_file: &std::path::Path,
    cookie: &str,
    mode: &str,
    client_metadata_url: Option<&str>,
) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/oauth-client.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .arg(url)
        .arg(state_file)
        .arg(cookie)
        .arg(mode);
    if let Some(metadata) = client_metadata_url {
        command.arg(metadata);
    }
    let out = command.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// Client ID metadata documents served over https on loopback by Python's http.server, with a
/// certificate from a test CA; kept alive with the returned guard.
struct Documents {
    base: String,
    certs: tempfile::TempDir,
    _server: tokio::process::Child,
}

async fn metadata_documents(redirect_uri: &str) -> Documents {
    let certs = tempfile::tempdir().unwrap();
    common::ldap::certificates(certs.path());
    let port = common::idp::free_port();
    let base = format!("https://127.0.0.1:{port}");
    let site = certs.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let document = |id: &str| {
        json!({
            "client_id": id,
            "client_name": "Metadata document client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
        .to_string()
    };
    std::fs::write(
        site.join("client.json"),
        document(&format!("{base}/client.json")),
    )
    .unwrap();
    std::fs::write(
        site.join("wrong.json"),
        document("https://elsewhere.example/client.json"),
    )
    .unwrap();
    std::fs::write(
        site.join("big.json"),
        " ".repeat(6000) + &document(&format!("{base}/big.json")),
    )
    .unwrap();
    let server = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import http.server,ssl,sys,os\n\
             os.chdir(sys.argv[1])\n\
             s=http.server.ThreadingHTTPServer(('127.0.0.1',int(sys.argv[2])),http.server.SimpleHTTPRequestHandler)\n\
             c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
             c.load_cert_chain(sys.argv[3],sys.argv[4])\n\
             s.socket=c.wrap_socket(s.socket,server_side=True)\n\
             s.serve_forever()",
        )
        .arg(&site)
        .arg(port.to_string())
        .arg(certs.path().join("server.pem"))
        .arg(certs.path().join("server.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Documents {
                base,
                certs,
                _server: server,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the metadata document server did not start");
}

#[tokio::test]
async fn the_official_sdk_connects_through_the_oauth_flow_and_loses_access_when_revoked() {
    let everything = common::mcp::server_everything().await;
    let documents = metadata_documents("http://127.0.0.1:33418/callback").await;
    let h = Harness::start(&format!(
        "[[apps]]\nname = \"everything\"\npath_prefix = \"/mcp\"\nkind = \"mcp\"\n\
         upstream = \"http://127.0.0.1:{}\"\n\
         [oauth]\nmetadata_networks = [\"127.0.0.0/8\"]\nmetadata_ca_file = \"{}\"\n",
        everything.port,
        documents.certs.path().join("ca.pem").display()
    ))
    .await;
    h.setup_admin().await;
    h.add_user("agent", Some("agent@example.com"), None, Role::User, &[])
        .await;
    let cookie = h.sign_in("agent", "user-password-1").await.unwrap();
    let url = h.url("/mcp");

    // Dynamic registration, then a client ID metadata document: each the whole way.
    let metadata_url = format!("{}/client.json", documents.base);
    for (how, metadata) in [
        ("registration", None),
        ("metadata document", Some(metadata_url.as_str())),
    ] {
        let state = h
            .dir
            .path()
            .join(format!("sdk-{}.json", metadata.is_some()));
        let report = sdk_oauth_client(&url, &state, &cookie, "connect", metadata).await;
        assert!(report.get("error").is_none(), "{how}: {report}");
        assert_eq!(report["authorizations"], 1, "{how}: {report}");
        assert_eq!(report["iss"], h.base.as_str(), "{how}");
        assert!(
            report["authorizationUrl"]
                .as_str()
                .unwrap()
                .contains(&format!("resource={}", urlencode(&url))),
            "{how}: the SDK names the resource: {report}"
        );
        assert_eq!(report["echo"], "Echo: with an OAuth token", "{how}");
        assert_eq!(
            report["progress"],
            json!([1, 2]),
            "{how}: streamed progress"
        );
        assert_eq!(
            report["refreshed"], true,
            "{how}: the refresh token rotated: {report}"
        );
        assert!(report["afterRefresh"].as_u64().unwrap() > 0, "{how}");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        if let Some(metadata) = metadata {
            assert_eq!(
                saved["client"]["client_id"], metadata,
                "the URL is the client id"
            );
            assert_eq!(
                report["consentNamesClient"], false,
                "the document's own name is shown"
            );
        } else {
            assert!(
                saved["client"]["client_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("pcc_")
            );
            assert_eq!(report["consentNamesClient"], true);
        }
        // With the saved tokens the client comes back without asking anyone.
        let again = sdk_oauth_client(&url, &state, &cookie, "reuse", metadata).await;
        assert!(again.get("error").is_none(), "{how}: {again}");
        assert_eq!(again["authorizations"], 0, "{how}");
    }

    // Disabling the user ends the access and the refresh.
    let state = h.running.state.clone();
    let agent = common::uuid_like("agent");
    state
        .store
        .set_status(
            &agent,
            portcullis_core::user::UserStatus::Disabled,
            state.clock.now(),
        )
        .await
        .unwrap();
    state.apply_user_change(&agent).await;
    let file = h.dir.path().join("sdk-false.json");
    let refused = sdk_oauth_client(&url, &file, &cookie, "reuse", None).await;
    // Its access token is refused, and so is the refresh that follows (`invalid_grant`).
    assert!(refused.get("tools").is_none(), "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("InvalidGrant"),
        "{refused}"
    );
}

/// A URL as URLSearchParams writes it in a query, for the few characters a loopback URL has.
fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

#[tokio::test]
async fn metadata_documents_must_name_themselves_and_come_from_where_they_may() {
    let documents = metadata_documents(REDIRECT).await;
    let ca = documents.certs.path().join("ca.pem");
    let (h, _, cookie) = start(&format!(
        "[oauth]\nmetadata_networks = [\"127.0.0.0/8\"]\nmetadata_ca_file = \"{}\"\n",
        ca.display()
    ))
    .await;
    let resource = h.url("/mcp");
    let refusal = |id: String| {
        let (h, cookie, resource) = (&h, &cookie, &resource);
        async move {
            let response = authorize(h, Some(cookie), &authorize_query(&id, resource, &[])).await;
            assert!(
                response.headers().get(LOCATION).is_none(),
                "{id}: never redirected"
            );
            (response.status(), response.text().await.unwrap())
        }
    };
    let (status, page) = refusal(format!("{}/client.json", documents.base)).await;
    assert_eq!(status, StatusCode::OK, "a good document: the consent page");
    assert!(page.contains("Metadata document client"), "{page}");
    for (file, why) in [
        ("wrong.json", "not the URL it was fetched from"),
        ("big.json", "larger than 5 KiB"),
        ("missing.json", "404"),
    ] {
        let (status, page) = refusal(format!("{}/{file}", documents.base)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{file}");
        assert!(page.contains(why), "{file}: {page}");
    }
    let (status, page) = refusal(format!("http://127.0.0.1:{}/client.json", 9)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");

    // Without metadata_networks, a document on a private or loopback address is never fetched.
    let (strict, _, cookie) = start(&format!(
        "[oauth]\nmetadata_ca_file = \"{}\"\n",
        ca.display()
    ))
    .await;
    let response = authorize(
        &strict,
        Some(&cookie),
        &authorize_query(
            &format!("{}/client.json", documents.base),
            &strict.url("/mcp"),
            &[],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("private or loopback")
    );
    let response = authorize(
        &strict,
        Some(&cookie),
        &authorize_query("https://localhost:9/client.json", &strict.url("/mcp"), &[]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("private or loopback")
    );
}

#[tokio::test]
async fn people_and_admins_see_connected_clients_and_disconnect_them() {
    let (h, _, cookie) = start("").await;
    let admin = h.sign_in("admin", common::ADMIN_PASSWORD).await.unwrap();
    let client = public_client(&h).await;
    let connect = || async {
        let back = consent(
            &h,
            &cookie,
            &authorize_query(&client.id, &h.url("/mcp"), &[]),
        )
        .await;
        let (_, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
        tokens["access_token"].as_str().unwrap().to_owned()
    };
    let access = connect().await;
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::OK
    );

    // The person's own list, through the API and on the account page.
    let (status, mine) = common::call(
        &h,
        &cookie,
        reqwest::Method::GET,
        "/.portcullis/api/v1/me/grants",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let grants = mine["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{mine}");
    assert_eq!(grants[0]["client_name"], "Claude Code");
    assert_eq!(grants[0]["app"], "tools");
    assert_eq!(grants[0]["scopes"], json!(["mcp:tools", "mcp:admin"]));
    assert!(
        grants[0]["last_used_at"].is_i64(),
        "the use was recorded: {mine}"
    );
    let page = h
        .http
        .get(h.url("/.portcullis/account"))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Connected MCP clients") && page.contains("Claude Code"));

    // Disconnecting on the account page ends the access at once.
    let id = grants[0]["id"].as_str().unwrap().to_owned();
    let revoked = h
        .http
        .post(h.url(&format!("/.portcullis/account/grants/{id}/revoke")))
        .header(COOKIE, format!("_portcullis={cookie}"))
        .form(&[("csrf", common::hidden_field(&page, "csrf"))])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // An admin sees the user's clients on their page and through the API, and revokes them;
    // someone else's grant id is not found under another user.
    let access = connect().await;
    let (_, listed) = common::call(
        &h,
        &admin,
        reqwest::Method::GET,
        "/.portcullis/api/v1/users/agent/grants",
        None,
    )
    .await;
    let id = listed["grants"][0]["id"].as_str().unwrap().to_owned();
    let user_page = h
        .http
        .get(h.url("/.portcullis/admin/users/agent"))
        .header(COOKIE, format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        user_page.contains("Claude Code") && user_page.contains(&format!("grants/{id}/revoke"))
    );
    let (status, _) = common::call(
        &h,
        &admin,
        reqwest::Method::DELETE,
        &format!("/.portcullis/api/v1/users/admin/grants/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = common::call(
        &h,
        &cookie,
        reqwest::Method::GET,
        "/.portcullis/api/v1/users/agent/grants",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only admins list others' clients"
    );
    let (status, _) = common::call(
        &h,
        &admin,
        reqwest::Method::DELETE,
        &format!("/.portcullis/api/v1/users/agent/grants/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        mcp_status(&h, "/mcp", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let trail = h.running.state.store.recent_audit(50).await.unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "oauth_client_registered",
        "oauth_consent",
        "oauth_grant",
        "oauth_grant_revoked",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn tool_rules_decide_each_tool_call_and_every_call_is_audited() {
    let h = Harness::start(
        "[[apps]]\nname = 'tools'\npath_prefix = '/mcp'\nupstream = '{upstream}'\nkind = 'mcp'\n\
         audit_tool_arguments = true\n\
         [[apps.tool_rules]]\ngroups = ['staff']\nallow = ['*']\n\
         [[apps.tool_rules]]\ndeny = ['delete_*']\n\
         [[apps.tool_rules]]\nallow = ['echo', 'read_*']\n",
    )
    .await;
    let admin = h.setup_admin().await;
    h.add_user("agent", Some("agent@example.com"), None, Role::User, &[])
        .await;
    let (_, body) = common::call(
        &h,
        &admin,
        reqwest::Method::POST,
        "/.portcullis/api/v1/users/agent/keys",
        Some(json!({"name": "agent-key", "apps": ["tools"]})),
    )
    .await;
    let key = body["key"].as_str().unwrap().to_owned();
    let post = |body: String| {
        h.http
            .post(h.url("/mcp"))
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let call = |id: i64, tool: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": tool, "arguments": {"path": "/etc"}}})
        .to_string()
    };

    // Allowed: forwarded as sent.
    let allowed = post(call(1, "read_file")).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(h.upstream.hits(), 1);

    // Denied (by a deny rule, and by no rule allowing it): a JSON-RPC error for that id, and
    // nothing reaches the server; a batch hiding one is refused whole.
    for (tool, why) in [
        ("delete_everything", "denied"),
        ("write_file", "no tool rule allows"),
    ] {
        let refused = post(call(2, tool)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::OK);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["id"], 2);
        assert_eq!(error["error"]["code"], -32001);
        assert!(
            error["error"]["message"].as_str().unwrap().contains(why),
            "{error}"
        );
    }
    let batch = format!("[{},{}]", call(3, "echo"), call(4, "delete_x"));
    let refused: Value = post(batch).await.unwrap().json().await.unwrap();
    assert_eq!(refused["id"], 4);
    // A body that cannot be checked is refused rather than passed on.
    let garbled = post("\u{feff}{\"method\":\"tools/call\"}".into())
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.upstream.hits(), 1, "no refused call reached the server");

    // Forward-auth cannot see bodies, so it does not let POSTs to this app through.
    let described = h
        .http
        .post(h.url("/.portcullis/authz/forward-auth"))
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header("x-forwarded-method", "POST")
        .header("x-forwarded-uri", "/mcp")
        .header("x-forwarded-host", h.base.trim_start_matches("http://"))
        .send()
        .await
        .unwrap();
    assert_eq!(described.status(), StatusCode::FORBIDDEN);

    // Every call is in the audit trail: who, which tool, through what, with the arguments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trail = h.running.state.store.recent_audit(50).await.unwrap();
    let calls: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "mcp_tool_call")
        .collect();
    assert_eq!(calls.len(), 5, "{calls:?}");
    let read = calls
        .iter()
        .find(|e| {
            e.reason
                .as_deref()
                .unwrap_or_default()
                .contains("read_file")
        })
        .unwrap();
    assert_eq!(read.outcome, "success");
    assert!(
        read.actor
            .as_deref()
            .unwrap()
            .contains(&common::uuid_like("agent"))
    );
    let reason = read.reason.as_deref().unwrap();
    assert!(
        reason.contains("via key agent-key") && reason.contains("/etc"),
        "{reason}"
    );
    assert!(
        calls.iter().any(|e| e.outcome == "failure"
            && e.reason.as_deref().unwrap().contains("delete_everything"))
    );
}

#[tokio::test]
async fn revoking_a_grant_closes_the_streams_its_token_opened() {
    let h =
        Harness::start("[[apps]]\nname = 'tools'\nupstream = '{upstream}'\nkind = 'mcp'\n").await;
    let admin = h.setup_admin().await;
    let client = public_client(&h).await;
    let back = consent(&h, &admin, &authorize_query(&client.id, &h.base, &[])).await;
    let (status, tokens) = exchange(&h, &client, param(&back, "code").unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // A stream that sends one chunk and then stays open (an MCP server's GET stream).
    let mut stream = h
        .http
        .get(h.url("/stall"))
        .header(AUTHORIZATION, format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the first chunk arrives"
    );

    let (_, listed) = common::call(
        &h,
        &admin,
        reqwest::Method::GET,
        "/.portcullis/api/v1/me/grants",
        None,
    )
    .await;
    let id = listed["grants"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = common::call(
        &h,
        &admin,
        reqwest::Method::DELETE,
        &format!("/.portcullis/api/v1/me/grants/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream is closed within a second of the revocation"
    );
}
