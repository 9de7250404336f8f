//! Where else identity can come from: a proxy in front (ALB, Cloudflare Access, IAP, plain
//! headers), bearer JWTs from other issuers, PocketBase tokens.

use ipnet::IpNet;
use serde::Deserialize;

use super::validate::{id_problem, valid_id};
use super::{Config, SUPPORTED_ID_TOKEN_ALGORITHMS, default_algorithms, is_secure_or_local};
use crate::claims::{ClaimMapping, Preset};

/// Which proxy in front establishes the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedIdentityKind {
    /// Plain headers (Tailscale Serve, an existing oauth2-proxy, any SSO proxy).
    Header,
    /// AWS Application Load Balancer OIDC: `x-amzn-oidc-data`, an ES256 JWT.
    AwsAlb,
    /// Cloudflare Access: `Cf-Access-Jwt-Assertion`, verified against the team's keys.
    CloudflareAccess,
    /// Google Cloud IAP: `x-goog-iap-jwt-assertion`.
    GoogleIap,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIdentityConfig {
    /// Short name for logs and linked identities (`outer:<id>`).
    pub id: String,
    pub kind: TrustedIdentityKind,
    /// Socket peer addresses allowed to assert identity: the proxy's own addresses. The socket
    /// peer, never `X-Forwarded-For`, is compared.
    pub from: Vec<IpNet>,
    /// Usernames or emails admitted through this source; empty: anyone it vouches for.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// `header`: the header naming the user (e.g. `Tailscale-User-Login`, `X-Forwarded-User`).
    #[serde(default)]
    pub user_header: Option<String>,
    #[serde(default)]
    pub email_header: Option<String>,
    #[serde(default)]
    pub name_header: Option<String>,
    /// Comma-separated group names.
    #[serde(default)]
    pub groups_header: Option<String>,
    /// `aws_alb`: the region (keys from `https://public-keys.auth.elb.<region>.amazonaws.com`).
    #[serde(default)]
    pub region: Option<String>,
    /// `aws_alb`: the load balancer's ARN; tokens signed by any other ALB are refused.
    #[serde(default)]
    pub signer: Option<String>,
    /// `cloudflare_access`: `<team>.cloudflareaccess.com`.
    #[serde(default)]
    pub team_domain: Option<String>,
    /// `cloudflare_access`: the application's AUD tag; `google_iap`: `/projects/…` audience.
    #[serde(default)]
    pub audience: Option<String>,
    /// Overrides where keys are fetched (tests, private mirrors).
    #[serde(default)]
    pub keys_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerIssuerConfig {
    /// Short name for logs and linked identities.
    pub id: String,
    /// The `iss` of accepted tokens.
    pub issuer: String,
    /// Accepted audiences, compared with `aud` (or `client_id`, which Cognito access tokens
    /// carry instead of `aud`). Required: a token minted for another app must not pass.
    pub audiences: Vec<String>,
    /// Where the issuer's keys are. Default: `<issuer>/.well-known/jwks.json`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    #[serde(default)]
    pub preset: Preset,
    #[serde(default)]
    pub claims: ClaimMapping,
    #[serde(default)]
    pub link_by_email: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PocketBaseConfig {
    pub id: String,
    /// PocketBase's base URL, e.g. `http://127.0.0.1:8090`.
    pub url: String,
    /// The auth collection whose tokens are accepted.
    #[serde(default = "default_pocketbase_collection")]
    pub collection: String,
    #[serde(default)]
    pub link_by_email: bool,
}

/// Sign-in against an LDAP directory (OpenLDAP, Active Directory, FreeIPA…) with the same form as
/// local accounts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls = true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before sending any password.
    #[serde(default)]
    pub starttls: bool,
    /// A CA certificate (PEM) to trust instead of the system's, for a private directory CA.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The service account that searches for users.
    pub bind_dn: String,
    pub bind_password: String,
    pub user_base: String,
    /// `{login}` is replaced by the escaped login name.
    #[serde(default = "default_ldap_user_filter")]
    pub user_filter: String,
    #[serde(default = "default_ldap_username")]
    pub username_attribute: String,
    #[serde(default = "default_ldap_email")]
    pub email_attribute: String,
    #[serde(default = "default_ldap_name")]
    pub name_attribute: String,
    /// Search groups under this base (`group_filter`); unset: read the user's `memberOf`.
    #[serde(default)]
    pub group_base: Option<String>,
    /// `{dn}` is replaced by the escaped user DN.
    #[serde(default = "default_ldap_group_filter")]
    pub group_filter: String,
    #[serde(default = "default_ldap_name_attr")]
    pub group_name_attribute: String,
    /// Members of these groups get the admin role (checked at every sign-in).
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Plain `ldap://` without StartTLS sends passwords in the clear: only with this set.
    #[serde(default)]
    pub allow_insecure: bool,
}

fn default_ldap_user_filter() -> String {
    "(&(objectClass=person)(|(uid={login})(mail={login})))".into()
}
fn default_ldap_username() -> String {
    "uid".into()
}
fn default_ldap_email() -> String {
    "mail".into()
}
fn default_ldap_name() -> String {
    "cn".into()
}
fn default_ldap_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn}))".into()
}
fn default_ldap_name_attr() -> String {
    "cn".into()
}

