//! The identity headers an app receives, computed in one place: the built-in proxy's rewrite,
//! forward-auth answers, `/.portcullis/whoami`, `portcullis explain` and doctor's canary all call
//! [`IdentityHeaders::values`], so what they show and what apps get cannot differ.
//!
//! A value is never empty (an absent field sends no header at all: Open WebUI creates a user
//! for an empty email header) and is sent once; roles are in the app's own vocabulary.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use portcullis_core::Identity;
use portcullis_core::identity::IdentityField;

/// Headers and the identity field each carries, with the app's names for roles.
#[derive(Clone, Debug, Default)]
pub struct IdentityHeaders {
    headers: Vec<(HeaderName, IdentityField)>,
    role_values: BTreeMap<String, String>,
}

/// Every header family an app behind forward-auth may read, oauth2-proxy's names first.
const FAMILIES: &[(&str, IdentityField)] = &[
    ("x-auth-request-user", IdentityField::Username),
    ("x-auth-request-email", IdentityField::Email),
    ("x-auth-request-preferred-username", IdentityField::Username),
    ("x-auth-request-groups", IdentityField::Groups),
    ("x-forwarded-user", IdentityField::Username),
    ("x-forwarded-email", IdentityField::Email),
    ("x-forwarded-preferred-username", IdentityField::Username),
    ("x-forwarded-groups", IdentityField::Groups),
    ("remote-user", IdentityField::Username),
    ("remote-email", IdentityField::Email),
    ("remote-name", IdentityField::Name),
    ("remote-groups", IdentityField::Groups),
];

impl IdentityHeaders {
    pub fn new(
        headers: Vec<(HeaderName, IdentityField)>,
        role_values: BTreeMap<String, String>,
    ) -> Self {
        IdentityHeaders {
            headers,
            role_values,
        }
    }

    /// oauth2-proxy's, the `X-Forwarded-*` and Authelia's families, each with every field:
    /// what forward-auth answers carry so the proxy can copy whichever its app reads.
    pub fn families() -> Self {
        let headers = FAMILIES
            .iter()
            .map(|(name, field)| (HeaderName::from_static(name), *field))
            .collect();
        Self::new(headers, BTreeMap::new())
    }

    /// The value of one field as these headers carry it: the role in the app's vocabulary,
    /// `None` when it would be empty.
    pub fn value(&self, identity: &Identity, field: IdentityField) -> Option<String> {
        if field == IdentityField::Role
            && let Some(value) = self.role_values.get(identity.role.as_str())
        {
            return Some(value.clone());
        }
        identity.field(field)
    }

    /// Each header with its value for `identity`, in order; fields without a value are left
    /// out. A later entry with the same name is the app's own choice and wins on insert.
    pub fn values<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
        self.headers.iter().filter_map(move |(name, field)| {
            let value = self.value(identity, *field)?;
            // Non-ASCII (a name such as "José") goes as raw UTF-8, as oauth2-proxy sends it;
            // a control character cannot be in a header and the claim rules keep it out.
            HeaderValue::from_bytes(value.as_bytes())
                .ok()
                .map(|v| (name, v))
        })
    }

    /// The header names, in order.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.headers.iter().map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Role;

    fn identity() -> Identity {
        Identity {
            subject: "s-1".into(),
            username: "jose".into(),
            email: None,
            display_name: "José".into(),
            groups: vec!["a".into(), "b".into()],
            role: Role::Admin,
        }
    }

    #[test]
    fn values_skip_empty_fields_and_map_roles() {
        let mut roles = BTreeMap::new();
        roles.insert("admin".to_owned(), "Admin".to_owned());
        let headers = IdentityHeaders::new(
            vec![
                (HeaderName::from_static("x-user"), IdentityField::Username),
                (HeaderName::from_static("x-email"), IdentityField::Email),
                (HeaderName::from_static("x-name"), IdentityField::Name),
                (HeaderName::from_static("x-groups"), IdentityField::Groups),
                (HeaderName::from_static("x-role"), IdentityField::Role),
            ],
            roles,
        );
        let identity = identity();
        let sent: Vec<(String, Vec<u8>)> = headers
            .values(&identity)
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(
            sent,
            [
                ("x-user".to_owned(), b"jose".to_vec()),
                ("x-name".to_owned(), "José".as_bytes().to_vec()),
                ("x-groups".to_owned(), b"a,b".to_vec()),
                ("x-role".to_owned(), b"Admin".to_vec()),
            ]
        );
    }

    #[test]
    fn the_families_cover_every_name_forward_auth_documents() {
        let families = IdentityHeaders::families();
        let names: Vec<&str> = families.names().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 12);
        assert!(names.contains(&"remote-name") && names.contains(&"x-auth-request-groups"));
    }
}
