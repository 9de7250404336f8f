//! From rows to the store's types (one function per table).

use portcullis_core::session::{ProviderSession, Session};
use portcullis_core::user::{User, UserStatus};
use portcullis_core::{Email, Role, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{AuthFlow, Delivery, LinkedIdentity, StoreError, StoredKey};

pub(super) fn user_from_row(row: &AnyRow) -> Result<(User, Option<String>), StoreError> {
    let role: String = row.try_get("role")?;
    let status: String = row.try_get("status")?;
    let groups: Option<String> = row.try_get("groups")?;
    let mut groups: Vec<String> = groups
        .map(|g| g.split('\n').map(str::to_owned).collect())
        .unwrap_or_default();
    groups.sort();
    let user = User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: stored_email(row.try_get("email")?),
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        groups,
        created_at: Timestamp(row.try_get("created_at")?),
        last_seen: row
            .try_get::<Option<i64>, _>("last_seen_at")?
            .map(Timestamp),
        has_password: false,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
    };
    let hash: Option<String> = row.try_get("password_hash")?;
    Ok((
        User {
            has_password: hash.is_some(),
            ..user
        },
        hash,
    ))
}

/// A stored address is valid unless it was written before addresses were checked; such a one
/// is not used (and says so) rather than handed to policies and headers.
fn stored_email(text: Option<String>) -> Option<Email> {
    Email::parse_optional(text.as_deref()).unwrap_or_else(|why| {
        tracing::warn!(%why, "a stored email address is not valid; it is ignored until it is changed");
        None
    })
}

pub(super) fn identity_from_row(row: &AnyRow) -> Result<LinkedIdentity, StoreError> {
    Ok(LinkedIdentity {
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        email: stored_email(row.try_get("email")?),
    })
}

pub(super) fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        seq: row.try_get("seq")?,
        sink: row.try_get("sink")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        created_at: Timestamp(row.try_get("created_at")?),
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
    })
}

pub(super) fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    Ok(Session {
        id_hash: row.try_get("id_hash")?,
        user_id: row.try_get("user_id")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_seen: Timestamp(row.try_get("last_seen")?),
        client_ip: row.try_get("client_ip")?,
        user_agent: row.try_get("user_agent")?,
        provider: match row.try_get::<Option<String>, _>("provider")? {
            Some(provider) => Some(ProviderSession {
                provider,
                subject: row.try_get("provider_subject")?,
                sid: row.try_get("provider_sid")?,
                id_token_enc: row.try_get("id_token_enc")?,
                refresh_token_enc: row.try_get("refresh_token_enc")?,
                access_expires_at: row
                    .try_get::<Option<i64>, _>("access_expires_at")?
                    .map(Timestamp),
                // Written by us as JSON; anything unreadable only loses the whoami detail.
                claim_sources: row
                    .try_get::<Option<String>, _>("claim_sources")?
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
            }),
            None => None,
        },
        amr: row
            .try_get::<Option<String>, _>("amr")?
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    })
}

pub(super) fn key_from_row(row: &AnyRow) -> Result<StoredKey, StoreError> {
    let apps: String = row.try_get("allowed_apps")?;
    Ok(StoredKey {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        name: row.try_get("name")?,
        owner_id: row.try_get("owner_id")?,
        allowed_apps: apps
            .lines()
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

pub(super) fn flow_from_row(row: &AnyRow) -> Result<AuthFlow, StoreError> {
    Ok(AuthFlow {
        state_hash: row.try_get("state_hash")?,
        provider: row.try_get("provider")?,
        binding_hash: row.try_get("binding_hash")?,
        nonce: row.try_get("nonce")?,
        verifier: row.try_get("verifier")?,
        return_to: row.try_get("return_to")?,
        created_at: Timestamp(row.try_get("created_at")?),
        completed_at: row
            .try_get::<Option<i64>, _>("completed_at")?
            .map(Timestamp),
    })
}
