//! Second factors: authenticator apps (TOTP) and the recovery codes that stand in for them.
//!
//! A factor is enrolled in two steps: [`SecondFactors::begin_totp`] makes a secret and hands
//! it out sealed (nothing is stored yet), [`SecondFactors::confirm_totp`] stores it once the
//! user proves their app has it by typing a code. Codes are checked by [`SecondFactors::verify`],
//! throttled per account and address like passwords, and each works once (the store advances
//! the factor's last accepted step in the statement that checks it, so two replicas cannot both
//! accept one code). Every change is audited.

mod passkeys;
mod recovery;
pub mod totp;
pub mod webauthn;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::user::User;
use portcullis_core::{Clock, Failure, FailureKind, Timestamp};
use portcullis_store::{Factor, FactorKind, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Audit, Entry};
use crate::seal::Sealer;
use crate::throttle::{AttemptKeys, LoginThrottle};
pub use passkeys::PasskeyCeremony;
pub use recovery::COUNT as RECOVERY_CODES;
use totp::TotpSecret;

/// How long an enrolment may take between showing the QR code and typing the first code.
const ENROLMENT_LIFETIME: Duration = Duration::from_secs(1800);
/// Sealed values of other kinds are never mistaken for an enrolment.
const ENROLMENT_PURPOSE: &str = "totp-enrolment/v1";
/// More than this is a mistake, not a need.
const MAX_FACTORS: usize = 10;
const MAX_LABEL: usize = 64;

/// The RFC 8176 `amr` value of a Portcullis one-time code (app or recovery code).
pub const AMR_OTP: &str = "otp";
/// The RFC 8176 `amr` value of a passkey (proof of possession of a key).
pub const AMR_PASSKEY: &str = "hwk";

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// Not the code of any of the user's factors, nor an unused recovery code (or used already).
    #[error("That code is not right, or was used already. Try the next one your app shows.")]
    WrongCode,
    #[error("too many wrong codes; retry in {} s", retry_after.as_secs())]
    Throttled { retry_after: Duration },
    #[error("This setup expired or belongs to another account. Start again.")]
    EnrolmentExpired,
    #[error("{0}")]
    Invalid(String),
    #[error("no such factor")]
    NotFound,
    /// The passkey's answer did not verify (the reason is for the log and the audit trail).
    #[error("That passkey did not work. Try again, or use another way to sign in.")]
    Passkey(webauthn::WebauthnError),
    /// Passkeys need Portcullis's public URL to be a host name (`public_url`).
    #[error(
        "Passkeys need public_url to name this site by a host name, such as https://auth.example.com."
    )]
    PasskeysUnavailable,
    /// A stored secret cannot be opened: the token key changed.
    #[error("a stored factor cannot be read with this token key")]
    Unreadable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one classification of factor failures, for pages and JSON alike.
impl From<FactorError> for Failure {
    fn from(e: FactorError) -> Self {
        match e {
            FactorError::WrongCode => Failure::new(FailureKind::Unauthenticated, e.to_string()),
            FactorError::Throttled { retry_after } => Failure::new(
                FailureKind::RateLimited,
                format!(
                    "Too many wrong codes. Try again in {} seconds.",
                    retry_after.as_secs().max(1)
                ),
            ),
            FactorError::EnrolmentExpired | FactorError::Invalid(_) => {
                Failure::bad_request(e.to_string())
            }
            FactorError::Passkey(_) => Failure::new(FailureKind::Unauthenticated, e.to_string()),
            FactorError::PasskeysUnavailable => Failure::bad_request(e.to_string()),
            FactorError::NotFound => Failure::new(FailureKind::NotFound, "No such factor."),
            FactorError::Unreadable => Failure::internal(e.to_string()).with_hint(
                "token_key must be the key the factor was enrolled with; otherwise an admin resets the user's factors",
            ),
            FactorError::Store(s) => Failure::from(s),
        }
    }
}

/// An authenticator-app enrolment in progress: what the page shows, and the sealed value the
/// confirmation form sends back.
pub struct TotpEnrolment {
    /// The secret as typed into an app by hand.
    pub secret: String,
    /// The `otpauth://` link the QR code carries.
    pub uri: String,
    pub sealed: String,
}

#[derive(Serialize, Deserialize)]
struct SealedEnrolment {
    purpose: String,
    user_id: String,
    secret: String,
    expires_at: i64,
}

/// What proved the second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    App {
        label: String,
    },
    /// A passkey; `verified` when the authenticator verified the user (PIN, biometrics).
    Passkey {
        label: String,
        verified: bool,
    },
    /// A recovery code, with how many are left.
    RecoveryCode {
        left: u64,
    },
}

/// A user's factors as their pages show them.
pub struct FactorSummary {
    pub factors: Vec<Factor>,
    pub recovery_codes_left: u64,
}

pub struct SecondFactors {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: Sealer,
    audit: Audit,
    throttle: LoginThrottle,
    /// The name authenticator apps show above the account.
    issuer: String,
    /// Who passkeys are made for; `None` when `public_url` names no host.
    relying_party: Option<webauthn::RelyingParty>,
}

