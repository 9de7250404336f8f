//! Access policies: who may use an app.
//!
//! An app without any rule admits every signed-in active user. As soon as one rule is set, the
//! policy denies by default and admits only identities that match at least one rule.

use serde::Deserialize;

use crate::Identity;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// Usernames or email addresses (compared case-insensitively).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Directory roles: `admin`, `user`, `pending`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Email domains such as `example.com` (the part after `@`, case-insensitive).
    #[serde(default)]
    pub email_domains: Vec<String>,
}

/// Why a policy refused an identity, phrased for the 403 page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: String,
}

impl AccessPolicy {
    pub fn is_set(&self) -> bool {
        !(self.users.is_empty()
            && self.groups.is_empty()
            && self.roles.is_empty()
            && self.email_domains.is_empty())
    }

    pub fn evaluate(&self, identity: &Identity) -> Result<(), Denial> {
        if !self.is_set() {
            return Ok(());
        }
        let email = identity.email.as_ref();
        let user_match = self.users.iter().any(|u| {
            u.eq_ignore_ascii_case(&identity.username)
                || email.is_some_and(|e| u.eq_ignore_ascii_case(e))
        });
        let group_match = self.groups.iter().any(|g| identity.groups.contains(g));
        let role_match = self.roles.iter().any(|r| r == identity.role.as_str());
        // The address was checked where it entered (one `@`, a valid domain), so its domain is
        // the real one: `alice@evil.example@example.test` never got this far.
        let domain_match = email.is_some_and(|e| self.email_domains.iter().any(|d| e.in_domain(d)));
        if user_match || group_match || role_match || domain_match {
            return Ok(());
        }
        Err(Denial {
            reason: self.describe(),
        })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users [{}]", self.users.join(", ")));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups [{}]", self.groups.join(", ")));
        }
        if !self.roles.is_empty() {
            parts.push(format!("roles [{}]", self.roles.join(", ")));
        }
        if !self.email_domains.is_empty() {
            parts.push(format!("email domains [{}]", self.email_domains.join(", ")));
        }
        format!("this app admits only {}", parts.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn identity() -> Identity {
        Identity {
            subject: "s".into(),
            username: "bob".into(),
            email: Some(crate::Email::parse("Bob@Example.com").unwrap()),
            display_name: "Bob".into(),
            groups: vec!["staff".into()],
            role: Role::User,
        }
    }

    #[test]
    fn no_rules_admit_everyone_signed_in() {
        assert!(AccessPolicy::default().evaluate(&identity()).is_ok());
    }

    #[test]
    fn any_matching_rule_admits() {
        let by_domain = AccessPolicy {
            email_domains: vec!["example.COM".into()],
            ..Default::default()
        };
        assert!(by_domain.evaluate(&identity()).is_ok());
        let by_group = AccessPolicy {
            groups: vec!["staff".into()],
            ..Default::default()
        };
        assert!(by_group.evaluate(&identity()).is_ok());
        let by_user = AccessPolicy {
            users: vec!["bob@example.com".into()],
            ..Default::default()
        };
        assert!(by_user.evaluate(&identity()).is_ok());
    }

    #[test]
    fn a_set_policy_denies_by_default_and_says_why() {
        let admins = AccessPolicy {
            roles: vec!["admin".into()],
            groups: vec!["ops".into()],
            ..Default::default()
        };
        let denial = admins.evaluate(&identity()).err();
        assert_eq!(
            denial.map(|d| d.reason),
            Some("this app admits only groups [ops] or roles [admin]".to_owned())
        );
    }
}
