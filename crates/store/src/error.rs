use portcullis_core::{Failure, FailureKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the data refused the write (a username already taken, …).
    #[error("{0}")]
    Conflict(Conflict),
    /// The database could not be reached or refused to work; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A row holds a value this version cannot read.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// What a refused write collided with. Classified once, here, from the database's own
/// constraint names, so no caller ever reads an error message to tell them apart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("that username is already taken")]
    Username,
    #[error("that email address is already taken")]
    Email,
    #[error("an admin already exists")]
    AdminExists,
    /// The store is not in the state the operation needs (e.g. `copy-store` into a non-empty
    /// database); the text says what to do.
    #[error("{0}")]
    State(String),
    /// Another uniqueness rule (a group or key that exists already).
    #[error("{0}")]
    Other(String),
}

impl Conflict {
    /// Which unique column a database error names: SQLite says `users.username`, PostgreSQL
    /// names the constraint (`users_username_key`).
    fn of(db: &dyn sqlx::error::DatabaseError) -> Conflict {
        let names = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
        if names.contains("users.username") || names.contains("users_username") {
            Conflict::Username
        } else if names.contains("users.email") || names.contains("users_email") {
            Conflict::Email
        } else {
            Conflict::Other(db.message().to_owned())
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(Conflict::of(db.as_ref()))
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
            StoreError::Conflict(Conflict::State(m)) => Failure::bad_request(m),
            StoreError::Conflict(conflict) => {
                Failure::new(FailureKind::Conflict, conflict.to_string())
                    .with_hint("choose another, or change the one that has it")
            }
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
