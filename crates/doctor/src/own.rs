//! Rules about Portcullis's own configuration (pitfalls 21–28). Whatever makes Portcullis refuse to
//! start is check-config's job and arrives as one `PORTCULLIS-CONFIG` finding; these rules catch
//! configurations that start fine and then break something people notice. Some compare with the
//! app's settings (an Open WebUI env file given alongside).

use portcullis_core::config::{AppConfig, Config, host_allowed};
use portcullis_core::profile::ProfileName;
use regex::Regex;

use crate::inputs::Settings;
use crate::rules::{Finding, Severity};

pub struct OwnRule {
    pub id: &'static str,
    pub check: fn(&Config, &Settings) -> Vec<Finding>,
}

fn finding(
    rule: &'static str,
    severity: Severity,
    symptom: &str,
    why: String,
    fix: String,
    source: String,
) -> Finding {
    Finding {
        rule,
        severity,
        symptom: symptom.to_owned(),
        why,
        fix,
        source: Some(source),
    }
}

fn app_key(config: &Config, app: &AppConfig, field: &str) -> String {
    let i = config
        .apps
        .iter()
        .position(|a| std::ptr::eq(a, app))
        .unwrap_or_default();
    format!("apps[{i}] ({}).{field}", app.name)
}

/// Paths a skip-auth rule should never open: the app's root and its admin and API areas.
const SENSITIVE_PATHS: &[&str] = &[
    "/",
    "/admin",
    "/admin/users",
    "/api/v1/users",
    "/api/v1/chats",
];

/// The host of an absolute URL, lower case.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Some(host.to_ascii_lowercase())
}

