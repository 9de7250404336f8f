//! An in-process OpenID provider for failure injection: it answers discovery and JWKS honestly
//! but returns whatever token response the test sets, so tests can hand Portcullis forged,
//! expired, mis-addressed or garbage ID tokens. (The happy paths use the real provider.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// A P-256 key made for these tests only (PKCS#8), and its public coordinates.
pub const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgdlXDD0PX0Wph51Nd
UQB6ft5jbDpwQ/Tg/prNi1uFCLKhRANCAAQo6NFY4vNBJgapNLcjsa+fbH+AEWkT
6Towd9ZNUdglv9tZ3d7SWL/lR6/f9OmNIjXM2aPdNc8eTUtq5SMkRx+b
-----END PRIVATE KEY-----
";
const TEST_KEY_X: &str = "KOjRWOLzQSYGqTS3I7Gvn2x_gBFpE-k6MHfWTVHYJb8";
const TEST_KEY_Y: &str = "21nd3tJYv-VHr9_06Y0iNczZo901zx5NS2rlIyRHH5s";
pub const KID: &str = "test-key-1";
pub const CLIENT_ID: &str = "fake-client";
pub const CLIENT_SECRET: &str = "fake-secret";

#[derive(Default)]
struct Shared {
    issuer: String,
    token_body: Mutex<Option<(u16, String)>>,
    jwks_fetches: AtomicUsize,
}

pub struct FakeIdp {
    pub issuer: String,
    shared: Arc<Shared>,
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({
        "issuer": s.issuer,
        "authorization_endpoint": format!("{}/auth", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "jwks_uri": format!("{}/jwks", s.issuer),
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": TEST_KEY_X, "y": TEST_KEY_Y, "kid": KID, "use": "sig", "alg": "ES256"}]}))
        .into_response()
}

async fn token(State(s): State<Arc<Shared>>) -> Response {
    match s.token_body.lock().await.clone() {
        Some((status, body)) => {
            let status = http::StatusCode::from_u16(status).unwrap();
            (status, [("content-type", "application/json")], body).into_response()
        }
        None => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no token response set",
        )
            .into_response(),
    }
}

impl FakeIdp {
    pub async fn start() -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeIdp { issuer, shared }
    }

    pub fn provider_toml(&self) -> String {
        format!(
            "[[providers]]\nid = 'fake'\nissuer = '{}'\nclient_id = '{CLIENT_ID}'\nclient_secret = '{CLIENT_SECRET}'\n",
            self.issuer
        )
    }

    /// The next token endpoint answer: an HTTP status and a raw body.
    pub async fn answer(&self, status: u16, body: String) {
        *self.shared.token_body.lock().await = Some((status, body));
    }

    /// Answer with this ID token (and an access token).
    pub async fn answer_id_token(&self, id_token: &str) {
        self.answer(
            200,
            json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}).to_string(),
        )
        .await;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Claims a correct ID token would carry for `nonce`.
    pub fn good_claims(&self, nonce: &str) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({
            "iss": self.issuer, "aud": CLIENT_ID, "sub": "user-1", "nonce": nonce,
            "iat": now, "exp": now + 300, "email": "user1@example.com", "email_verified": true, "name": "User One"
        })
    }

    /// Signs claims with the test key under `kid` (ES256).
    pub fn sign(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_ec_pem(TEST_KEY.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// An HS256 token keyed with the client secret: valid-looking, but HMAC is never accepted.
    pub fn sign_hs256(&self, claims: &Value) -> String {
        let key = EncodingKey::from_secret(CLIENT_SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    /// An unsigned token (`alg: none`).
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": KID}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.")
    }

    /// A correctly signed token whose payload was then changed.
    pub fn tampered(&self, claims: &Value) -> String {
        let signed = self.sign(claims, KID);
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        let mut changed = claims.clone();
        changed["email"] = json!("admin@example.com");
        parts[1] = URL_SAFE_NO_PAD.encode(changed.to_string());
        parts.join(".")
    }
}
