//! The identity an app receives about the person (or machine) behind a request.

use serde::Serialize;

use crate::Email;

/// The directory role. Apps get it mapped to their own vocabulary through header profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Pending,
}

impl Role {
    /// Whether going from `self` to `to` takes a privilege away (admin → user, anything →
    /// pending). Such a change ends the user's sessions: a demoted admin must sign in again
    /// rather than keep an admin page open.
    pub fn is_demotion_to(self, to: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Admin => 2,
            Role::User => 1,
            Role::Pending => 0,
        };
        rank(to) < rank(self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "pending" => Some(Role::Pending),
            _ => None,
        }
    }
}

/// Who a request is from, resolved once per session and shared by every request of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Opaque, stable identifier. Never shown as a name unless a profile asks for it explicitly.
    pub subject: String,
    pub username: String,
    pub email: Option<Email>,
    /// Human display name. Falls back to the username, never to the subject.
    pub display_name: String,
    pub groups: Vec<String>,
    pub role: Role,
}

/// A field of the identity that a header can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityField {
    Subject,
    Username,
    Email,
    Name,
    Groups,
    Role,
}

/// Whether a value looks like an opaque id (a GUID, a hex or base64 key) rather than something a
/// person would recognise as a name.
pub fn looks_opaque(text: &str) -> bool {
    let hex = text.chars().filter(char::is_ascii_hexdigit).count();
    text.len() >= 20 && !text.contains(' ') && !text.contains('@') && hex * 10 >= text.len() * 8
}

impl Identity {
    /// The "names show as GUIDs" case: the display name is the subject or looks like an id.
    pub fn name_looks_opaque(&self) -> bool {
        self.display_name == self.subject || looks_opaque(&self.display_name)
    }

    /// The value of one field as a header would carry it, or `None` when it would be empty:
    /// an identity header is never sent empty.
    pub fn field(&self, field: IdentityField) -> Option<String> {
        let value = match field {
            IdentityField::Subject => self.subject.clone(),
            IdentityField::Username => self.username.clone(),
            IdentityField::Email => self.email.as_deref().unwrap_or_default().to_owned(),
            IdentityField::Name => self.display_name.clone(),
            IdentityField::Groups => self.groups.join(","),
            IdentityField::Role => self.role.as_str().to_owned(),
        };
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demotions_take_a_privilege_away() {
        assert!(Role::Admin.is_demotion_to(Role::User));
        assert!(Role::User.is_demotion_to(Role::Pending));
        assert!(Role::Admin.is_demotion_to(Role::Pending));
        assert!(!Role::User.is_demotion_to(Role::Admin));
        assert!(!Role::Pending.is_demotion_to(Role::User));
        assert!(!Role::User.is_demotion_to(Role::User));
    }
}
