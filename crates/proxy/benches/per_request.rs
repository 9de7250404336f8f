//! The per-request check, without the network: parse the request, route it, resolve the session
//! cookie from the cache, apply the policy, and rewrite the headers (strip + inject).
//!
//! `mcp_token_check` does the same for an MCP app and an OAuth access token (MAC, expiry, and
//! the grant in memory: no database).
//!
//! Run: `cargo bench -p portcullis-proxy --bench per_request`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark setup: a panic is a failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::FutureExt;
use http::Request;
use portcullis_auth::SessionManager;
use portcullis_auth::assertion::Assertions;
use portcullis_auth::keys::KeyRing;
use portcullis_auth::oauth::GrantRing;
use portcullis_auth::principal::Authenticator;
use portcullis_auth::seal::Sealer;
use portcullis_auth::session::SessionOrigin;
use portcullis_core::session::SessionPolicy;
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Clock, Role, SystemClock, Timestamp};
use portcullis_http::forwarded::TrustedProxies;
use portcullis_proxy::context::RequestContext;
use portcullis_proxy::phases;
use portcullis_proxy::routes::RouteTable;
use portcullis_store::{AuthCode, Grant, NewUser, SqlStore, Store};

struct Fixture {
    table: RouteTable,
    auth: Authenticator,
    assertions: Assertions,
    trusted: TrustedProxies,
    request: Request<()>,
    mcp_request: Request<()>,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
        let user: User = store
            .create_user(
                NewUser {
                    id: "5b1f8a2e-0c4d-4f7e-9a63-1d2e3f4a5b6c".into(),
                    username: "alice".into(),
                    email: Some("alice@example.com".parse().unwrap()),
                    display_name: Some("Alice Example".into()),
                    role: Role::User,
                    status: UserStatus::Active,
                    password_hash: None,
                },
                Timestamp(0),
            )
            .await
            .unwrap();
        let policy = SessionPolicy {
            idle: Duration::from_secs(86_400),
            absolute: Duration::from_secs(7 * 86_400),
        };
        let keys = KeyRing::new(store.clone(), Arc::new(SystemClock));
        // Assertions are on by default, so the measured path signs (and reuses) one.
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let grants = GrantRing::new(store.clone(), Arc::new(SystemClock), sealer.clone());
        let access_token = grant(&store, &grants, &user.id).await;
        let assertions = Assertions::load(
            store.clone(),
            Arc::new(sealer),
            Arc::new(SystemClock),
            "https://auth.example.com".into(),
            std::time::Duration::from_secs(300),
        )
        .await
        .unwrap();
        let sessions = SessionManager::new(store, Arc::new(SystemClock), policy);
        let (token, _) = sessions.create(&user, SessionOrigin::default()).await.unwrap();
        let config: portcullis_core::config::Config = toml::from_str(
            "public_url = 'https://chat.example.com'\n\
             [[apps]]\nname = 'chat'\nupstream = 'http://127.0.0.1:8080'\n\
             identity_headers = { profile = 'openwebui', role_header = 'X-Forwarded-Role' }\n\
             access = { email_domains = ['example.com'] }\n\
             [[apps]]\nname = 'api'\npath_prefix = '/api/v2'\nupstream = 'http://127.0.0.1:8081'\n\
             [[apps]]\nname = 'tools'\npath_prefix = '/mcp'\nkind = 'mcp'\nupstream = 'http://127.0.0.1:8082'\n",
        )
        .unwrap();
        let table = RouteTable::build(&config.compile().unwrap().routes, None);
        let request = Request::get("/c/6a8e2f41?model=llama")
            .header("host", "chat.example.com")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
            .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
            .header("accept-language", "en-GB,en;q=0.9")
            .header("accept-encoding", "gzip, deflate, br")
            .header("cookie", format!("theme=dark; _portcullis={token}; token=eyJhbGciOiJIUzI1NiJ9.e30.x"))
            .header("x-forwarded-user", "spoof")
            .body(())
            .unwrap();
        let mcp_request = Request::post("/mcp")
            .header("host", "chat.example.com")
            .header("user-agent", "claude-code/2.0.0")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", "0f9c2d8e4b7a4e1f")
            .header("authorization", format!("Bearer {access_token}"))
            .body(())
            .unwrap();
        Fixture {
            table,
            auth: Authenticator {
                sessions: Arc::new(sessions),
                keys: Arc::new(keys),
                grants: Arc::new(grants),
                external: None,
            },
            assertions,
            trusted: TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]),
            request,
            mcp_request,
        }
    })
}