impl SecondFactors {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: Sealer,
        throttle: LoginThrottle,
        issuer: &str,
    ) -> Self {
        SecondFactors {
            audit: Audit::new(store.clone(), clock.clone()),
            store,
            clock,
            sealer,
            throttle,
            issuer: issuer.to_owned(),
            relying_party: None,
        }
    }

    /// Makes passkeys for the site at `public_url` (its host is the WebAuthn RP ID).
    pub fn with_passkeys_for(mut self, public_url: &str) -> Self {
        self.relying_party = webauthn::RelyingParty::of(public_url);
        self
    }

    fn relying_party(&self) -> Result<&webauthn::RelyingParty, FactorError> {
        self.relying_party
            .as_ref()
            .ok_or(FactorError::PasskeysUnavailable)
    }

    pub async fn summary(&self, user_id: &str) -> Result<FactorSummary, StoreError> {
        Ok(FactorSummary {
            factors: self.store.factors(user_id).await?,
            recovery_codes_left: self.store.recovery_codes_left(user_id).await?,
        })
    }

    /// Whether the user has a factor to be asked for.
    pub async fn has_factor(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(!self.store.factors(user_id).await?.is_empty())
    }

    /// A new secret for `user`'s authenticator app, not stored until confirmed.
    pub fn begin_totp(&self, user: &User) -> TotpEnrolment {
        let secret = TotpSecret::generate();
        let account = user
            .email
            .as_ref()
            .map_or(user.username.as_str(), |e| e.as_ref());
        let sealed = SealedEnrolment {
            purpose: ENROLMENT_PURPOSE.to_owned(),
            user_id: user.id.clone(),
            secret: secret.base32(),
            expires_at: self.clock.now().plus(ENROLMENT_LIFETIME).0,
        };
        TotpEnrolment {
            secret: secret.base32(),
            uri: secret.otpauth_uri(&self.issuer, account),
            // Serialising strings and an integer cannot fail.
            sealed: self
                .sealer
                .seal(&serde_json::to_string(&sealed).unwrap_or_default()),
        }
    }

    /// The enrolment in `sealed` again (to redisplay the page after a wrong code).
    pub fn reopen_totp(&self, user: &User, sealed: &str) -> Result<TotpEnrolment, FactorError> {
        let secret = self.open_enrolment(user, sealed)?;
        let account = user
            .email
            .as_ref()
            .map_or(user.username.as_str(), |e| e.as_ref());
        Ok(TotpEnrolment {
            secret: secret.base32(),
            uri: secret.otpauth_uri(&self.issuer, account),
            sealed: sealed.to_owned(),
        })
    }

    fn open_enrolment(&self, user: &User, sealed: &str) -> Result<TotpSecret, FactorError> {
        let plain = self
            .sealer
            .open(sealed)
            .map_err(|_| FactorError::EnrolmentExpired)?;
        let enrolment: SealedEnrolment =
            serde_json::from_str(&plain).map_err(|_| FactorError::EnrolmentExpired)?;
        if enrolment.purpose != ENROLMENT_PURPOSE
            || enrolment.user_id != user.id
            || self.clock.now().0 >= enrolment.expires_at
        {
            return Err(FactorError::EnrolmentExpired);
        }
        TotpSecret::from_base32(&enrolment.secret).ok_or(FactorError::EnrolmentExpired)
    }

    /// Stores the authenticator app of a [`Self::begin_totp`] once `code` shows the app has
    /// the secret. Returns the new recovery codes, to be shown once, when the user had none.
    pub async fn confirm_totp(
        &self,
        user: &User,
        sealed: &str,
        code: &str,
        label: &str,
        actor: &Actor,
    ) -> Result<Option<Vec<String>>, FactorError> {
        let label = valid_label(label)?;
        let secret = self.open_enrolment(user, sealed)?;
        if self.store.factors(&user.id).await?.len() >= MAX_FACTORS {
            return Err(FactorError::Invalid(format!(
                "An account can have at most {MAX_FACTORS} factors; remove one first."
            )));
        }
        let keys = self.attempt_keys(user, actor.client_ip.as_deref());
        self.throttle
            .check(&keys)
            .await
            .map_err(|refused| FactorError::Throttled {
                retry_after: refused.retry_after,
            })?;
        let now = self.clock.now();
        let Some(step) = secret.matching_step(code, now) else {
            self.throttle.record_failure(&keys).await;
            return Err(FactorError::WrongCode);
        };
        self.throttle.record_success(&keys).await;
        let factor = Factor {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            kind: FactorKind::Totp,
            label: label.clone(),
            secret_enc: self.sealer.seal(&secret.base32()),
            credential_id: None,
            last_step: 0,
            created_at: now,
            last_used_at: None,
        };
        self.store.insert_factor(&factor).await?;
        // The code that confirmed it is spent: it cannot sign in a moment later.
        self.store.use_totp_step(&factor.id, step, now).await?;
        self.record(
            "factor_added",
            actor,
            user,
            &format!("authenticator app {label:?}"),
        )
        .await;
        if self.store.recovery_codes_left(&user.id).await? > 0 {
            return Ok(None);
        }
        self.issue_recovery_codes(user, now).await.map(Some)
    }

    /// Checks a code from one of `user`'s apps, or one of their recovery codes; each works
    /// once. Throttled per account and address, like passwords.
    pub async fn verify(
        &self,
        user: &User,
        code: &str,
        client_ip: Option<&str>,
    ) -> Result<Proof, FactorError> {
        let keys = self.attempt_keys(user, client_ip);
        self.throttle
            .check(&keys)
            .await
            .map_err(|refused| FactorError::Throttled {
                retry_after: refused.retry_after,
            })?;
        match self.check_code(user, code, client_ip).await? {
            Some(proof) => {
                self.throttle.record_success(&keys).await;
                Ok(proof)
            }
            None => {
                self.throttle.record_failure(&keys).await;
                Err(FactorError::WrongCode)
            }
        }
    }

    async fn check_code(
        &self,
        user: &User,
        code: &str,
        client_ip: Option<&str>,
    ) -> Result<Option<Proof>, FactorError> {
        let now = self.clock.now();
        if let Some(normalized) = recovery::normalize(code) {
            if !self
                .store
                .use_recovery_code(&user.id, &recovery::hash(&normalized), now)
                .await?
            {
                return Ok(None);
            }
            let left = self.store.recovery_codes_left(&user.id).await?;
            let actor = Actor::new(user.id.clone(), client_ip.map(str::to_owned));
            self.record("recovery_code_used", &actor, user, &format!("{left} left"))
                .await;
            return Ok(Some(Proof::RecoveryCode { left }));
        }
        let apps = self.store.factors(&user.id).await?.into_iter();
        for factor in apps.filter(|f| f.kind == FactorKind::Totp) {
            let secret = self
                .sealer
                .open(&factor.secret_enc)
                .ok()
                .and_then(|text| TotpSecret::from_base32(&text))
                .ok_or(FactorError::Unreadable)?;
            if let Some(step) = secret.matching_step(code, now) {
                // A code seen before (or an older one than the last accepted) is refused.
                return Ok(self
                    .store
                    .use_totp_step(&factor.id, step, now)
                    .await?
                    .then_some(Proof::App {
                        label: factor.label,
                    }));
            }
        }
        Ok(None)
    }

    /// Removes one of `user`'s factors (the caller has just re-authenticated them). The last
    /// factor takes the recovery codes with it.
    pub async fn remove(
        &self,
        user: &User,
        factor_id: &str,
        actor: &Actor,
    ) -> Result<(), FactorError> {
        let factors = self.store.factors(&user.id).await?;
        let factor = factors
            .iter()
            .find(|f| f.id == factor_id)
            .ok_or(FactorError::NotFound)?;
        if !self.store.delete_factor(&user.id, factor_id).await? {
            return Err(FactorError::NotFound);
        }
        self.record(
            "factor_removed",
            actor,
            user,
            &format!("{:?}", factor.label),
        )
        .await;
        Ok(())
    }

    /// A new set of recovery codes in place of the old (which stop working), to be shown once.
    pub async fn new_recovery_codes(
        &self,
        user: &User,
        actor: &Actor,
    ) -> Result<Vec<String>, FactorError> {
        if !self.has_factor(&user.id).await? {
            return Err(FactorError::Invalid(
                "Recovery codes stand in for a factor: set one up first.".into(),
            ));
        }
        let codes = self.issue_recovery_codes(user, self.clock.now()).await?;
        self.record("recovery_codes_renewed", actor, user, "").await;
        Ok(codes)
    }

    async fn issue_recovery_codes(
        &self,
        user: &User,
        now: Timestamp,
    ) -> Result<Vec<String>, FactorError> {
        let codes = recovery::generate();
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| recovery::normalize(c))
            .map(|n| recovery::hash(&n))
            .collect();
        self.store
            .replace_recovery_codes(&user.id, &hashes, now)
            .await?;
        Ok(codes)
    }

    fn attempt_keys(&self, user: &User, client_ip: Option<&str>) -> AttemptKeys {
        AttemptKeys::new(&format!("factor:{}", user.id), client_ip)
    }

    async fn record(&self, action: &str, actor: &Actor, user: &User, reason: &str) {
        self.audit
            .record(Entry {
                action,
                success: true,
                actor: Some(&actor.id),
                subject: Some(&user.username),
                reason: (!reason.is_empty()).then_some(reason),
                client_ip: actor.client_ip.clone(),
            })
            .await;
    }
}

fn valid_label(label: &str) -> Result<String, FactorError> {
    let label = label.trim();
    let label = if label.is_empty() {
        "Authenticator app"
    } else {
        label
    };
    if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(FactorError::Invalid(format!(
            "A factor's name is at most {MAX_LABEL} characters, on one line."
        )));
    }
    Ok(label.to_owned())
}
