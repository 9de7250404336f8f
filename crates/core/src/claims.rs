//! Identity mapping: from an identity provider's claims to a Portcullis identity.
//!
//! Every field comes from a named claim (dotted paths such as `realm_access.roles` allowed; a key
//! that itself contains dots or colons, such as `cognito:groups`, is found first). Fallbacks are
//! fixed and documented, and none of them ever makes the opaque subject a display name — the
//! "GUIDs as names" failure cannot happen by default.

use serde::Deserialize;
use serde_json::Value;

use crate::email::{Email, EmailError};

/// Which claim feeds which identity field. Unset fields use the preset's (or generic) defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The stable user key within the issuer. Entra: `oid` (its `sub` is pairwise per app).
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<String>,
    /// Display name; falls back to `given_name` + `family_name`, then the username claim, then email.
    #[serde(default)]
    pub name: Option<String>,
    /// Login name; falls back to `preferred_username`, then email.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub groups: Option<String>,
    #[serde(default)]
    pub roles: Option<String>,
}

/// Known providers and what their tokens look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    #[default]
    Generic,
    Cognito,
    Entra,
    Google,
    Keycloak,
    Auth0,
    Okta,
    Github,
}

impl Preset {
    /// The mapping a preset starts from; explicit settings override it field by field.
    pub fn defaults(self) -> ClaimMapping {
        let s = |v: &str| Some(v.to_owned());
        let generic = ClaimMapping {
            subject: s("sub"),
            email: s("email"),
            email_verified: s("email_verified"),
            name: s("name"),
            username: s("preferred_username"),
            groups: s("groups"),
            roles: s("roles"),
        };
        match self {
            Preset::Generic | Preset::Auth0 | Preset::Okta => generic,
            // Cognito: `sub` is a UUID, `cognito:username` is often one too; groups are
            // `cognito:groups`, and `email_verified` may arrive as the string "true".
            Preset::Cognito => ClaimMapping {
                groups: s("cognito:groups"),
                roles: None,
                ..generic
            },
            Preset::Entra => ClaimMapping {
                subject: s("oid"),
                email_verified: None,
                ..generic
            },
            Preset::Google => ClaimMapping {
                username: s("email"),
                groups: None,
                roles: None,
                ..generic
            },
            Preset::Keycloak => ClaimMapping {
                roles: s("realm_access.roles"),
                ..generic
            },
            // GitHub has no ID token: these name fields of `GET /user`.
            Preset::Github => ClaimMapping {
                subject: s("id"),
                email: s("email"),
                email_verified: s("email_verified"),
                name: s("name"),
                username: s("login"),
                groups: None,
                roles: None,
            },
        }
    }
}

impl ClaimMapping {
    /// This mapping with unset fields taken from `base`.
    pub fn over(&self, base: &ClaimMapping) -> ClaimMapping {
        let pick = |mine: &Option<String>, theirs: &Option<String>| {
            mine.clone().or_else(|| theirs.clone())
        };
        ClaimMapping {
            subject: pick(&self.subject, &base.subject),
            email: pick(&self.email, &base.email),
            email_verified: pick(&self.email_verified, &base.email_verified),
            name: pick(&self.name, &base.name),
            username: pick(&self.username, &base.username),
            groups: pick(&self.groups, &base.groups),
            roles: pick(&self.roles, &base.roles),
        }
    }
}

/// A claim value by name: the exact key first (`cognito:groups`, `https://x/roles`), then a dotted
/// path through nested objects (`realm_access.roles`).
pub fn lookup<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut current = claims;
    for part in name.split('.') {
        current = current.get(part)?;
    }
    Some(current)
}

/// Longest claim value used as a subject, name, username or group, in characters.
pub const MAX_CLAIM_TEXT: usize = 256;

/// Whether a claim value may become part of an identity: not empty, no control characters
/// (they would corrupt headers, logs and pages), not absurdly long. Others count as absent.
fn usable(text: &str) -> bool {
    !text.is_empty()
        && text.chars().count() <= MAX_CLAIM_TEXT
        && !text.chars().any(char::is_control)
}

fn text(claims: &Value, name: Option<&str>) -> Option<String> {
    let value = lookup(claims, name?)?;
    let s = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    usable(&s).then_some(s)
}

fn list(claims: &Value, name: Option<&str>) -> Vec<String> {
    let Some(value) = name.and_then(|n| lookup(claims, n)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        // Some providers send a single group as a string, or a comma-separated list.
        Value::String(s) => s.split(',').map(|g| g.trim().to_owned()).collect(),
        _ => Vec::new(),
    };
    // A comma inside a group name would split it apart in a comma-separated header.
    out.retain(|g| usable(g) && !g.contains(','));
    out.sort();
    out.dedup();
    out
}

