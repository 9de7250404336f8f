use portcullis_core::{Failure, FailureKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. a username already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or refused to work; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A row holds a value this version cannot read.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Failure::new(FailureKind::BadRequest, m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                Failure::new(
                    FailureKind::StoreUnavailable,
                    "the directory is unavailable",
                )
                .with_hint("retry in a moment; the operator's logs have the cause")
            }
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "stored data is not valid");
                Failure::internal("stored data could not be read")
            }
        }
    }
}
