//! Where events go. A sink receives the user's current state with every event, so delivering
//! twice, or several events at once, converges on the same result.

use portcullis_core::user::User;

/// One delivery: what happened, to whom, and the key that makes a retry recognisable.
#[derive(Clone, Debug)]
pub struct Event {
    /// `<sink>-<seq>`: the same on every retry of this delivery.
    pub idempotency_key: String,
    pub kind: String,
    pub user_id: String,
    /// The user as they are now; `None` once deleted.
    pub user: Option<User>,
    /// When the change happened (Unix seconds).
    pub at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again later (the app is down, 5xx, timeout, 429).
    #[error("{0}")]
    Retry(String),
    /// Trying again cannot help (the app refuses the request as such): a dead letter at once.
    #[error("{0}")]
    Permanent(String),
}

#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    fn id(&self) -> &str;
    async fn deliver(&self, event: &Event) -> Result<(), SinkError>;
}

/// Classifies an HTTP answer: 2xx delivered, 408/429/5xx retried, other 4xx permanent.
pub fn classify(status: reqwest::StatusCode, body: &str) -> Result<(), SinkError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{status}: {}", body.chars().take(300).collect::<String>());
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(SinkError::Retry(message))
    } else {
        Err(SinkError::Permanent(message))
    }
}

/// A transport failure (connection refused, timeout) is always worth retrying.
pub fn unreachable(e: reqwest::Error) -> SinkError {
    SinkError::Retry(format!("unreachable: {e}"))
}
