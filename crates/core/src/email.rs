//! Email addresses, checked once where they enter Portcullis.
//!
//! Every source (provider claims and userinfo, bearer tokens, headers from a proxy in front,
//! LDAP, SCIM, the API, the CLI) turns text into an [`Email`] or drops it with a reason; nothing
//! downstream (policies, identity headers, provisioning) ever sees an unchecked address. The
//! checks close a class of bypasses: `alice@evil.example@example.test` passed a domain policy
//! that compared the text after the last `@`, and `a@x, b@y` in an identity header makes Open
//! WebUI create a user for the whole string.
//!
//! What is accepted is deliberately narrower than RFC 5322: one `@`; a dot-atom local part of
//! 1–64 bytes (letters of any script, digits and ``!#$%&'*+-/=?^_`{|}~``, dots not first, last
//! or doubled; no quoted forms, comments, spaces, controls, angle brackets or commas); a domain
//! that IDNA (UTS #46) maps to an ASCII host name of letters, digits and hyphens, at most 253
//! bytes. The domain is kept in its ASCII, lower-case form, so comparisons need no folding.

use std::fmt;
use std::ops::Deref;

/// A checked email address. Derefs to its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why a text is not an email address Portcullis accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address has exactly one @ (this one has {0})")]
    At(usize),
    #[error("the part before the @ must be 1 to 64 characters")]
    LocalLength,
    #[error("the part before the @ may not contain {0:?}")]
    LocalCharacter(char),
    #[error("the part before the @ may not start or end with a dot, or have two in a row")]
    Dots,
    #[error("{0:?} is not a valid domain")]
    Domain(String),
    #[error("an email address has at most 254 characters")]
    Length,
}

/// Characters allowed in a dot-atom besides letters, digits and `.` (RFC 5322 `atext`).
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

impl Email {
    pub fn parse(text: &str) -> Result<Email, EmailError> {
        let text = text.trim();
        let ats = text.matches('@').count();
        let Some((local, domain)) = text.split_once('@').filter(|_| ats == 1) else {
            return Err(EmailError::At(ats));
        };
        check_local(local)?;
        let domain = ascii_domain(domain)?;
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err(EmailError::Length);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain, ASCII (punycode for international names) and lower case.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// Whether the address is in `domain` (any spelling IDNA maps to the same name).
    pub fn in_domain(&self, domain: &str) -> bool {
        ascii_domain(domain.trim().trim_start_matches('@')).is_ok_and(|d| d == self.domain())
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn check_local(local: &str) -> Result<(), EmailError> {
    if local.is_empty() || local.len() > 64 {
        return Err(EmailError::LocalLength);
    }
    if let Some(bad) = local.chars().find(|c| {
        !(c.is_alphanumeric() || *c == '.' || ATEXT_SPECIALS.contains(*c))
            || c.is_control()
            || c.is_whitespace()
    }) {
        return Err(EmailError::LocalCharacter(bad));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::Dots);
    }
    Ok(())
}

/// The ASCII form of a domain (UTS #46 processing, as browsers do), checked as a host name.
fn ascii_domain(domain: &str) -> Result<String, EmailError> {
    let invalid = || EmailError::Domain(domain.to_owned());
    let ascii = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
    let labels_ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if ascii.is_empty() || ascii.len() > 253 || !labels_ok {
        return Err(invalid());
    }
    Ok(ascii)
}

impl Deref for Email {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Email {
    type Err = EmailError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Email::parse(text)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Email::parse(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Email {
    /// An optional address from outside: blank is `None`; anything else must be valid.
    pub fn parse_optional(text: Option<&str>) -> Result<Option<Email>, EmailError> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => Email::parse(text).map(Some),
            None => Ok(None),
        }
    }
}

impl From<EmailError> for crate::Failure {
    fn from(why: EmailError) -> Self {
        crate::Failure::bad_request(format!("the email address is not valid: {why}"))
            .with_hint("give one plain address such as alice@example.com")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_kept_with_a_lower_case_domain() {
        let e = Email::parse(" Maria.Lopez+chat@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Maria.Lopez+chat@example.com");
        assert_eq!(e.domain(), "example.com");
        assert!(e.in_domain("EXAMPLE.com"));
        assert!(!e.in_domain("ample.com"));
        assert!(Email::parse("o'brien@sub.example.co.uk").is_ok());
    }

    #[test]
    fn international_domains_compare_in_their_ascii_form() {
        let e = Email::parse("jörg@Bücher.example").unwrap();
        assert_eq!(e.domain(), "xn--bcher-kva.example");
        assert!(e.in_domain("bücher.example"));
        assert!(e.in_domain("XN--BCHER-KVA.EXAMPLE"));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for bad in [
            "alice@evil.example@example.test",
            "alice",
            "@example.com",
            "alice@",
            "\"alice@x\"@example.com",
            "a@x.example, b@y.example",
            "Alice <alice@example.com>",
            "al ice@example.com",
            "alice\n@example.com",
            "alice\u{0}@example.com",
            "alice@exa mple.com",
            "alice@example.com.",
            "alice@-example.com",
            "alice@[192.0.2.1]",
            "alice@example..com",
            ".alice@example.com",
            "ali..ce@example.com",
            "alice;x@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&long_local), Err(EmailError::LocalLength));
    }

    #[test]
    fn blank_is_no_address_and_anything_else_must_be_valid() {
        assert_eq!(Email::parse_optional(Some("  ")), Ok(None));
        assert_eq!(Email::parse_optional(None), Ok(None));
        assert!(Email::parse_optional(Some("a@b@c.example")).is_err());
        assert_eq!(
            Email::parse_optional(Some("a@c.example"))
                .unwrap()
                .as_deref(),
            Some("a@c.example")
        );
    }

    #[test]
    fn deserializing_checks_the_address() {
        assert!(serde_json::from_str::<Email>("\"a@b.example\"").is_ok());
        assert!(serde_json::from_str::<Email>("\"a@b@c.example\"").is_err());
    }
}