/// `true`, or the string `"true"` as Cognito sends it.
fn truthy(claims: &Value, name: Option<&str>) -> bool {
    match name.and_then(|n| lookup(claims, n)) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// What the claims say about the person, after mapping and fallbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedClaims {
    pub subject: String,
    /// A valid address from the email claim; an invalid one is dropped (see `rejected_email`).
    pub email: Option<Email>,
    pub email_verified: bool,
    /// The display name, fallbacks included: what a new user is created with.
    pub display_name: String,
    /// Whether `display_name` came from the token's own name claims (name, given + family)
    /// rather than a fallback: only then may it replace a name the user already has.
    pub name_claimed: bool,
    pub username: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// Entra replaced the `groups` claim by a reference (more than ~200 groups): the groups above
    /// are incomplete and the operator must fix the app registration.
    pub groups_overage: bool,
    /// Where each field came from (`field → claim`), for whoami and explain.
    pub sources: Vec<(&'static str, String)>,
    /// The email claim held something that is not a valid address: it was dropped, and this
    /// says why (for the log and explain).
    pub rejected_email: Option<EmailError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingError {
    NoSubject(String),
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappingError::NoSubject(claim) => write!(
                f,
                "the provider's token has no {claim:?} claim to identify the user"
            ),
        }
    }
}

impl std::error::Error for MappingError {}

fn first_present(
    candidates: impl IntoIterator<Item = (String, Option<String>)>,
) -> Option<(String, String)> {
    candidates
        .into_iter()
        .find_map(|(source, value)| value.map(|v| (source, v)))
}

