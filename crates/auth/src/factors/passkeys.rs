//! Passkeys (WebAuthn): making one for an account, and signing in with one, with or without a
//! password. The checks of the ceremonies are in [`super::webauthn`]; what is stored, sealed,
//! and how a challenge is issued to any replica and checked by any other, is here.

use std::time::Duration;

use portcullis_core::user::User;
use portcullis_store::{Factor, FactorKind, StoreError};
use serde::{Deserialize, Serialize};

use super::{FactorError, MAX_FACTORS, Proof, SecondFactors, valid_label, webauthn};
use crate::audit::Actor;

/// How long a passkey ceremony may take between the page and the answer.
const CEREMONY_LIFETIME: Duration = Duration::from_secs(300);
const CEREMONY_PURPOSE: &str = "webauthn-challenge/v1";

/// A WebAuthn ceremony in progress: the options the page's script hands the browser (JSON), and
/// the sealed challenge the form sends back with the answer.
pub struct PasskeyCeremony {
    pub options: String,
    pub sealed: String,
}

#[derive(Serialize, Deserialize)]
struct SealedCeremony {
    purpose: String,
    /// `create` or `get`.
    ceremony: String,
    challenge: String,
    /// Whose passkey is being made (registration only).
    user_id: Option<String>,
    expires_at: i64,
}

impl SecondFactors {
    /// A sealed challenge for a `ceremony`, and the challenge itself for the options.
    fn challenge(&self, ceremony: &str, user_id: Option<&str>) -> (String, String) {
        let challenge = crate::secret::random_token();
        let sealed = SealedCeremony {
            purpose: CEREMONY_PURPOSE.to_owned(),
            ceremony: ceremony.to_owned(),
            challenge: challenge.clone(),
            user_id: user_id.map(str::to_owned),
            expires_at: self.clock.now().plus(CEREMONY_LIFETIME).0,
        };
        // Serialising strings and an integer cannot fail.
        let sealed = self
            .sealer
            .seal(&serde_json::to_string(&sealed).unwrap_or_default());
        (challenge, sealed)
    }

    fn open_challenge(&self, sealed: &str, ceremony: &str) -> Result<SealedCeremony, FactorError> {
        let refused = || FactorError::Passkey(webauthn::WebauthnError::WrongChallenge);
        let plain = self.sealer.open(sealed).map_err(|_| refused())?;
        let opened: SealedCeremony = serde_json::from_str(&plain).map_err(|_| refused())?;
        if opened.purpose != CEREMONY_PURPOSE
            || opened.ceremony != ceremony
            || self.clock.now().0 >= opened.expires_at
        {
            return Err(refused());
        }
        Ok(opened)
    }

    /// Registration options for a new passkey of `user` (a discoverable credential, with user
    /// verification: it can sign in without a password), excluding the ones they have.
    pub async fn begin_passkey(&self, user: &User) -> Result<PasskeyCeremony, FactorError> {
        let rp = self.relying_party()?;
        let exclude: Vec<String> = self
            .store
            .factors(&user.id)
            .await?
            .into_iter()
            .filter_map(|f| f.credential_id)
            .collect();
        let (challenge, sealed) = self.challenge("create", Some(&user.id));
        let options = serde_json::json!({
            "ceremony": "create",
            "rp_id": rp.id,
            "rp_name": self.issuer,
            "user_id": base64_url(user.id.as_bytes()),
            "user_name": user.email.as_ref().map_or(user.username.as_str(), |e| e.as_ref()),
            "display_name": user.display_name.as_deref().unwrap_or(&user.username),
            "challenge": challenge,
            "exclude": exclude,
        });
        Ok(PasskeyCeremony {
            options: options.to_string(),
            sealed,
        })
    }

