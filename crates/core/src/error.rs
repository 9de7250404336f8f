//! The error taxonomy. Every layer reports failures as a [`Failure`]; the edge maps the
//! [`FailureKind`] to a status code in exactly one place (`portcullis_http::respond`).

use std::fmt;

/// Who failed and what the caller can do about it. The kind decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The client sent something malformed (400).
    BadRequest,
    /// No valid session or credentials (401, or a redirect to sign in for browsers).
    Unauthenticated,
    /// Signed in, but a policy does not allow this (403).
    Forbidden,
    /// No app or page matches (404).
    NotFound,
    /// The request collides with what exists (a username already taken) (409).
    Conflict,
    /// Too many attempts; retry later (429).
    RateLimited,
    /// The upstream could not be reached or broke the connection (502).
    UpstreamUnavailable,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The store is unreachable (503).
    StoreUnavailable,
    /// Too much work of this kind is waiting (password hashing under attack); retry shortly (503).
    Busy,
    /// A bug or an unexpected state on our side (500).
    Internal,
}

/// A failure with a message for the person who hit it and a hint at what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(FailureKind::BadRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }

    /// A stable machine-readable code for JSON bodies.
    pub fn code(&self) -> &'static str {
        match self.kind {
            FailureKind::BadRequest => "bad_request",
            FailureKind::Unauthenticated => "unauthenticated",
            FailureKind::Forbidden => "forbidden",
            FailureKind::NotFound => "not_found",
            FailureKind::Conflict => "conflict",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::UpstreamUnavailable => "upstream_unavailable",
            FailureKind::UpstreamTimeout => "upstream_timeout",
            FailureKind::StoreUnavailable => "store_unavailable",
            FailureKind::Busy => "busy",
            FailureKind::Internal => "internal",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// An error and every cause under it, on one line (`outer: inner: innermost`): what a log line
/// or a report needs when a library's own message leaves out why.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(with_causes(&e), "outer: connection refused");
    }
}