/// Maps claims with a resolved mapping (see [`ClaimMapping::over`]).
pub fn map_claims(claims: &Value, mapping: &ClaimMapping) -> Result<MappedClaims, MappingError> {
    let mut sources = Vec::new();
    let subject_claim = mapping.subject.as_deref().unwrap_or("sub");
    let subject = text(claims, Some(subject_claim))
        .ok_or_else(|| MappingError::NoSubject(subject_claim.to_owned()))?;
    sources.push(("subject", subject_claim.to_owned()));

    let (email, rejected_email) =
        match Email::parse_optional(text(claims, mapping.email.as_deref()).as_deref()) {
            Ok(email) => (email.map(|e| lower_case(&e)), None),
            Err(why) => (None, Some(why)),
        };
    if email.is_some() {
        sources.push(("email", mapping.email.clone().unwrap_or_default()));
    }
    let email_text = email.as_ref().map(|e| e.to_string());
    // Each field takes the first candidate that has a value; the source is recorded.
    let username_candidates = [
        (
            mapping.username.clone().unwrap_or_default(),
            text(claims, mapping.username.as_deref()),
        ),
        (
            "preferred_username".to_owned(),
            text(claims, Some("preferred_username")),
        ),
        ("email".to_owned(), email_text.clone()),
    ];
    let (username_source, username) = first_present(username_candidates)
        .unwrap_or_else(|| (subject_claim.to_owned(), subject.clone()));
    sources.push(("username", username_source));

    let given_family = [
        text(claims, Some("given_name")),
        text(claims, Some("family_name")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let name_candidates = [
        (
            mapping.name.clone().unwrap_or_default(),
            text(claims, mapping.name.as_deref()),
        ),
        (
            "given_name + family_name".to_owned(),
            Some(given_family).filter(|n| !n.is_empty()),
        ),
        (
            "username".to_owned(),
            Some(username.clone()).filter(|u| *u != subject),
        ),
        ("email".to_owned(), email_text),
    ];
    // Nothing readable at all: say so rather than show an opaque id as a name.
    let claimed_candidates = 2;
    let name_claimed = name_candidates
        .iter()
        .take(claimed_candidates)
        .any(|(_, value)| value.is_some());
    let (name_source, display_name) = first_present(name_candidates).unwrap_or_else(|| {
        (
            "none (no name, username or email claim)".to_owned(),
            "Unnamed user".to_owned(),
        )
    });
    sources.push(("name", name_source));

    let groups = list(claims, mapping.groups.as_deref());
    let groups_overage = groups.is_empty() && lookup(claims, "_claim_names.groups").is_some();
    Ok(MappedClaims {
        subject,
        email_verified: truthy(claims, mapping.email_verified.as_deref()),
        email,
        display_name,
        name_claimed,
        username,
        groups,
        roles: list(claims, mapping.roles.as_deref()),
        groups_overage,
        sources,
        rejected_email,
    })
}

impl MappedClaims {
    /// The display name the token itself asserts, if any: what may update an existing user.
    /// A token with no name claim (a Cognito access token, say) leaves the name alone instead
    /// of replacing it with a fallback.
    pub fn claimed_name(&self) -> Option<&str> {
        self.name_claimed.then_some(self.display_name.as_str())
    }
}

/// Provider addresses are compared and shown in lower case, as the apps behind (Open WebUI)
/// store them.
fn lower_case(email: &Email) -> Email {
    Email::parse(&email.to_lowercase()).unwrap_or_else(|_| email.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(preset: Preset, claims: Value) -> MappedClaims {
        map_claims(&claims, &preset.defaults()).unwrap()
    }

    #[test]
    fn multi_at_and_control_characters_never_enter_an_identity() {
        let m = map(
            Preset::Generic,
            json!({
                "sub": "s-1",
                "email": "alice@evil.example@example.test",
                "email_verified": true,
                "preferred_username": "alice\u{7}\r\nX-Forwarded-User: root",
                "name": "x".repeat(MAX_CLAIM_TEXT + 1),
                "groups": ["staff", "bad\u{0}group"],
            }),
        );
        assert_eq!(m.email, None, "the multi-@ address is dropped");
        assert!(matches!(m.rejected_email, Some(EmailError::At(2))));
        assert_eq!(
            m.username, "s-1",
            "an unusable username claim counts as absent"
        );
        assert_eq!(m.display_name, "Unnamed user");
        assert_eq!(m.groups, vec!["staff"]);
    }

    #[test]
    fn cognito_guid_subject_is_never_the_name() {
        // A Cognito ID token for a user who signed up with an email alias: `sub` and
        // `cognito:username` are both UUIDs, `email_verified` is a string.
        let m = map(
            Preset::Cognito,
            json!({
                "sub": "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01",
                "cognito:username": "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01",
                "cognito:groups": ["chat-admins", "staff"],
                "email": "Maria.Lopez@Example.com",
                "email_verified": "true",
                "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf",
                "aud": "77n2g266last0jim5h1c0qjckn",
                "token_use": "id"
            }),
        );
        assert_eq!(m.email.as_deref(), Some("maria.lopez@example.com"));
        assert!(m.email_verified);
        assert_eq!(m.username, "maria.lopez@example.com");
        assert_eq!(
            m.display_name, "maria.lopez@example.com",
            "email, not the GUID"
        );
        assert_eq!(m.groups, ["chat-admins", "staff"]);
        let with_name = map(
            Preset::Cognito,
            json!({"sub": "8c1d", "email": "a@b.c", "given_name": "Maria", "family_name": "Lopez"}),
        );
        assert_eq!(with_name.display_name, "Maria Lopez");
    }

    #[test]
    fn entra_uses_oid_and_reports_overage() {
        let m = map(
            Preset::Entra,
            json!({
                "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                "oid": "00000000-0000-0000-66f3-3332eca7ea81",
                "tid": "9122040d-6c67-4c5b-b112-36a304b66dad",
                "preferred_username": "abeli@microsoft.com",
                "name": "Abe Lincoln",
                "roles": ["Chat.Admin"],
                "_claim_names": {"groups": "src1"},
                "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}
            }),
        );
        assert_eq!(m.subject, "00000000-0000-0000-66f3-3332eca7ea81");
        assert_eq!(m.username, "abeli@microsoft.com");
        assert_eq!(m.display_name, "Abe Lincoln");
        assert_eq!(m.roles, ["Chat.Admin"]);
        assert!(m.groups_overage);
        assert!(!m.email_verified, "Entra does not assert email_verified");
    }

    #[test]
    fn google_and_keycloak() {
        let g = map(
            Preset::Google,
            json!({"sub": "110169484474386276334", "email": "ada@example.org", "email_verified": true, "hd": "example.org", "name": "Ada L"}),
        );
        assert_eq!(
            (
                g.username.as_str(),
                g.display_name.as_str(),
                g.email_verified
            ),
            ("ada@example.org", "Ada L", true)
        );
        let k = map(
            Preset::Keycloak,
            json!({"sub": "f1c2", "preferred_username": "jdoe", "email": "j@x.io", "groups": ["/ops", "dev"],
                   "realm_access": {"roles": ["offline_access", "admin"]}}),
        );
        assert_eq!(k.username, "jdoe");
        assert_eq!(k.display_name, "jdoe");
        assert_eq!(k.groups, ["/ops", "dev"]);
        assert_eq!(k.roles, ["admin", "offline_access"]);
    }

    #[test]
    fn github_user_object() {
        let m = map(
            Preset::Github,
            json!({"id": 583231, "login": "octocat", "name": null, "email": "octo@github.com", "email_verified": true}),
        );
        assert_eq!(m.subject, "583231");
        assert_eq!(m.username, "octocat");
        assert_eq!(m.display_name, "octocat");
    }

    #[test]
    fn nothing_readable_never_shows_the_subject() {
        let m = map(
            Preset::Generic,
            json!({"sub": "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11"}),
        );
        assert_eq!(m.username, "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11");
        assert_eq!(m.display_name, "Unnamed user");
        assert!(map_claims(&json!({"email": "x@y"}), &Preset::Generic.defaults()).is_err());
    }

    #[test]
    fn explicit_settings_override_the_preset() {
        let custom = ClaimMapping {
            name: Some("custom:display".into()),
            groups: Some("teams".into()),
            ..Default::default()
        };
        let m = map_claims(
            &json!({"sub": "s", "custom:display": "Dee", "teams": "a, b,,a", "cognito:groups": ["ignored"]}),
            &custom.over(&Preset::Cognito.defaults()),
        )
        .unwrap();
        assert_eq!(m.display_name, "Dee");
        assert_eq!(m.groups, ["a", "b"]);
        assert!(m.sources.contains(&("name", "custom:display".to_owned())));
    }
}
