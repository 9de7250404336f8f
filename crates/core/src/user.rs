//! Directory users.

use crate::{Email, Identity, Role, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
    PendingApproval,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::PendingApproval => "pending_approval",
        }
    }

    pub fn parse(s: &str) -> Option<UserStatus> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            "pending_approval" => Some(UserStatus::PendingApproval),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Opaque stable id (a UUID); the identity's subject.
    pub id: String,
    pub username: String,
    pub email: Option<Email>,
    pub display_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub groups: Vec<String>,
    pub created_at: Timestamp,
    /// Last activity through any of their sessions; `None` until they first sign in.
    pub last_seen: Option<Timestamp>,
    /// Whether the user has a local password (others sign in through a provider or LDAP).
    pub has_password: bool,
    /// The local password must be changed at the next sign-in (set by an admin).
    pub must_change_password: bool,
}

impl User {
    /// The identity apps receive for this user. The display name falls back to the username,
    /// never to the opaque id.
    pub fn identity(&self) -> Identity {
        let display_name = self
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.username)
            .to_owned();
        Identity {
            subject: self.id.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            display_name,
            groups: self.groups.clone(),
            role: self.role,
        }
    }
}

/// Usernames are what people type at the sign-in form: keep them unambiguous.
pub fn validate_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.len() > 64 {
        return Err("a username has 1 to 64 characters".into());
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
    {
        return Err("a username may contain only letters, digits and . _ - @ +".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(display_name: Option<&str>) -> User {
        User {
            id: "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11".into(),
            username: "alice".into(),
            email: Some("alice@example.com".parse().unwrap()),
            display_name: display_name.map(str::to_owned),
            role: Role::User,
            status: UserStatus::Active,
            groups: vec![],
            created_at: Timestamp(0),
            last_seen: None,
            has_password: false,
            must_change_password: false,
        }
    }

    #[test]
    fn display_name_never_falls_back_to_the_subject() {
        assert_eq!(user(None).identity().display_name, "alice");
        assert_eq!(user(Some("  ")).identity().display_name, "alice");
        assert_eq!(user(Some("Alice A")).identity().display_name, "Alice A");
    }

    #[test]
    fn usernames_are_checked() {
        assert!(validate_username("alice.b@example.com").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("a,b").is_err());
    }
}
