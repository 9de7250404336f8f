//! Identity-header profiles: which headers an app receives and which identity field each carries.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::identity::IdentityField;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// oauth2-proxy's upstream header names (`X-Forwarded-User/Email/Groups/Preferred-Username`).
    #[default]
    Forwarded,
    /// Open WebUI's trusted-header sign-in: email, and the display name in `X-Forwarded-User`.
    Openwebui,
    /// Authelia's names (`Remote-User/Email/Name/Groups`).
    Remote,
    /// Only the headers listed under `custom`.
    Custom,
    /// No identity headers at all.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderProfileConfig {
    #[serde(default)]
    pub profile: ProfileName,
    /// Send the groups header of the profile (comma-separated).
    #[serde(default = "yes")]
    pub groups: bool,
    /// A header carrying the role (`admin`, `user`, `pending`), e.g. for Open WebUI's
    /// `WEBUI_AUTH_TRUSTED_ROLE_HEADER`. Off unless named.
    #[serde(default)]
    pub role_header: Option<String>,
    /// What the app calls each role, when it differs: `{ admin = "Admin", user = "Viewer" }`
    /// (Grafana). Roles not listed are sent as Portcullis names them.
    #[serde(default)]
    pub role_values: BTreeMap<String, String>,
    /// Extra headers, header name → identity field; with `profile = "custom"`, the only ones.
    #[serde(default)]
    pub custom: BTreeMap<String, IdentityField>,
}

fn yes() -> bool {
    true
}

impl Default for HeaderProfileConfig {
    fn default() -> Self {
        HeaderProfileConfig {
            profile: ProfileName::default(),
            groups: true,
            role_header: None,
            role_values: BTreeMap::new(),
            custom: BTreeMap::new(),
        }
    }
}

/// One header an app receives: its name (canonical lower case) and the field it carries.
pub type HeaderMapping = (String, IdentityField);

fn builtin(profile: ProfileName) -> Vec<(&'static str, IdentityField)> {
    use IdentityField::*;
    match profile {
        ProfileName::Forwarded => vec![
            ("x-forwarded-user", Username),
            ("x-forwarded-email", Email),
            ("x-forwarded-preferred-username", Username),
            ("x-forwarded-groups", Groups),
        ],
        ProfileName::Openwebui => vec![
            ("x-forwarded-email", Email),
            ("x-forwarded-user", Name),
            ("x-forwarded-groups", Groups),
        ],
        ProfileName::Remote => vec![
            ("remote-user", Username),
            ("remote-email", Email),
            ("remote-name", Name),
            ("remote-groups", Groups),
        ],
        ProfileName::Custom | ProfileName::None => vec![],
    }
}

impl HeaderProfileConfig {
    /// The headers this app receives, in a stable order, one entry per header name.
    pub fn mappings(&self) -> Vec<HeaderMapping> {
        let mut out: Vec<HeaderMapping> = builtin(self.profile)
            .into_iter()
            .filter(|(_, field)| self.groups || *field != IdentityField::Groups)
            .map(|(name, field)| (name.to_owned(), field))
            .collect();
        let mut extra: Vec<HeaderMapping> = self
            .custom
            .iter()
            .map(|(name, field)| (name.to_ascii_lowercase(), *field))
            .collect();
        if let Some(role) = &self.role_header {
            extra.push((role.to_ascii_lowercase(), IdentityField::Role));
        }
        for (name, field) in extra {
            out.retain(|(n, _)| *n != name);
            out.push((name, field));
        }
        if self.profile == ProfileName::None {
            out.clear();
        }
        out
    }
}

/// Headers that carry identity in some family Portcullis speaks, whether or not an app is
/// configured to receive them. Client copies of all of them (and of every header any configured
/// app receives) are removed from every request (`portcullis_proxy::RouteTable`).
pub const KNOWN_IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-role",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
    "x-auth-request-redirect",
    "remote-user",
    "remote-email",
    "remote-name",
    "remote-groups",
    "x-portcullis-assertion",
    "x-portcullis-user",
    "x-portcullis-email",
];

#[cfg(test)]
mod tests {
    use super::*;
    use IdentityField::*;

    #[test]
    fn openwebui_profile_sends_the_display_name_as_user() {
        let cfg = HeaderProfileConfig {
            profile: ProfileName::Openwebui,
            groups: false,
            role_header: Some("X-Forwarded-Role".into()),
            role_values: BTreeMap::new(),
            custom: BTreeMap::new(),
        };
        assert_eq!(
            cfg.mappings(),
            vec![
                ("x-forwarded-email".to_owned(), Email),
                ("x-forwarded-user".to_owned(), Name),
                ("x-forwarded-role".to_owned(), Role),
            ]
        );
    }

    #[test]
    fn custom_entries_override_profile_entries() {
        let mut custom = BTreeMap::new();
        custom.insert("X-Forwarded-User".to_owned(), Email);
        let cfg = HeaderProfileConfig {
            custom,
            ..HeaderProfileConfig::default()
        };
        let mappings = cfg.mappings();
        assert_eq!(
            mappings
                .iter()
                .filter(|(n, _)| n == "x-forwarded-user")
                .count(),
            1
        );
        assert!(mappings.contains(&("x-forwarded-user".to_owned(), Email)));
    }
}
