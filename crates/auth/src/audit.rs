//! The audit trail: every auth decision that changes state is written to the store.

use std::sync::Arc;

use portcullis_core::Clock;
use portcullis_store::{AuditEvent, Store};

#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// Who made a change, and from where: recorded with every entry they cause.
#[derive(Clone, Debug)]
pub struct Actor {
    /// A user id, `cli`, `setup-link`, or `provider:<id>`; key-authenticated calls add the key.
    pub id: String,
    /// The client address as resolved from the socket peer and trusted proxies; `None` for the
    /// operator CLI, which runs on the host itself.
    pub client_ip: Option<String>,
    /// The actor proved a second factor (a session that did, or the operator on the host):
    /// what creating a key for a `require_mfa` app takes.
    pub second_factor: bool,
}

impl Actor {
    pub fn new(id: impl Into<String>, client_ip: Option<String>) -> Self {
        Actor {
            id: id.into(),
            client_ip,
            second_factor: false,
        }
    }

    pub fn with_second_factor(mut self, proved: bool) -> Self {
        self.second_factor = proved;
        self
    }
}

/// One thing that happened, before it is stamped with the time.
pub struct Entry<'a> {
    pub action: &'a str,
    pub success: bool,
    pub actor: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub client_ip: Option<String>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Audit { store, clock }
    }

    /// Records an entry. A failed write is logged loudly but does not fail the user's request:
    /// the decision has already been made and the structured log keeps a copy.
    pub async fn record(&self, entry: Entry<'_>) {
        let event = AuditEvent {
            at: self.clock.now(),
            action: entry.action.to_owned(),
            outcome: if entry.success { "success" } else { "failure" }.to_owned(),
            actor: entry.actor.map(str::to_owned),
            subject: entry.subject.map(str::to_owned),
            reason: entry.reason.map(str::to_owned),
            client_ip: entry.client_ip,
        };
        tracing::info!(
            target: "portcullis::audit",
            action = %event.action,
            outcome = %event.outcome,
            actor = event.actor.as_deref().unwrap_or("-"),
            subject = event.subject.as_deref().unwrap_or("-"),
            reason = event.reason.as_deref().unwrap_or("-"),
            client = event.client_ip.as_deref().unwrap_or("-"),
        );
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, action = %event.action, "could not write the audit trail");
        }
    }
}
