//! A live session as the hot path sees it: immutable facts and the identity it resolves to,
//! plus the state every copy of it shares (activity, provider tokens, stream guard).
//!
//! When its user changes, the cache swaps in a copy with the new identity ([`ActiveSession::
//! with_identity`]) instead of dropping the session: the next request needs no store read, so a
//! database outage right after a change cannot lock the user out.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use portcullis_core::session::{AMR_MFA, Session, SessionPolicy};
use portcullis_core::user::User;
use portcullis_core::{Identity, Timestamp};

use crate::guards::StreamGuard;
use crate::secret::token_hash;

#[derive(Debug)]
pub struct ActiveSession {
    pub id_hash: String,
    /// A public name for the session (the `sid` of assertions): derived from the id hash, from
    /// which neither the cookie nor the id hash can be recovered.
    pub sid: String,
    pub user_id: String,
    pub identity: Arc<Identity>,
    pub created_at: Timestamp,
    /// How the sign-in was proved (RFC 8176 values).
    pub amr: Arc<[String]>,
    pub(super) shared: Arc<Shared>,
}

/// What every copy of one session shares, whichever identity it carries.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) last_seen: AtomicI64,
    pub(super) last_persisted: AtomicI64,
    /// Provider-backed sessions keep their refresh state here (see `Refresher`).
    pub(super) provider: Option<ProviderTokens>,
    /// This session's stream guard, once looked up (saves the shared registry on later
    /// requests, and keeps the guard alive while the session is cached).
    pub(super) guard: OnceLock<StreamGuard>,
}

/// The refresh state of a provider-backed session.
#[derive(Debug)]
pub(super) struct ProviderTokens {
    pub(super) provider: String,
    pub(super) subject: Option<String>,
    pub(super) refresh_token_enc: tokio::sync::Mutex<Option<String>>,
    /// Unix seconds; 0 when the provider gave no expiry.
    pub(super) access_expires_at: AtomicI64,
    /// No refresh is attempted before this (back-off after a provider outage).
    pub(super) not_before: AtomicI64,
    pub(super) refreshing: AtomicBool,
}

impl ActiveSession {
    pub(super) fn new(session: &Session, user: &User) -> Self {
        let provider = session
            .provider
            .as_ref()
            .filter(|p| p.refresh_token_enc.is_some())
            .map(|p| ProviderTokens {
                provider: p.provider.clone(),
                subject: p.subject.clone(),
                refresh_token_enc: tokio::sync::Mutex::new(p.refresh_token_enc.clone()),
                access_expires_at: AtomicI64::new(p.access_expires_at.map(|t| t.0).unwrap_or(0)),
                not_before: AtomicI64::new(0),
                refreshing: AtomicBool::new(false),
            });
        ActiveSession {
            sid: token_hash(&format!("sid:{}", session.id_hash)),
            id_hash: session.id_hash.clone(),
            user_id: session.user_id.clone(),
            identity: Arc::new(user.identity()),
            created_at: session.created_at,
            amr: session.amr.clone().into(),
            shared: Arc::new(Shared {
                last_seen: AtomicI64::new(session.last_seen.0),
                last_persisted: AtomicI64::new(session.last_seen.0),
                provider,
                guard: OnceLock::new(),
            }),
        }
    }

    /// This session with its user's current identity; activity, tokens and guard stay shared.
    pub(super) fn with_identity(&self, identity: Arc<Identity>) -> Self {
        ActiveSession {
            id_hash: self.id_hash.clone(),
            sid: self.sid.clone(),
            user_id: self.user_id.clone(),
            identity,
            created_at: self.created_at,
            amr: self.amr.clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn last_seen(&self) -> Timestamp {
        Timestamp(self.shared.last_seen.load(Ordering::Relaxed))
    }

    pub(super) fn snapshot(&self) -> Session {
        Session {
            id_hash: self.id_hash.clone(),
            user_id: self.user_id.clone(),
            created_at: self.created_at,
            last_seen: self.last_seen(),
            client_ip: None,
            user_agent: None,
            provider: None,
            amr: Vec::new(),
        }
    }

    /// Whether the sign-in was proved with more than one factor, which `require_mfa` asks.
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|m| m == AMR_MFA)
    }

    pub fn expires_at(&self, policy: &SessionPolicy) -> Timestamp {
        self.snapshot().expires_at(policy)
    }
}
