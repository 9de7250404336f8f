//! Identity from outside Portcullis's own sign-in: a trusted proxy in front (plain headers, AWS
//! ALB, Cloudflare Access, Google IAP) and bearer tokens of other issuers (JWTs, PocketBase).
//!
//! ALB, Cloudflare and Google cannot run in CI, so their key endpoints are stand-ins serving real
//! keys, and the tokens are signed the way those services sign them (ALB's padded segments
//! included). PocketBase is a stand-in with its `auth-refresh` endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use common::fake_idp::{FakeIdp, KID, TEST_KEY};
use common::{Harness, received};
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};

/// An RSA key made for these tests only (Cloudflare Access signs with RS256), and its modulus.
const RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDmoDvvn7JuKJo4
pr+XMaWu8FXC2U6wqrlbOq6UhLk2SMznZ8R5/YmYsYi7pttJbwcgPyjcmu6Btt2K
gJm2GLkSoyr9hEOZsj7lx1WxvMT3ZpLzRHdfd1gnHOIiA4nq5vJBTJduNonUgGXA
0nQQDoP7DnMVMaqBlKNTHYHg1ZQpzIeoeTbMY0FxHS37RMP2pQXRQjE4kY2n2T8C
0iEqoJBzkQAmE9TKwnFTrf0iUaWSYW8EhJcU39bxo9df3KhBlgKkFYKK9AL0dAkn
7YcWujHXgL9/pCjaveCETTYW/h7WwITlMvMtqsPLxOLCOoJSbzr/BLHKzvPZiVMX
zDwYOpxLAgMBAAECggEAAWF8KH/M1YpsKblQ6t9iBJi8bCAkigcg0ybq/40N4UyH
o2rt1k6sGEHbYuzxB1hwJ7+2PC70dqxp/p9DuYMPJY0Ymi3qOVieH5yZAW0Ywwmd
zL0CDlAfSat8Vg8mt721l+ZRLAW6GbUrNdoDTsOJ1nXC87+e/pL47SCObGzs0X6m
LCwkeKZfvsQ7Ab0iW2oIX8tyDQQF53o/5ue5SOtJisEHVTvtDx5HDmW5QvxFw+Op
nOXlYSc182I4IMchVkdEVmPh8FfE3hgr6SVUcT07aMaEsnpZwMPo6yV0d/iNSmLU
chbjdb4JWarGS/1934zO5Luw7QPWECkxsv62QnCVvQKBgQD+yECAMTlYrYCDblBp
Ey+wgb0/7AKAv5VChly78r8EwJmKREWs+frXA6gIE2rnzOZWdWX6KDcyBmW7Twvd
HguSwfTRkSafUlOmaWMHlG6ZO3HCXsjfEEXdw2At5ACDji9ZZUPbcUsMMFNOgitL
fyGLMtFmqGDdWAZhlDbBF+VE3wKBgQDnumzBhpkexCBzTnDZGeR/qHtaWHcdz/fJ
6w75m/swN7Bip+9kNnQX+22qcwuhtR8VWnWRqrR5PaTvh60fft63ViKMj8NGDmdO
BjVWZkffX6QugQUL2Z4nVFxKml4Na+lMrC1AgPeYVKafKy97r8MkDkoe3YsbtT/z
NqzIVGzKFQKBgQC/FXFKs6BO4dGAwTuNktYxixxk1J0L8qP/QMZML8MTzV9aU9nt
4Y4/tH5RkD6dmw8lyOayt3auDh4+XQqIy//iEZWLl1FgLF6QcHnVNX29btfi7zO4
GHxN1jpMMLQx9nGMmmZKLq4adiQEvZu7A54kx/hFBgOf/mTKyl5Gc6WAAQKBgGFE
cmQlUF6Gqqxbz6iBYtVm7ig1HALKidMatJV3sM9DgOlYXnbtGHv8kMLMOaSt9xcq
elEjm0+M3Y+hnryqr2e7YxMnQStF3nz0xCy5EBAmAC94/ppDxUvy8C5sb3AozKvf
VbtOpx8s4SfMo8jCNSIMUXZ1Pe/qe6ZmW85XCbclAoGAdnABiSQ5itI/BMGW71ZY
mgBjZNvobeKygk+1VnNOKa9KftW+e0yPymvuh7WSc49Q2WtcseQ1ZIcCzF+9K0h7
XIXkoVbqpYnnEZpOrPUSb3ydF8xC6vNPBFpQwTuVFY6dp7ZrNe80lYAmlf9iLFhW
6GhYazBxXeyDTjVQ2mxDo/Q=
-----END PRIVATE KEY-----
";
const RSA_N: &str = "5qA775-ybiiaOKa_lzGlrvBVwtlOsKq5WzqulIS5NkjM52fEef2JmLGIu6bbSW8HID8o3JrugbbdioCZthi5EqMq_YRDmbI-5cdVsbzE92aS80R3X3dYJxziIgOJ6ubyQUyXbjaJ1IBlwNJ0EA6D-w5zFTGqgZSjUx2B4NWUKcyHqHk2zGNBcR0t-0TD9qUF0UIxOJGNp9k_AtIhKqCQc5EAJhPUysJxU639IlGlkmFvBISXFN_W8aPXX9yoQZYCpBWCivQC9HQJJ-2HFrox14C_f6Qo2r3ghE02Fv4e1sCE5TLzLarDy8TiwjqCUm86_wSxys7z2YlTF8w8GDqcSw";
const ALB_KID: &str = "5d4c0a9e-7f1b-4c2d-9e8f-0a1b2c3d4e5f";
const ALB_ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/chat/50dc6c495c0c9188";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Key endpoints standing in for AWS (PEM per kid) and Cloudflare (a JWK set), plus PocketBase.
struct Stand {
    base: String,
    pocketbase_hits: Arc<AtomicUsize>,
}