/// The `rd=` of a sign-out URL, percent-decoded.
fn rd_of(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let raw = query.split('&').find_map(|p| p.strip_prefix("rd="))?;
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub const OWN_RULES: &[OwnRule] = &[
    OwnRule {
        id: "PCS-COOKIE-NOT-SECURE",
        check: |config, _| {
            let https = config.public_url().starts_with("https://");
            (https && config.cookie.secure == Some(false))
                .then(|| {
                    finding(
                        "PCS-COOKIE-NOT-SECURE",
                        Severity::Warning,
                        "the session cookie is also sent over plain http, where anyone on the path can copy it",
                        format!("public_url {} is https but cookie.secure = false", config.public_url()),
                        "remove cookie.secure (it defaults to true) — false is for plain-http development only".into(),
                        "cookie.secure".into(),
                    )
                })
                .into_iter()
                .collect()
        },
    },
    OwnRule {
        id: "PCS-NO-TRUSTED-PROXIES",
        check: |config, _| {
            // Portcullis serves plain http unless [tls] is set: an https public URL then means
            // TLS ends at something in front of it, whose X-Forwarded-* Portcullis ignores
            // until it is trusted.
            let behind_tls = config.public_url().starts_with("https://") && config.tls.is_none();
            (behind_tls && config.trusted_proxies.is_empty())
                .then(|| {
                    finding(
                        "PCS-NO-TRUSTED-PROXIES",
                        Severity::Warning,
                        "the audit log and rate limits see the load balancer's address for everyone, and apps are told the scheme is http",
                        "public_url is https, so a TLS-terminating proxy sits in front, but trusted_proxies is empty: its X-Forwarded-For/Proto are ignored".into(),
                        "set trusted_proxies to the load balancer's addresses (e.g. the VPC's subnets), never 0.0.0.0/0".into(),
                        "trusted_proxies".into(),
                    )
                })
                .into_iter()
                .collect()
        },
    },
    OwnRule {
        id: "PCS-NAME-IS-SUBJECT",
        check: |config, _| {
            let opaque = ["sub", "oid", "objectidentifier"];
            config
                .providers
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    [("name", &p.claims.name), ("username", &p.claims.username)]
                        .into_iter()
                        .filter_map(move |(field, claim)| {
                            let claim = claim.as_deref()?;
                            opaque.contains(&claim.to_ascii_lowercase().as_str()).then(|| {
                                finding(
                                    "PCS-NAME-IS-SUBJECT",
                                    Severity::Warning,
                                    "people see a GUID as their name in every app",
                                    format!("provider {:?} maps the {field} from {claim:?}, an opaque id", p.id),
                                    format!("remove claims.{field} (the default falls back to name, given_name + family_name, preferred_username, email), or name a claim that holds a real name"),
                                    format!("providers[{i}].claims.{field}"),
                                )
                            })
                        })
                })
                .collect()
        },
    },
    OwnRule {
        id: "PCS-OPENWEBUI-NO-ROLE",
        check: |config, settings| {
            let default_role = settings
                .value("DEFAULT_USER_ROLE")
                .map(|v| v.trim().to_ascii_lowercase());
            if matches!(default_role.as_deref(), Some("user" | "admin")) {
                return Vec::new();
            }
            let known_pending = settings.has_openwebui();
            config
                .apps
                .iter()
                .filter(|a| a.identity_headers.profile == ProfileName::Openwebui && a.identity_headers.role_header.is_none())
                .map(|app| {
                    finding(
                        "PCS-OPENWEBUI-NO-ROLE",
                        if known_pending { Severity::Error } else { Severity::Warning },
                        "new users see 'You do not have permission to access this resource' (pending) until an admin approves them",
                        format!(
                            "app {:?} sends no role header, so Open WebUI gives every new user its DEFAULT_USER_ROLE, which {}",
                            app.name,
                            if known_pending { "is pending here" } else { "defaults to pending" }
                        ),
                        "set identity_headers.role_header = \"X-Forwarded-Role\" and WEBUI_AUTH_TRUSTED_ROLE_HEADER=X-Forwarded-Role in Open WebUI (roles then follow Portcullis), or DEFAULT_USER_ROLE=user".into(),
                        app_key(config, app, "identity_headers"),
                    )
                })
                .collect()
        },
    },
    OwnRule {
        id: "PCS-SKIP-AUTH-BROAD",
        check: |config, _| {
            let mut out = Vec::new();
            for app in &config.apps {
                for (j, rule) in app.skip_auth.iter().enumerate() {
                    // Unanchored or invalid patterns are check-config errors already.
                    let Ok(re) = Regex::new(&rule.path) else {
                        continue;
                    };
                    let opened: Vec<&str> = SENSITIVE_PATHS
                        .iter()
                        .copied()
                        .filter(|p| re.is_match(p))
                        .collect();
                    if !opened.is_empty() {
                        out.push(finding(
                            "PCS-SKIP-AUTH-BROAD",
                            Severity::Error,
                            "anyone can reach pages of the app without signing in",
                            format!("{:?} also matches {}", rule.path, opened.join(", ")),
                            "anchor the pattern to the public part only and end it, e.g. ^/public/ or ^/health$".into(),
                            app_key(config, app, &format!("skip_auth[{j}].path")),
                        ));
                    }
                }
            }
            out
        },
    },
    OwnRule {
        id: "PCS-SIGN-OUT-REDIRECT-REFUSED",
        check: |config, settings| {
            let Some(url) = settings.get("WEBUI_AUTH_SIGNOUT_REDIRECT_URL") else {
                return Vec::new();
            };
            let ours = url.value.contains("/.portcullis/sign_out")
                || url.value.contains("/oauth2/sign_out");
            let Some(target) = rd_of(&url.value).filter(|_| ours) else {
                return Vec::new();
            };
            let Some(host) = host_of(&target) else {
                return Vec::new();
            };
            if host_allowed(&host, &config.redirect_hosts()) {
                return Vec::new();
            }
            vec![finding(
                "PCS-SIGN-OUT-REDIRECT-REFUSED",
                Severity::Warning,
                "after sign-out people land on Portcullis's home page instead of where the app sends them (e.g. the provider's logout)",
                format!(
                    "rd= points at {host}, which is not an app's host, Portcullis's own, or in allowed_redirect_hosts, so it is refused as an open redirect"
                ),
                format!("add \"{host}\" to allowed_redirect_hosts"),
                format!("WEBUI_AUTH_SIGNOUT_REDIRECT_URL ({})", url.source),
            )]
        },
    },
    OwnRule {
        id: "PCS-STREAM-TIMEOUT",
        check: |config, _| {
            const LLM_PAUSE: std::time::Duration = std::time::Duration::from_secs(60);
            config
                .apps
                .iter()
                .filter(|a| a.timeouts.idle < LLM_PAUSE || a.timeouts.response_header < LLM_PAUSE)
                .map(|app| {
                    finding(
                        "PCS-STREAM-TIMEOUT",
                        Severity::Warning,
                        "long answers stop mid-stream or fail with 504 while the model is still thinking",
                        format!(
                            "app {:?} waits {} s for response headers and {} s between bytes; models can be silent longer before the first token or between tool calls",
                            app.name,
                            app.timeouts.response_header.as_secs(),
                            app.timeouts.idle.as_secs()
                        ),
                        "leave timeouts.response_header and timeouts.idle at their defaults (5m) or raise them; they are idle limits, never a cap on the whole stream".into(),
                        app_key(config, app, "timeouts"),
                    )
                })
                .collect()
        },
    },
    OwnRule {
        id: "PCS-UPSTREAM-TLS-UNVERIFIED",
        check: |config, _| {
            config
                .apps
                .iter()
                .enumerate()
                .filter(|(_, app)| app.upstream_tls.as_ref().is_some_and(|t| t.insecure_skip_verify))
                .map(|(i, app)| {
                    finding(
                        "PCS-UPSTREAM-TLS-UNVERIFIED",
                        Severity::Warning,
                        "anyone between Portcullis and the app can read and change its traffic, identity headers and assertions included",
                        format!("app {} connects to {} over TLS without checking the certificate", app.name, app.upstream),
                        "set upstream_tls.ca to the CA that issued the app's certificate (and server_name if it names another host), then remove insecure_skip_verify".into(),
                        format!("apps[{i}].upstream_tls.insecure_skip_verify"),
                    )
                })
                .collect()
        },
    },
];

