//! One credential matrix against every surface: each kind of credential a request can present
//! (sessions valid, expired and ended; API keys scoped, unscoped, for the API, of a disabled
//! user; another issuer's bearer token, a configured issuer's, an identity from a proxy in
//! front; nothing) is tried on the built-in proxy, the three forward-auth endpoints, the REST
//! API, the admin and account pages, whoami, oauth2-proxy's userinfo, SCIM and an MCP app, and
//! the decision must be the one docs/architecture.md's table documents for that surface. All are
//! decided by one authenticator (`portcullis_auth::principal`); this test keeps them agreeing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use common::fake_idp::{FakeIdp, KID};
use portcullis_auth::audit::Actor;
use portcullis_core::{Clock, ManualClock, Role, Timestamp};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE};
use serde_json::json;

const SCIM_TOKEN: &str = "scim-token-0123456789abcdefghijklmnopqrstuv";

/// What a surface decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Served (2xx).
    Allowed,
    /// Not authenticated: 401, or a redirect to sign in.
    SignIn,
    /// Authenticated, but this credential may not be used here (403).
    Forbidden,
}
use Decision::*;

/// The surfaces, grouped by the row of the table in docs/architecture.md that governs them.
#[derive(Clone, Copy, Debug)]
enum Surface {
    Proxy,
    AuthRequest,
    ForwardAuth,
    OAuth2Auth,
    Api,
    AdminPage,
    AccountPage,
    Whoami,
    Userinfo,
    Scim,
    Mcp,
}

const SURFACES: [Surface; 11] = [
    Surface::Proxy,
    Surface::AuthRequest,
    Surface::ForwardAuth,
    Surface::OAuth2Auth,
    Surface::Api,
    Surface::AdminPage,
    Surface::AccountPage,
    Surface::Whoami,
    Surface::Userinfo,
    Surface::Scim,
    Surface::Mcp,
];

/// The documented policy: (app row, API row, pages row, SCIM row; the MCP row admits only keys
/// for its app, which of these credentials only the unscoped key is).
struct Expect {
    app: Decision,
    api: Decision,
    pages: Decision,
}

impl Expect {
    fn for_surface(&self, surface: Surface) -> Decision {
        match surface {
            Surface::Proxy | Surface::AuthRequest | Surface::ForwardAuth | Surface::OAuth2Auth => {
                self.app
            }
            Surface::Api => self.api,
            Surface::AdminPage | Surface::AccountPage | Surface::Whoami | Surface::Userinfo => {
                self.pages
            }
            // SCIM takes its own bearer token and nothing else.
            Surface::Scim => SignIn,
            // An MCP app takes keys for it (here: the unscoped one); everything else is the
            // bearer challenge (401).
            Surface::Mcp => unreachable!("decided by the row's name, see for_row"),
        }
    }
}

/// What `surface` must decide for the row `name`.
fn for_row(name: &str, expect: &Expect, surface: Surface) -> Decision {
    match surface {
        Surface::Mcp if name == "unscoped key" => Allowed,
        Surface::Mcp => SignIn,
        other => expect.for_surface(other),
    }
}

/// A credential's name, the headers that present it, and what every surface must decide.
type Row = (&'static str, Vec<(&'static str, String)>, Expect);

fn decision(status: StatusCode) -> Decision {
    match status.as_u16() {
        200..=299 => Allowed,
        401 | 302 | 303 => SignIn,
        403 => Forbidden,
        other => panic!("unexpected status {other}"),
    }
}