    /// Stores the passkey the browser made for a [`Self::begin_passkey`]. Returns the new
    /// recovery codes, to be shown once, when the user had none.
    pub async fn confirm_passkey(
        &self,
        user: &User,
        sealed: &str,
        answer: &str,
        label: &str,
        actor: &Actor,
    ) -> Result<Option<Vec<String>>, FactorError> {
        let label = valid_label(if label.trim().is_empty() {
            "Passkey"
        } else {
            label
        })?;
        let rp = self.relying_party()?;
        let opened = self.open_challenge(sealed, "create")?;
        if opened.user_id.as_deref() != Some(user.id.as_str()) {
            return Err(FactorError::EnrolmentExpired);
        }
        if self.store.factors(&user.id).await?.len() >= MAX_FACTORS {
            return Err(FactorError::Invalid(format!(
                "An account can have at most {MAX_FACTORS} factors; remove one first."
            )));
        }
        let response: webauthn::NewCredential = serde_json::from_str(answer)
            .map_err(|_| FactorError::Passkey(webauthn::WebauthnError::Malformed("answer")))?;
        let credential = webauthn::verify_registration(rp, &opened.challenge, &response, true)
            .map_err(FactorError::Passkey)?;
        let now = self.clock.now();
        let factor = Factor {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            kind: FactorKind::Passkey,
            label: label.clone(),
            // Serialising strings and integers cannot fail.
            secret_enc: self
                .sealer
                .seal(&serde_json::to_string(&credential).unwrap_or_default()),
            credential_id: Some(credential.id.clone()),
            last_step: i64::from(credential.counter),
            created_at: now,
            last_used_at: None,
        };
        self.store
            .insert_factor(&factor)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    FactorError::Invalid("This passkey is registered already.".into())
                }
                other => other.into(),
            })?;
        self.record("factor_added", actor, user, &format!("passkey {label:?}"))
            .await;
        if self.store.recovery_codes_left(&user.id).await? > 0 {
            return Ok(None);
        }
        self.issue_recovery_codes(user, now).await.map(Some)
    }

    /// Options for signing in with a passkey: any discoverable one (`allow` empty, the user
    /// verified: a passwordless sign-in), or one of `allow` as a second factor.
    pub fn begin_passkey_assertion(
        &self,
        allow: &[String],
    ) -> Result<PasskeyCeremony, FactorError> {
        let rp = self.relying_party()?;
        let (challenge, sealed) = self.challenge("get", None);
        let options = serde_json::json!({
            "ceremony": "get",
            "rp_id": rp.id,
            "challenge": challenge,
            "allow": allow,
            "user_verification": if allow.is_empty() { "required" } else { "preferred" },
        });
        Ok(PasskeyCeremony {
            options: options.to_string(),
            sealed,
        })
    }

    /// The credential ids of `user`'s passkeys (for a second-factor ceremony).
    pub async fn passkeys_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .factors(user_id)
            .await?
            .into_iter()
            .filter_map(|f| f.credential_id)
            .collect())
    }

    /// Checks a passkey's answer to a [`Self::begin_passkey_assertion`]: whose it is (it must
    /// be `expected_user`'s when one is given), and the proof. A passwordless sign-in
    /// (`expected_user` `None`) needs the authenticator to have verified the user.
    pub async fn verify_passkey(
        &self,
        sealed: &str,
        answer: &str,
        expected_user: Option<&str>,
    ) -> Result<(String, Proof), FactorError> {
        let rp = self.relying_party()?;
        let opened = self.open_challenge(sealed, "get")?;
        let response: webauthn::Assertion = serde_json::from_str(answer)
            .map_err(|_| FactorError::Passkey(webauthn::WebauthnError::Malformed("answer")))?;
        let unknown =
            || FactorError::Passkey(webauthn::WebauthnError::Malformed("unknown credential"));
        let factor = self
            .store
            .factor_by_credential(&response.id)
            .await?
            .filter(|f| f.kind == FactorKind::Passkey)
            .ok_or_else(unknown)?;
        if expected_user.is_some_and(|id| id != factor.user_id) {
            return Err(unknown());
        }
        // A discoverable credential names its user; it must be the one it was made for.
        if let Some(handle) = &response.user_handle
            && *handle != base64_url(factor.user_id.as_bytes())
        {
            return Err(unknown());
        }
        let mut credential: webauthn::Credential = self
            .sealer
            .open(&factor.secret_enc)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or(FactorError::Unreadable)?;
        credential.counter = u32::try_from(factor.last_step).unwrap_or(u32::MAX);
        let require_verification = expected_user.is_none();
        let (counter, verified) = webauthn::verify_assertion(
            rp,
            &opened.challenge,
            &credential,
            &response,
            require_verification,
        )
        .map_err(FactorError::Passkey)?;
        if !self
            .store
            .use_passkey_counter(&factor.id, i64::from(counter), self.clock.now())
            .await?
        {
            return Err(FactorError::Passkey(
                webauthn::WebauthnError::CounterWentBack,
            ));
        }
        Ok((
            factor.user_id,
            Proof::Passkey {
                label: factor.label,
                verified,
            },
        ))
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
