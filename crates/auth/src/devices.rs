//! Device cookies (OWASP's defence against online guessing): a browser that signed an account in
//! carries an unforgeable tag saying so, and its later password checks for that account may use
//! a hashing slot strangers cannot (see [`crate::password::Lane`]). During a flood of wrong
//! passwords, people coming back are not starved by the attacker's attempts; nobody is let in on
//! the tag alone — it only decides who waits where.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, Timestamp};

use crate::seal::Sealer;
use crate::secret::constant_time_eq;

/// The cookie a browser keeps after a sign-in (`Path=/.portcullis/`).
pub const DEVICE_COOKIE: &str = "_portcullis_device";
/// How long a browser stays known after its last sign-in.
pub const DEVICE_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
const LABEL: &str = "known device v1";

pub struct KnownDevices {
    sealer: Sealer,
    clock: Arc<dyn Clock>,
}

impl KnownDevices {
    pub fn new(sealer: Sealer, clock: Arc<dyn Clock>) -> Self {
        KnownDevices { sealer, clock }
    }

    /// The cookie value for a browser that just signed `user_id` in.
    pub fn issue(&self, user_id: &str) -> String {
        let expires = self.clock.now().plus(DEVICE_LIFETIME).0;
        let body = format!("{user_id}.{expires}");
        let tag = self.sealer.tag(LABEL, &body);
        format!("{body}.{tag}")
    }

    /// The user a cookie value vouches for: only a tag this deployment made, not expired.
    pub fn user_of(&self, value: &str) -> Option<String> {
        let (body, tag) = value.rsplit_once('.')?;
        let (user_id, expires) = body.rsplit_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let genuine = constant_time_eq(self.sealer.tag(LABEL, body).as_bytes(), tag.as_bytes());
        (genuine && !user_id.is_empty() && self.clock.now() < Timestamp(expires))
            .then(|| user_id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::ManualClock;

    #[test]
    fn only_genuine_unexpired_tags_vouch_for_their_user() {
        let clock = ManualClock::at(Timestamp(1000));
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let devices = KnownDevices::new(sealer, Arc::new(clock.clone()));
        let value = devices.issue("user-1");
        assert_eq!(devices.user_of(&value).as_deref(), Some("user-1"));
        let forged = value.replacen("user-1", "user-2", 1);
        assert_eq!(devices.user_of(&forged), None, "another user's id");
        let other = KnownDevices::new(
            Sealer::from_base64(&Sealer::generate_key()).unwrap(),
            Arc::new(clock.clone()),
        );
        assert_eq!(other.user_of(&value), None, "another deployment's key");
        for garbage in ["", ".", "..", "user-1", "user-1.x.y", "a.b.c.d"] {
            assert_eq!(devices.user_of(garbage), None, "{garbage:?}");
        }
        clock.advance(DEVICE_LIFETIME);
        assert_eq!(devices.user_of(&value), None, "expired");
    }
}