async fn ask(h: &Harness, surface: Surface, credential: &[(&'static str, String)]) -> Decision {
    let request = match surface {
        Surface::Proxy => h.http.get(h.url("/models")),
        Surface::AuthRequest => h
            .http
            .get(h.url("/.portcullis/authz/auth-request?app=chat"))
            .header("x-original-url", format!("{}/models", h.base))
            .header("x-original-method", "GET"),
        Surface::ForwardAuth => h
            .http
            .get(h.url("/.portcullis/authz/forward-auth?app=chat"))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", h.base.trim_start_matches("http://"))
            .header("x-forwarded-uri", "/models"),
        Surface::OAuth2Auth => h
            .http
            .get(h.url("/oauth2/auth?app=chat"))
            .header("x-forwarded-uri", "/models"),
        Surface::Api => h.http.get(h.url("/.portcullis/api/v1/me")),
        Surface::AdminPage => h.http.get(h.url("/.portcullis/admin/users")),
        Surface::AccountPage => h.http.get(h.url("/.portcullis/account")),
        Surface::Whoami => h.http.get(h.url("/.portcullis/whoami")),
        Surface::Userinfo => h.http.get(h.url("/oauth2/userinfo")),
        Surface::Scim => h.http.get(h.url("/.portcullis/scim/v2/Users")),
        Surface::Mcp => h.http.get(h.url("/mcp")),
    };
    let mut request = request.header(ACCEPT, "application/json");
    for (name, value) in credential {
        request = request.header(*name, value);
    }
    decision(request.send().await.unwrap().status())
}

#[tokio::test]
async fn every_surface_decides_every_credential_as_documented() {
    let idp = FakeIdp::start().await;
    let clock = ManualClock::at(Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap(),
    ));
    let config = format!(
        "trusted_proxies = ['127.0.0.1/32']\n\
         [session]\nidle_timeout = '1h'\n\
         [scim]\ntoken = '{SCIM_TOKEN}'\n\
         [[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\naccess = {{ groups = ['staff'] }}\n\
         [[apps]]\nname = 'tools'\npath_prefix = '/mcp'\nkind = 'mcp'\nupstream = '{{upstream}}'\naccess = {{ groups = ['staff'] }}\n\
         [[trusted_identity]]\nid = 'front'\nkind = 'header'\nfrom = ['127.0.0.1/32']\n\
         user_header = 'X-Front-User'\nemail_header = 'X-Front-Email'\n\
         [[bearer_tokens]]\nid = 'corp'\nissuer = '{issuer}'\naudiences = ['corp-client']\njwks_url = '{issuer}/jwks'\n",
        issuer = idp.issuer
    );
    let h = Harness::start_with_clock(&config, Arc::new(clock.clone())).await;
    h.setup_admin().await;
    // ada is an admin in `staff`: every surface would let her in, so each decision below is
    // about the credential alone.
    h.add_user(
        "ada",
        Some("ada@example.com"),
        Some("Ada"),
        Role::Admin,
        &["staff"],
    )
    .await;
    h.add_user(
        "dora",
        Some("dora@example.com"),
        None,
        Role::Admin,
        &["staff"],
    )
    .await;
    let state = &h.running.state;
    let actor = Actor::new("test", None);
    let key = |owner: &'static str, apps: Vec<&str>| {
        let directory = state.directory.clone();
        let apps: Vec<String> = apps.into_iter().map(str::to_owned).collect();
        let actor = actor.clone();
        async move {
            directory
                .create_key(owner, "matrix", apps, None, &actor)
                .await
                .unwrap()
                .secret
        }
    };
    let expired = h.sign_in("ada", "user-password-1").await.unwrap();
    clock.advance(Duration::from_secs(2 * 3600));
    let valid = h.sign_in("ada", "user-password-1").await.unwrap();
    let ended = h.sign_in("ada", "user-password-1").await.unwrap();
    state.sessions.revoke(&ended).await.unwrap();
    let for_chat = key("ada", vec!["chat"]).await;
    let unscoped = key("ada", vec![]).await;
    let for_api = key("ada", vec!["portcullis-api"]).await;
    let of_disabled = key("dora", vec!["chat", "portcullis-api"]).await;
    state
        .directory
        .set_status("dora", portcullis_core::user::UserStatus::Disabled, &actor)
        .await
        .unwrap();
    state.apply_user_change(&common::uuid_like("dora")).await;
    let now = clock.now().0;
    let corp_token = idp.sign(
        &json!({"iss": idp.issuer, "aud": "corp-client", "sub": "corp-cyd", "email": "cyd@example.com",
                "email_verified": true, "exp": now + 600, "iat": now}),
        KID,
    );
    let foreign = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2FwcC5leGFtcGxlIn0.c2ln";

    let cookie = |v: &str| vec![(COOKIE.as_str(), format!("_portcullis={v}"))];
    let bearer = |v: &str| vec![(AUTHORIZATION.as_str(), format!("Bearer {v}"))];
    let rows: Vec<Row> = vec![
        (
            "valid session",
            cookie(&valid),
            Expect {
                app: Allowed,
                api: Allowed,
                pages: Allowed,
            },
        ),
        (
            "expired session",
            cookie(&expired),
            Expect {
                app: SignIn,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "ended session",
            cookie(&ended),
            Expect {
                app: SignIn,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "key for chat",
            bearer(&for_chat),
            Expect {
                app: Allowed,
                api: Forbidden,
                pages: SignIn,
            },
        ),
        (
            "unscoped key",
            bearer(&unscoped),
            Expect {
                app: Allowed,
                api: Forbidden,
                pages: SignIn,
            },
        ),
        (
            "key for the API, in X-API-Key",
            vec![("x-api-key", for_api.clone())],
            Expect {
                app: Forbidden,
                api: Allowed,
                pages: SignIn,
            },
        ),
        (
            "key of a disabled user",
            bearer(&of_disabled),
            Expect {
                app: SignIn,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "another app's bearer token",
            bearer(foreign),
            Expect {
                app: SignIn,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "a configured issuer's token",
            bearer(&corp_token),
            Expect {
                app: Allowed,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "identity from the proxy in front",
            vec![
                ("x-front-user", "finn".to_owned()),
                ("x-front-email", "finn@example.com".to_owned()),
            ],
            Expect {
                app: Allowed,
                api: SignIn,
                pages: SignIn,
            },
        ),
        (
            "nothing",
            vec![],
            Expect {
                app: SignIn,
                api: SignIn,
                pages: SignIn,
            },
        ),
    ];

    // The configured issuer's and the front's identities are their own users: admit them to
    // staff (after a first request creates them) so the app's policy is not what is tested.
    for credential in [bearer(&corp_token), rows[9].1.clone()] {
        ask(&h, Surface::Proxy, &credential).await;
    }
    for user in state.directory.find_users(None, 0, 100).await.unwrap().0 {
        if !user.groups.iter().any(|g| g == "staff") && user.username != "admin" {
            state
                .directory
                .add_to_group(&user.username, "staff", &actor)
                .await
                .unwrap();
            state.apply_user_change(&user.id).await;
        }
    }

    let mut wrong = Vec::new();
    for (name, credential, expect) in &rows {
        for surface in SURFACES {
            let got = ask(&h, surface, credential).await;
            let want = for_row(name, expect, surface);
            if got != want {
                wrong.push(format!(
                    "{name} on {surface:?}: {got:?}, documented {want:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "decisions that disagree with the documented policy:\n{}",
        wrong.join("\n")
    );

    // SCIM's own token works (so its refusals above are about the credential).
    let scim = h
        .http
        .get(h.url("/.portcullis/scim/v2/Users"))
        .header(AUTHORIZATION, format!("Bearer {SCIM_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(scim.status(), StatusCode::OK);
    h.running.shutdown().await;
}
