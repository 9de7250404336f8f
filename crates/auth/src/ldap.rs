//! Sign-in against an LDAP directory: search for the user with a service account, then bind as
//! the user with their password (over StartTLS or LDAPS), read their groups from `memberOf` or a
//! group search, and resolve them to a directory user like any provider sign-in.
//!
//! Two traps are closed here: an empty password is refused before any bind (an LDAP "unauthenticated
//! bind" with an empty password succeeds on many servers), and the login is escaped before it goes
//! into the search filter (RFC 4515), so `*` or `)(uid=*` cannot widen the search.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use portcullis_core::claims::{Preset, map_claims};
use portcullis_core::config::LdapConfig;
use portcullis_core::user::User;

use crate::directory::{Directory, IdentitySource, LoginRefusal};

const TIMEOUT: Duration = Duration::from_secs(10);
/// LDAP result code 49: invalid credentials.
const INVALID_CREDENTIALS: u32 = 49;

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// Unknown user, wrong password, or a login that matches several entries.
    #[error("{0}")]
    Rejected(&'static str),
    #[error("the LDAP directory is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Refused(#[from] LoginRefusal),
}

pub struct LdapLogin {
    config: LdapConfig,
    settings: LdapConnSettings,
    directory: Arc<Directory>,
}

fn unavailable(e: impl std::fmt::Display) -> LdapError {
    LdapError::Unavailable(e.to_string())
}

impl LdapLogin {
    pub fn new(config: LdapConfig, directory: Arc<Directory>) -> Result<Self, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(TIMEOUT)
            .set_starttls(config.starttls && config.url.starts_with("ldap://"));
        if let Some(ca_file) = &config.ca_file {
            settings = settings.set_config(Arc::new(tls_config(ca_file)?));
        }
        Ok(LdapLogin {
            config,
            settings,
            directory,
        })
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let (conn, ldap) = LdapConnAsync::with_settings(self.settings.clone(), &self.config.url)
            .await
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Checks the login and password against the directory and returns the directory user.
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<User, LdapError> {
        if login.is_empty() || password.is_empty() {
            return Err(LdapError::Rejected("empty_credentials"));
        }
        let c = &self.config;
        let mut ldap = self.connect().await?;
        ldap.with_timeout(TIMEOUT)
            .simple_bind(&c.bind_dn, &c.bind_password)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(|e| LdapError::Unavailable(format!("the service account cannot bind: {e}")))?;
        let filter = c.user_filter.replace("{login}", &ldap_escape(login));
        let mut attributes = vec![
            c.username_attribute.as_str(),
            c.email_attribute.as_str(),
            c.name_attribute.as_str(),
            "memberOf",
            "entryUUID",
        ];
        attributes.dedup();
        let (entries, _) = ldap
            .with_timeout(TIMEOUT)
            .search(&c.user_base, Scope::Subtree, &filter, attributes)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let mut entries = entries.into_iter().map(SearchEntry::construct);
        let (Some(entry), None) = (entries.next(), entries.next()) else {
            // None, or several: never guess which person this is.
            return Err(LdapError::Rejected("unknown_account"));
        };
        let bound = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(&entry.dn, password)
            .await
            .map_err(unavailable)?;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Err(LdapError::Rejected("wrong_password")),
            _ => return Err(unavailable(bound)),
        }
        let groups = match &c.group_base {
            Some(base) => self.search_groups(&mut ldap, base, &entry.dn).await?,
            None => entry
                .attrs
                .get("memberOf")
                .map(|dns| dns.iter().filter_map(|dn| first_rdn_value(dn)).collect())
                .unwrap_or_default(),
        };
        let _ = ldap.unbind().await;
        self.resolve(&entry, groups).await
    }

    async fn search_groups(
        &self,
        ldap: &mut Ldap,
        base: &str,
        user_dn: &str,
    ) -> Result<Vec<String>, LdapError> {
        let c = &self.config;
        // The bind as the user may not see groups: search as the service account again.
        ldap.with_timeout(TIMEOUT)
            .simple_bind(&c.bind_dn, &c.bind_password)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let filter = c.group_filter.replace("{dn}", &ldap_escape(user_dn));
        let (entries, _) = ldap
            .with_timeout(TIMEOUT)
            .search(
                base,
                Scope::Subtree,
                &filter,
                vec![c.group_name_attribute.as_str()],
            )
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|g| {
                g.attrs
                    .get(&c.group_name_attribute)
                    .and_then(|v| v.first().cloned())
            })
            .collect())
    }

    async fn resolve(&self, entry: &SearchEntry, groups: Vec<String>) -> Result<User, LdapError> {
        let c = &self.config;
        let first = |name: &str| entry.attrs.get(name).and_then(|v| v.first()).cloned();
        // entryUUID survives renames; the DN is the fallback for directories without it.
        let subject = first("entryUUID").unwrap_or_else(|| entry.dn.clone());
        let claims = serde_json::json!({
            "sub": subject,
            "preferred_username": first(&c.username_attribute),
            "email": first(&c.email_attribute),
            "email_verified": true,
            "name": first(&c.name_attribute),
            "groups": groups,
        });
        let mapped = map_claims(&claims, &Preset::Generic.defaults())
            .map_err(|e| LdapError::Unavailable(format!("the LDAP entry cannot be mapped: {e}")))?;
        let source = IdentitySource {
            kind: "ldap",
            id: "ldap",
            link_by_email: false,
            trust_unverified_email: true,
            admin_groups: &c.admin_groups,
        };
        let issuer = format!("ldap:{}", c.url);
        let (user, _) = self
            .directory
            .resolve_identity(&source, &issuer, &mapped)
            .await?;
        Ok(user)
    }
}

/// `cn=ops,ou=groups,dc=example,dc=com` → `ops`.
fn first_rdn_value(dn: &str) -> Option<String> {
    let rdn = dn.split(',').next()?;
    let (_, value) = rdn.split_once('=')?;
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A TLS configuration that trusts only the given CA (a private directory CA).
fn tls_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, LdapError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| LdapError::Unavailable(format!("ldap.ca_file {}: {e}", ca_file.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            LdapError::Unavailable(format!("ldap.ca_file {}: {e}", ca_file.display()))
        })?;
        roots.add(cert).map_err(|e| {
            LdapError::Unavailable(format!("ldap.ca_file {}: {e}", ca_file.display()))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unavailable)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(
            first_rdn_value("cn=ops,ou=groups,dc=example,dc=com").as_deref(),
            Some("ops")
        );
        assert_eq!(first_rdn_value("nonsense"), None);
    }

    #[test]
    fn logins_are_escaped_for_filters() {
        assert_eq!(ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
    }
}