async fn stand() -> Stand {
    let signing = SigningKey::from_pkcs8_pem(TEST_KEY).unwrap();
    let pem = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            &format!("/alb/{ALB_KID}"),
            get(move || {
                let pem = pem.clone();
                async move { pem }
            }),
        )
        .route(
            "/cloudflare/certs",
            get(|| async {
                axum::Json(json!({"keys": [{"kty": "RSA", "alg": "RS256", "kid": "cf-1", "use": "sig", "n": RSA_N, "e": "AQAB"}]}))
            }),
        )
        .route(
            "/pb/api/collections/users/auth-refresh",
            post(move |headers: http::HeaderMap| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if token.ends_with(".good-signature") {
                        axum::Json(json!({"token": token, "record": {
                            "id": "pbrec0000000001", "email": "pat@example.com", "verified": true,
                            "name": "Pat PocketBase", "username": "pat"}}))
                        .into_response()
                    } else {
                        (http::StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "invalid token"})))
                            .into_response()
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Stand {
        base,
        pocketbase_hits: hits,
    }
}

/// A token the way ALB makes one: ES256, `signer` in the header, base64 segments with padding.
fn alb_token(claims: &Value, signer: &str, exp: i64) -> String {
    let header = json!({"alg": "ES256", "kid": ALB_KID, "signer": signer, "iss": "https://idp.example.com", "client": "alb-client", "exp": exp, "typ": "JWT"});
    let padded = |v: &Value| {
        STANDARD
            .encode(v.to_string())
            .replace('+', "-")
            .replace('/', "_")
    };
    let input = format!("{}.{}", padded(&header), padded(claims));
    let signature: Signature = SigningKey::from_pkcs8_pem(TEST_KEY)
        .unwrap()
        .sign(input.as_bytes());
    format!("{input}.{}", STANDARD.encode(signature.to_bytes()))
}