/// Every finding about Portcullis's own configuration.
pub fn check(config: &Config, settings: &Settings) -> Vec<Finding> {
    OWN_RULES
        .iter()
        .flat_map(|r| (r.check)(config, settings))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(rule: &str, toml_text: &str, env: &str) -> bool {
        let config: Config = toml::from_str(toml_text).unwrap();
        let mut settings = Settings::default();
        settings.read_env(env, "app.env");
        check(&config, &settings).iter().any(|f| f.rule == rule)
    }

    const APP: &str = "[[apps]]\nname = 'chat'\nupstream = 'http://127.0.0.1:8080'\n";

    /// Every rule with a configuration that trips it and one that does not.
    #[test]
    fn each_rule_has_a_failing_and_a_passing_fixture() {
        let https = "public_url = 'https://chat.example.com'\n";
        let proxies = "trusted_proxies = ['10.0.0.0/8']\n";
        let cases: Vec<(&str, String, String, &str)> = vec![
            ("PCS-COOKIE-NOT-SECURE", format!("{https}{proxies}[cookie]\nsecure = false\n"), format!("{https}{proxies}"), ""),
            ("PCS-NO-TRUSTED-PROXIES", https.into(), format!("{https}{proxies}"), ""),
            (
                "PCS-UPSTREAM-TLS-UNVERIFIED",
                "[[apps]]\nname = 'llm'\nupstream = 'https://llm.internal'\nupstream_tls = { insecure_skip_verify = true }\n".into(),
                "[[apps]]\nname = 'llm'\nupstream = 'https://llm.internal'\nupstream_tls = { ca = 'ca.pem' }\n".into(),
                "",
            ),
            (
                "PCS-NAME-IS-SUBJECT",
                "[[providers]]\nid='entra'\nissuer='https://login.example.com'\nclient_id='c'\nclient_secret='s'\nclaims = { name = 'oid' }\n".into(),
                "[[providers]]\nid='entra'\nissuer='https://login.example.com'\nclient_id='c'\nclient_secret='s'\nclaims = { name = 'name' }\n".into(),
                "",
            ),
            (
                "PCS-OPENWEBUI-NO-ROLE",
                format!("{APP}identity_headers = {{ profile = 'openwebui' }}\n"),
                format!("{APP}identity_headers = {{ profile = 'openwebui', role_header = 'X-Forwarded-Role' }}\n"),
                "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\n",
            ),
            (
                "PCS-SKIP-AUTH-BROAD",
                format!("{APP}skip_auth = [{{ methods = ['GET'], path = '^/.*' }}]\n"),
                format!("{APP}skip_auth = [{{ methods = ['GET'], path = '^/public/' }}]\n"),
                "",
            ),
            (
                "PCS-SIGN-OUT-REDIRECT-REFUSED",
                String::new(),
                "allowed_redirect_hosts = ['auth.example.com']\n".into(),
                "WEBUI_AUTH_SIGNOUT_REDIRECT_URL=https://gw/.portcullis/sign_out?rd=https%3A%2F%2Fauth.example.com%2Flogout\n",
            ),
            (
                "PCS-STREAM-TIMEOUT",
                format!("{APP}timeouts = {{ idle = '30s' }}\n"),
                format!("{APP}timeouts = {{ idle = '10m' }}\n"),
                "",
            ),
        ];
        assert_eq!(cases.len(), OWN_RULES.len(), "every rule has fixtures");
        for (rule, failing, passing, env) in &cases {
            assert!(
                fires(rule, failing, env),
                "{rule} should fire on:\n{failing}"
            );
            assert!(
                !fires(rule, passing, env),
                "{rule} should not fire on:\n{passing}"
            );
        }
    }

    #[test]
    fn portcullis_terminating_tls_itself_needs_no_trusted_proxies() {
        let own_tls =
            "public_url = 'https://chat.example.com'\n[tls]\ncert = 'c.pem'\nkey = 'k.pem'\n";
        assert!(!fires("PCS-NO-TRUSTED-PROXIES", own_tls, ""));
    }

    #[test]
    fn open_webui_default_role_user_settles_the_role_question() {
        let cfg = format!("{APP}identity_headers = {{ profile = 'openwebui' }}\n");
        assert!(!fires(
            "PCS-OPENWEBUI-NO-ROLE",
            &cfg,
            "DEFAULT_USER_ROLE=user\n"
        ));
    }

    #[test]
    fn rd_is_decoded() {
        assert_eq!(
            rd_of("https://g/x?a=1&rd=https%3A%2F%2Fh%2Fy").as_deref(),
            Some("https://h/y")
        );
        assert_eq!(rd_of("https://g/x?rd=%zz"), None);
        assert_eq!(rd_of("https://g/x?rd=%4").as_deref(), Some("%4"));
    }
}