fn default_pocketbase_collection() -> String {
    "users".into()
}

/// Checks the external identity sources; problems are reported through `push(key, message)`.
pub(super) fn validate(config: &Config, push: &mut impl FnMut(String, String)) {
    let mut ids = std::collections::BTreeSet::new();
    let mut id_ok = |key: String, id: &str, push: &mut dyn FnMut(String, String)| {
        if let Some(problem) = id_problem(id, &mut ids, "names two identity sources") {
            push(key, problem);
        }
    };
    for (i, t) in config.trusted_identity.iter().enumerate() {
        let key = |field: &str| format!("trusted_identity[{i}].{field}");
        id_ok(key("id"), &t.id, push);
        if t.from.is_empty() {
            push(
                key("from"),
                "list the proxy's addresses: identity is believed only from them".into(),
            );
        }
        if t.from.iter().any(|n| n.prefix_len() == 0) {
            push(
                key("from"),
                "trusts every address, so anyone could sign in as anyone; list the proxy's addresses".into(),
            );
        }
        let mut require = |field: &str, value: &Option<String>, why: &str| {
            if value.as_deref().is_none_or(str::is_empty) {
                push(
                    key(field),
                    format!("is required for kind = {:?}: {why}", t.kind),
                );
            }
        };
        match t.kind {
            TrustedIdentityKind::Header => {
                require(
                    "user_header",
                    &t.user_header,
                    "the header that names the user",
                );
            }
            TrustedIdentityKind::AwsAlb => {
                if t.region.is_none() && t.keys_url.is_none() {
                    require(
                        "region",
                        &t.region,
                        "the ALB's keys are published per region",
                    );
                }
            }
            TrustedIdentityKind::CloudflareAccess => {
                require(
                    "team_domain",
                    &t.team_domain,
                    "e.g. myteam.cloudflareaccess.com",
                );
                require("audience", &t.audience, "the Access application's AUD tag");
            }
            TrustedIdentityKind::GoogleIap => {
                require(
                    "audience",
                    &t.audience,
                    "/projects/<number>/global/backendServices/<id>",
                );
            }
        }
    }
    for (i, b) in config.bearer_tokens.iter().enumerate() {
        let key = |field: &str| format!("bearer_tokens[{i}].{field}");
        id_ok(key("id"), &b.id, push);
        if !is_secure_or_local(&b.issuer) {
            push(
                key("issuer"),
                format!("{:?} must be an https URL", b.issuer),
            );
        }
        if b.audiences.iter().all(|a| a.trim().is_empty()) {
            push(
                key("audiences"),
                "list the audiences (or Cognito client ids) tokens must be minted for".into(),
            );
        }
        for alg in &b.allowed_algorithms {
            if !SUPPORTED_ID_TOKEN_ALGORITHMS.contains(&alg.as_str()) {
                push(
                    key("allowed_algorithms"),
                    format!(
                        "{alg:?} is not allowed; use some of {SUPPORTED_ID_TOKEN_ALGORITHMS:?}"
                    ),
                );
            }
        }
    }
    if let Some(l) = &config.ldap {
        let key = |field: &str| format!("ldap.{field}");
        let secure = l.url.starts_with("ldaps://") || (l.url.starts_with("ldap://") && l.starttls);
        if !(l.url.starts_with("ldap://") || l.url.starts_with("ldaps://")) {
            push(
                key("url"),
                format!("{:?} must start with ldap:// or ldaps://", l.url),
            );
        } else if !secure && !l.allow_insecure {
            push(
                key("starttls"),
                "ldap:// without StartTLS would send passwords in the clear; use ldaps://, set starttls = true, or allow_insecure = true for a local test directory".into(),
            );
        }
        if !l.user_filter.contains("{login}") {
            push(key("user_filter"), "must contain {login}".into());
        }
        if l.group_base.is_some() && !l.group_filter.contains("{dn}") {
            push(key("group_filter"), "must contain {dn}".into());
        }
    }
    for (i, p) in config.pocketbase.iter().enumerate() {
        let key = |field: &str| format!("pocketbase[{i}].{field}");
        id_ok(key("id"), &p.id, push);
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            push(key("url"), format!("{:?} must be an http(s) URL", p.url));
        }
        if !valid_id(&p.collection) {
            push(
                key("collection"),
                format!("{:?} is not a collection name", p.collection),
            );
        }
    }
}