fn cloudflare_token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("cf-1".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn config(stand: &Stand, idp: &FakeIdp) -> String {
    format!(
        "[[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\nidentity_headers = {{ profile = 'openwebui' }}\n\
         [[trusted_identity]]\nid = 'tailscale'\nkind = 'header'\nfrom = ['127.0.0.1/32']\n\
         user_header = 'Tailscale-User-Login'\nname_header = 'Tailscale-User-Name'\n\
         email_header = 'Tailscale-User-Email'\nallowed_users = ['alice@example.com', 'carol@example.com']\n\
         [[trusted_identity]]\nid = 'alb'\nkind = 'aws_alb'\nfrom = ['127.0.0.1/32']\nsigner = '{ALB_ARN}'\nkeys_url = '{base}/alb'\n\
         [[trusted_identity]]\nid = 'cloudflare'\nkind = 'cloudflare_access'\nfrom = ['127.0.0.1/32']\n\
         team_domain = 'team.cloudflareaccess.com'\naudience = 'cf-aud-tag'\nkeys_url = '{base}/cloudflare/certs'\n\
         [[trusted_identity]]\nid = 'iap'\nkind = 'google_iap'\nfrom = ['127.0.0.1/32']\n\
         audience = '/projects/1/global/backendServices/2'\nkeys_url = '{jwks}'\n\
         [[bearer_tokens]]\nid = 'cognito'\nissuer = '{issuer}'\naudiences = ['cognito-client']\njwks_url = '{jwks}'\n\
         [[pocketbase]]\nid = 'pb'\nurl = '{base}/pb'\n",
        base = stand.base,
        issuer = idp.issuer,
        jwks = format!("{}/jwks", idp.issuer),
    )
}

/// A client that connects from 127.0.0.2: not one of the sources' `from` addresses.
fn outsider() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn call(
    h: &Harness,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = client
        .get(h.url("/models"))
        .header(ACCEPT, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_trusted_proxy_in_front_vouches_for_the_user() {
    let (stand, idp) = (stand().await, FakeIdp::start().await);
    let h = Harness::start(&config(&stand, &idp)).await;
    let tailscale = [
        ("Tailscale-User-Login", "alice@example.com"),
        ("Tailscale-User-Name", "Alice Tailnet"),
        ("Tailscale-User-Email", "alice@example.com"),
    ];
    let (status, echo) = call(&h, &h.http, &tailscale).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(received(&echo, "x-forwarded-user"), ["Alice Tailnet"]);
    assert!(
        received(&echo, "tailscale-user-login").is_empty(),
        "the proxy's header is replaced by ours"
    );

    // The same header from an address that is not the proxy is ignored (and never reaches the app).
    let (status, _) = call(&h, &outsider(), &tailscale).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a trusted header from an untrusted address"
    );

    // allowed_users: the proxy may vouch only for the listed people.
    let (status, body) = call(
        &h,
        &h.http,
        &[("Tailscale-User-Login", "mallory@example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not among the users"),
        "{body}"
    );

    // A stream opened with the proxy's identity closes when the user is disabled, as a session's
    // does, and the identity is refused from then on.
    let mut request = h.http.get(h.url("/sse"));
    for (name, value) in tailscale {
        request = request.header(name, value);
    }
    let sse = request.send().await.unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let mut sse = sse.bytes_stream();
    h.upstream.send_event("before");
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), sse.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("before"));
    let state = &h.running.state;
    let alice = state
        .store
        .user_by_email("alice@example.com")
        .await
        .unwrap()
        .unwrap();
    state
        .directory
        .set_status(
            &alice.username,
            portcullis_core::user::UserStatus::Disabled,
            &portcullis_auth::audit::Actor::new("test", None),
        )
        .await
        .unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match sse.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stream must close within 5 s");
    let (status, _) = call(&h, &h.http, &tailscale).await;
    assert_ne!(
        status,
        StatusCode::OK,
        "a disabled user's identity is refused"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn alb_cloudflare_and_iap_tokens_are_verified() {
    let (stand, idp) = (stand().await, FakeIdp::start().await);
    let h = Harness::start(&config(&stand, &idp)).await;
    let claims = json!({"sub": "alb-user-7", "email": "bea@example.com", "email_verified": "true", "name": "Bea ALB", "exp": now() + 120});

    let good = alb_token(&claims, ALB_ARN, now() + 120);
    assert!(good.contains('='), "padded like ALB's");
    let (status, echo) = call(&h, &h.http, &[("x-amzn-oidc-data", &good)]).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "x-forwarded-email"), ["bea@example.com"]);
    assert!(received(&echo, "x-amzn-oidc-data").is_empty());
    let refusals = [
        (
            "another load balancer",
            alb_token(
                &claims,
                "arn:aws:elasticloadbalancing:eu-west-1:999:loadbalancer/app/evil/1",
                now() + 120,
            ),
        ),
        ("expired", alb_token(&claims, ALB_ARN, now() - 3600)),
        (
            "forged",
            format!(
                "{}.{}",
                good.rsplit_once('.').unwrap().0,
                STANDARD.encode([7u8; 64])
            ),
        ),
    ];
    for (what, token) in refusals {
        let (status, body) = call(&h, &h.http, &[("x-amzn-oidc-data", &token)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    let (status, _) = call(&h, &outsider(), &[("x-amzn-oidc-data", &good)]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "ALB's header from elsewhere is ignored"
    );

    let cf = json!({"iss": "https://team.cloudflareaccess.com", "aud": ["cf-aud-tag"], "sub": "cf-1234", "email": "cy@example.com", "exp": now() + 60, "iat": now()});
    let (status, echo) = call(
        &h,
        &h.http,
        &[("Cf-Access-Jwt-Assertion", &cloudflare_token(&cf))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "x-forwarded-email"), ["cy@example.com"]);
    let mut wrong = cf.clone();
    wrong["aud"] = json!(["another-app"]);
    let (status, _) = call(
        &h,
        &h.http,
        &[("Cf-Access-Jwt-Assertion", &cloudflare_token(&wrong))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong audience");
    let mut wrong = cf.clone();
    wrong["iss"] = json!("https://evil.cloudflareaccess.com");
    let (status, _) = call(
        &h,
        &h.http,
        &[("Cf-Access-Jwt-Assertion", &cloudflare_token(&wrong))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong issuer");

    let iap = json!({"iss": "https://cloud.google.com/iap", "aud": "/projects/1/global/backendServices/2", "sub": "accounts.google.com:42", "email": "gus@example.com", "exp": now() + 60, "iat": now()});
    let (status, echo) = call(
        &h,
        &h.http,
        &[("x-goog-iap-jwt-assertion", &idp.sign(&iap, KID))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "x-forwarded-email"), ["gus@example.com"]);
    h.running.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_of_other_issuers() {
    let (stand, idp) = (stand().await, FakeIdp::start().await);
    let h = Harness::start(&config(&stand, &idp)).await;
    // A Cognito-style access token: no `aud`, the client in `client_id`.
    let access = json!({"iss": idp.issuer, "client_id": "cognito-client", "sub": "cog-1", "username": "dee", "email": "dee@example.com", "email_verified": true, "token_use": "access", "exp": now() + 300, "iat": now()});
    let bearer = format!("Bearer {}", idp.sign(&access, KID));
    let (status, echo) = call(&h, &h.http, &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "x-forwarded-email"), ["dee@example.com"]);

    let mut wrong = access.clone();
    wrong["client_id"] = json!("another-client");
    let (status, _) = call(
        &h,
        &h.http,
        &[(
            "authorization",
            &format!("Bearer {}", idp.sign(&wrong, KID)),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "minted for another app");
    let mut expired = access.clone();
    expired["exp"] = json!(now() - 3600);
    let (status, _) = call(
        &h,
        &h.http,
        &[(
            "authorization",
            &format!("Bearer {}", idp.sign(&expired, KID)),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");
    let (status, _) = call(
        &h,
        &h.http,
        &[(
            "authorization",
            &format!("Bearer {}", idp.sign_hs256(&access)),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "HMAC is never accepted");

    // A later token that carries only `sub` (a Cognito access token often does) updates only
    // what it carries: the name the user has stays, never replaced by a placeholder.
    let named = json!({"iss": idp.issuer, "client_id": "cognito-client", "sub": "cog-2", "name": "Alice Tester", "email": "alice.t@example.com", "email_verified": true, "exp": now() + 300, "iat": now()});
    let (status, _) = call(
        &h,
        &h.http,
        &[(
            "authorization",
            &format!("Bearer {}", idp.sign(&named, KID)),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bare = json!({"iss": idp.issuer, "client_id": "cognito-client", "sub": "cog-2", "exp": now() + 301, "iat": now()});
    let (status, _) = call(
        &h,
        &h.http,
        &[("authorization", &format!("Bearer {}", idp.sign(&bare, KID)))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let alice = h
        .running
        .state
        .store
        .user_by_identity(&idp.issuer, "cog-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.display_name.as_deref(), Some("Alice Tester"));
    assert_eq!(alice.email.as_deref(), Some("alice.t@example.com"));

    // A token nobody here issued is the app's own: with a session it reaches the app unchanged.
    h.setup_admin().await;
    h.add_user("erin", None, None, portcullis_core::Role::User, &[])
        .await;
    let cookie = h.sign_in("erin", "user-password-1").await.unwrap();
    let foreign = json!({"iss": "https://openwebui.example.com", "sub": "x", "exp": now() + 60});
    let foreign = format!(
        "Bearer {}.{}.sig",
        B64.encode(r#"{"alg":"HS256"}"#),
        B64.encode(foreign.to_string())
    );
    let (status, echo) = call(
        &h,
        &h.http,
        &[
            ("authorization", &foreign),
            ("cookie", &format!("_portcullis={cookie}")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(received(&echo, "authorization"), [foreign.as_str()]);
    assert_eq!(received(&echo, "x-forwarded-user"), ["erin"]);

    // PocketBase tokens are introspected once and the answer reused.
    let pb_claims = json!({"type": "auth", "collectionId": "_pb_users_auth_", "id": "pbrec0000000001", "exp": now() + 600});
    let pb = format!(
        "{}.{}.good-signature",
        B64.encode(r#"{"alg":"HS256"}"#),
        B64.encode(pb_claims.to_string())
    );
    let use_pb = || async {
        let (status, echo) = call(
            &h,
            &h.http,
            &[(AUTHORIZATION.as_str(), &format!("Bearer {pb}"))],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{echo}");
        assert_eq!(received(&echo, "x-forwarded-email"), ["pat@example.com"]);
    };
    // The first use creates pat; the change feed's announcement of that (within a poll
    // interval) drops pat's cached identities once, as any change to a user does.
    use_pb().await;
    tokio::time::sleep(4 * portcullis_auth::watch::POLL_INTERVAL).await;
    use_pb().await;
    let settled = stand.pocketbase_hits.load(Ordering::SeqCst);
    assert!(settled <= 2, "{settled} introspections");
    for _ in 0..3 {
        use_pb().await;
    }
    assert_eq!(
        stand.pocketbase_hits.load(Ordering::SeqCst),
        settled,
        "cached by the token's hash"
    );
    let bad = pb.replace("good-signature", "bad-signature");
    for _ in 0..2 {
        let (status, _) = call(
            &h,
            &h.http,
            &[(AUTHORIZATION.as_str(), &format!("Bearer {bad}"))],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        stand.pocketbase_hits.load(Ordering::SeqCst),
        settled + 1,
        "a refusal is cached briefly too"
    );
    h.running.shutdown().await;
}