/// A grant of `user_id` to the MCP app at `https://chat.example.com/mcp`, loaded into `grants`;
/// an access token of it.
async fn grant(store: &Arc<dyn Store>, grants: &GrantRing, user_id: &str) -> String {
    let resource = "https://chat.example.com/mcp".to_owned();
    let code = AuthCode {
        code_hash: "code".into(),
        user_id: user_id.into(),
        client_id: "pcc_client".into(),
        client_name: "Claude Code".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        code_challenge: "challenge".into(),
        app: "tools".into(),
        resource: resource.clone(),
        scopes: vec!["mcp".into()],
        expires_at: Timestamp(i64::MAX / 2),
    };
    store.insert_code(&code).await.unwrap();
    let grant = Grant {
        id: "g1".into(),
        user_id: user_id.into(),
        client_id: code.client_id.clone(),
        client_name: code.client_name.clone(),
        app: "tools".into(),
        resource,
        scopes: vec!["mcp".into()],
        created_at: Timestamp(0),
        // Just used: the measured checks find nothing to write back (that runs off the
        // request path, on a runtime the benchmark does not have).
        last_used_at: Some(SystemClock.now()),
        expires_at: Timestamp(i64::MAX / 2),
    };
    store
        .redeem_code("code", &grant, "refresh", Timestamp(0))
        .await
        .unwrap();
    grants.reload().await.unwrap();
    grants.access_token("g1", Duration::from_secs(3600)).0
}

fn main() {
    divan::main();
}

#[divan::bench]
fn authenticated_check(bencher: divan::Bencher) {
    let f = fixture();
    let peer: SocketAddr = "192.0.2.10:51000".parse().unwrap();
    bencher
        .with_inputs(|| {
            let mut request = Request::new(Body::empty());
            *request.uri_mut() = f.request.uri().clone();
            *request.headers_mut() = f.request.headers().clone();
            request
        })
        .bench_local_values(|mut request| {
            let mut ctx = RequestContext::new(&request, peer, &f.trusted).unwrap();
            phases::route(&f.table, &mut ctx).unwrap();
            // Cache hits never wait: the future completes on its first poll.
            phases::authenticate(&f.auth, &mut ctx, request.headers())
                .now_or_never()
                .expect("a cached session resolves without waiting")
                .unwrap();
            phases::authorize(&ctx).unwrap();
            phases::rewrite(&ctx, Some(&f.assertions), request.headers_mut());
            request
        });
}

#[divan::bench]
fn mcp_token_check(bencher: divan::Bencher) {
    let f = fixture();
    let peer: SocketAddr = "192.0.2.10:51000".parse().unwrap();
    bencher
        .with_inputs(|| {
            let mut request = Request::new(Body::empty());
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = f.mcp_request.uri().clone();
            *request.headers_mut() = f.mcp_request.headers().clone();
            request
        })
        .bench_local_values(|mut request| {
            let mut ctx = RequestContext::new(&request, peer, &f.trusted).unwrap();
            phases::route(&f.table, &mut ctx).unwrap();
            phases::authenticate(&f.auth, &mut ctx, request.headers())
                .now_or_never()
                .expect("a loaded grant resolves without waiting")
                .unwrap();
            phases::authorize(&ctx).unwrap();
            phases::rewrite(&ctx, Some(&f.assertions), request.headers_mut());
            request
        });
}
