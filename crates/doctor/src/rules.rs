//! The catalog: each rule has a stable id, and each finding says what the person sees, why, and
//! the exact fix (../shared/reference/pitfalls.md, checked against Open WebUI's and oauth2-proxy's
//! code). Rules read [`Settings`] gathered from every file given, so they can see mismatches
//! between the proxy and the app.

use serde::Serialize;

use crate::inputs::Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// What breaks, as the person sees it.
    pub symptom: String,
    pub why: String,
    pub fix: String,
    /// Where the setting came from.
    pub source: Option<String>,
}

pub struct Rule {
    pub id: &'static str,
    pub check: fn(&Settings) -> Option<Finding>,
}

fn finding(
    rule: &'static str,
    severity: Severity,
    symptom: &str,
    why: &str,
    fix: &str,
    source: Option<String>,
) -> Option<Finding> {
    Some(Finding {
        rule,
        severity,
        symptom: symptom.to_owned(),
        why: why.to_owned(),
        fix: fix.to_owned(),
        source,
    })
}

fn source(s: &Settings, name: &str) -> Option<String> {
    s.get(name)
        .map(|v| format!("{name}={} ({})", v.value, v.source))
}

fn trusted_headers(s: &Settings) -> bool {
    s.get("WEBUI_AUTH_TRUSTED_EMAIL_HEADER").is_some()
}

/// The identity headers the proxy in front sends to the app, when doctor can tell: oauth2-proxy's
/// from its settings, else Portcullis's from its own configuration.
fn proxy_sends(s: &Settings) -> Option<Vec<&str>> {
    if !s.has_oauth2_proxy() {
        return s
            .gateway_headers()
            .map(|headers| headers.iter().map(String::as_str).collect());
    }
    let pass_user_headers = s
        .value("OAUTH2_PROXY_PASS_USER_HEADERS")
        .is_none_or(|_| s.truthy("OAUTH2_PROXY_PASS_USER_HEADERS"));
    let mut sent = Vec::new();
    if pass_user_headers {
        sent.push("x-forwarded-user");
        sent.push("x-forwarded-preferred-username");
        sent.push("x-forwarded-groups");
        if !s.truthy("OAUTH2_PROXY_PREFER_EMAIL_TO_USER") {
            sent.push("x-forwarded-email");
        }
    }
    // X-Auth-Request-* are response headers for nginx's auth_request; in front of an upstream
    // (oauth2-proxy as the reverse proxy) the app never sees them.
    let reverse_proxy = s
        .value("OAUTH2_PROXY_UPSTREAMS")
        .is_some_and(|u| u.split(',').any(|u| u.trim().starts_with("http")));
    if s.truthy("OAUTH2_PROXY_SET_XAUTHREQUEST") && !reverse_proxy {
        sent.extend([
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-groups",
        ]);
    }
    Some(sent)
}

/// Variables found in deployments (the seeds among them) that Open WebUI never reads.
const FOLKLORE_SETTINGS: &[&str] = &[
    "WEBUI_AUTH_TYPE",
    "WEBUI_AUTH_TRUSTED_HEADER",
    "ENABLE_TRUSTED_HEADER_AUTH",
    "WEBUI_AUTH_TRUSTED_USERNAME_HEADER",
];

pub const RULES: &[Rule] = &[
    Rule {
        id: "OWUI-DEFAULT-ROLE-PENDING",
        check: |s| {
            let role = s.value("DEFAULT_USER_ROLE").unwrap_or("pending");
            (trusted_headers(s) && role.eq_ignore_ascii_case("pending") && s.get("WEBUI_AUTH_TRUSTED_ROLE_HEADER").is_none())
                .then(|| finding(
                    "OWUI-DEFAULT-ROLE-PENDING",
                    Severity::Error,
                    "every new user after the first sees \"You do not have permission to access this resource\"",
                    "Open WebUI gives users it creates from trusted headers DEFAULT_USER_ROLE, which defaults to pending; pending users get 401 on every chat API",
                    "set DEFAULT_USER_ROLE=user, or send the role from the gateway (WEBUI_AUTH_TRUSTED_ROLE_HEADER=X-Forwarded-Role with Portcullis's role_header)",
                    source(s, "DEFAULT_USER_ROLE"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-PERSISTENT-CONFIG",
        check: |s| {
            (s.has_openwebui() && !s.value("ENABLE_PERSISTENT_CONFIG").is_some_and(|v| v.eq_ignore_ascii_case("false")))
                .then(|| finding(
                    "OWUI-PERSISTENT-CONFIG",
                    Severity::Info,
                    "a changed setting has no effect (\"it only works on a fresh deploy\")",
                    "Open WebUI stores its configuration in its database at the first start and reads these variables only on a fresh database",
                    "set ENABLE_PERSISTENT_CONFIG=false while you are still changing settings, or change them in the admin panel",
                    None,
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-NAME-IS-SUBJECT",
        check: |s| {
            let name = s.value("WEBUI_AUTH_TRUSTED_NAME_HEADER")?;
            (s.has_oauth2_proxy() && name.eq_ignore_ascii_case("x-forwarded-user"))
                .then(|| finding(
                    "OWUI-NAME-IS-SUBJECT",
                    Severity::Error,
                    "users' names show as GUIDs, and stay that way",
                    "oauth2-proxy's X-Forwarded-User is always the token's sub (a UUID for Cognito and Entra), whatever --user-id-claim says; Open WebUI takes the name only when it creates the user",
                    "send a real name: Portcullis's openwebui profile puts the display name in X-Forwarded-User; already-created users must be renamed in Open WebUI",
                    source(s, "WEBUI_AUTH_TRUSTED_NAME_HEADER"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-NAME-IS-EMAIL",
        check: |s| {
            let name = s.value("WEBUI_AUTH_TRUSTED_NAME_HEADER")?;
            let email = s.value("WEBUI_AUTH_TRUSTED_EMAIL_HEADER")?;
            name.eq_ignore_ascii_case(email)
                .then(|| finding(
                    "OWUI-NAME-IS-EMAIL",
                    Severity::Info,
                    "people see their email address as their name",
                    "the name header is the email header (the usual workaround for oauth2-proxy sending the subject); Open WebUI keeps the first name it sees",
                    "behind Portcullis point WEBUI_AUTH_TRUSTED_NAME_HEADER at X-Forwarded-User, which carries the display name; rename existing users in Open WebUI",
                    source(s, "WEBUI_AUTH_TRUSTED_NAME_HEADER"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-UNREAD-SETTING",
        check: |s| {
            let unread: Vec<String> = FOLKLORE_SETTINGS
                .iter()
                .filter_map(|name| s.get(name).map(|v| format!("{name} ({})", v.source)))
                .collect();
            (!unread.is_empty())
                .then(|| finding(
                    "OWUI-UNREAD-SETTING",
                    Severity::Info,
                    "changing these settings changes nothing",
                    "Open WebUI does not read them (checked against 0.12.4); trusted-header sign-in is on whenever WEBUI_AUTH_TRUSTED_EMAIL_HEADER is set",
                    "remove them, so nobody debugs them again",
                    Some(unread.join(", ")),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-HEADER-MISMATCH",
        check: |s| {
            let wanted = s
                .value("WEBUI_AUTH_TRUSTED_EMAIL_HEADER")?
                .to_ascii_lowercase();
            let sent = proxy_sends(s)?;
            (!sent.contains(&wanted.as_str()))
                .then(|| finding(
                    "OWUI-HEADER-MISMATCH",
                    Severity::Error,
                    "sign-in fails with 400 \"Your provider has not provided a trusted header\"",
                    "Open WebUI reads its email from a header the proxy in front does not send (oauth2-proxy sends X-Forwarded-* to upstreams, X-Auth-Request-* only in nginx auth_request answers, and no X-Forwarded-Email with prefer-email-to-user)",
                    "make WEBUI_AUTH_TRUSTED_EMAIL_HEADER name a header the proxy sends (X-Forwarded-Email with Portcullis's openwebui profile)",
                    source(s, "WEBUI_AUTH_TRUSTED_EMAIL_HEADER"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-PASSWORD-AUTH-OFF",
        check: |s| {
            (trusted_headers(s) && s.value("ENABLE_PASSWORD_AUTH").is_some_and(|v| v.eq_ignore_ascii_case("false")))
                .then(|| finding(
                    "OWUI-PASSWORD-AUTH-OFF",
                    Severity::Error,
                    "trusted-header sign-in is refused with 403",
                    "ENABLE_PASSWORD_AUTH=false blocks the sign-in endpoint that the trusted-header sign-in also uses",
                    "remove ENABLE_PASSWORD_AUTH=false; people cannot use passwords anyway when Portcullis is in front",
                    source(s, "ENABLE_PASSWORD_AUTH"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-EMPTY-SECRET",
        check: |s| {
            (s.value("WEBUI_AUTH").is_some_and(|v| v.eq_ignore_ascii_case("false")) && s.value("WEBUI_SECRET_KEY").is_none_or(str::is_empty))
                .then(|| finding(
                    "OWUI-EMPTY-SECRET",
                    Severity::Error,
                    "anyone can forge an Open WebUI session (security)",
                    "with WEBUI_AUTH=false and no WEBUI_SECRET_KEY, Open WebUI signs its JWTs with an empty secret",
                    "set WEBUI_SECRET_KEY to a long random value (and drop WEBUI_AUTH=false: since 0.8.0 trusted headers work with WEBUI_AUTH left alone)",
                    source(s, "WEBUI_AUTH"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-SIGNOUT-LOOP",
        check: |s| {
            (trusted_headers(s) && s.value("WEBUI_AUTH_SIGNOUT_REDIRECT_URL").is_none_or(str::is_empty))
                .then(|| finding(
                    "OWUI-SIGNOUT-LOOP",
                    Severity::Error,
                    "sign-out signs the user straight back in",
                    "without WEBUI_AUTH_SIGNOUT_REDIRECT_URL Open WebUI's sign-out goes to /auth, which in trusted-header mode signs the user in again from the headers",
                    "set WEBUI_AUTH_SIGNOUT_REDIRECT_URL=https://<gateway>/.portcullis/sign_out (Portcullis chains the provider's logout)",
                    None,
                ))
                .flatten()
        },
    },
    Rule {
        // Open WebUI's socket/main.py passes CORS_ALLOW_ORIGIN (split on `;`) to python-socketio
        // as cors_allowed_origins: socket.io refuses a handshake whose Origin is not listed, and
        // chat answers arrive over socket.io (API streaming does not, so it keeps working).
        id: "OWUI-CORS-ORIGIN",
        check: |s| {
            let allowed = s.value("CORS_ALLOW_ORIGIN")?;
            let listed: Vec<String> = allowed
                .split(';')
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect();
            if listed.is_empty() || listed.iter().any(|o| o == "*") {
                return None;
            }
            let public = s.public_origins();
            let missing: Vec<&String> = public.iter().filter(|o| !listed.contains(o)).collect();
            if public.is_empty() || missing.is_empty() {
                return None;
            }
            let missing: Vec<&str> = missing.iter().map(|o| o.as_str()).collect();
            finding(
                "OWUI-CORS-ORIGIN",
                Severity::Error,
                "chat answers stay empty in the browser (the model answers, the API streams, but nothing appears), and the page reconnects over and over",
                &format!(
                    "Open WebUI gives CORS_ALLOW_ORIGIN to socket.io as its allowed origins, and socket.io refuses the browser's connection from {}: it is not listed",
                    missing.join(", ")
                ),
                &format!(
                    "add the public origin to CORS_ALLOW_ORIGIN (origins separated by ';'): CORS_ALLOW_ORIGIN={};{}",
                    allowed.trim().trim_end_matches(';'),
                    missing.join(";")
                ),
                source(s, "CORS_ALLOW_ORIGIN"),
            )
        },
    },
    Rule {
        id: "OWUI-SCIM-WITH-TRUSTED-HEADERS",
        check: |s| {
            // Open WebUI reads ENABLE_SCIM, falling back to SCIM_ENABLED when it is unset.
            let name = if s.get("ENABLE_SCIM").is_some() {
                "ENABLE_SCIM"
            } else {
                "SCIM_ENABLED"
            };
            (trusted_headers(s) && s.truthy(name))
                .then(|| finding(
                    "OWUI-SCIM-WITH-TRUSTED-HEADERS",
                    Severity::Warning,
                    "users provisioned by SCIM get 400 when they sign in",
                    "Open WebUI's SCIM creates users without an auth row, which the trusted-header sign-in needs",
                    "provision with Portcullis's openwebui sink (POST /api/v1/auths/add) instead of Open WebUI's SCIM",
                    source(s, name),
                ))
                .flatten()
        },
    },
    Rule {
        id: "OWUI-GROUPS-HEADER-REMOVES",
        check: |s| {
            s.get("WEBUI_AUTH_TRUSTED_GROUPS_HEADER").and_then(|_| finding(
                "OWUI-GROUPS-HEADER-REMOVES",
                Severity::Info,
                "hand-assigned Open WebUI groups disappear at the next sign-in",
                "with a groups header Open WebUI removes users from every group not in it (and never creates groups)",
                "manage those groups in the directory (Portcullis sends them), or drop the groups header",
                source(s, "WEBUI_AUTH_TRUSTED_GROUPS_HEADER"),
            ))
        },
    },
    Rule {
        id: "O2P-PREFER-EMAIL-TO-USER",
        check: |s| {
            s.truthy("OAUTH2_PROXY_PREFER_EMAIL_TO_USER").then(|| finding(
                "O2P-PREFER-EMAIL-TO-USER",
                Severity::Error,
                "an app keyed on X-Forwarded-Email rejects everyone",
                "prefer-email-to-user puts the email in X-Forwarded-User and stops sending X-Forwarded-Email",
                "remove prefer-email-to-user; with Portcullis, choose header names explicitly with a profile",
                source(s, "OAUTH2_PROXY_PREFER_EMAIL_TO_USER"),
            )).flatten()
        },
    },
    Rule {
        id: "O2P-USER-ID-CLAIM-IGNORED",
        check: |s| {
            s.get("OAUTH2_PROXY_USER_ID_CLAIM").and_then(|_| finding(
                "O2P-USER-ID-CLAIM-IGNORED",
                Severity::Warning,
                "X-Forwarded-User is still the GUID",
                "oauth2-proxy always puts the token's sub in X-Forwarded-User; user-id-claim is copied into the email claim instead (oauth2-proxy #3165)",
                "map the claims explicitly in Portcullis (claims.username, claims.name)",
                source(s, "OAUTH2_PROXY_USER_ID_CLAIM"),
            ))
        },
    },
    Rule {
        id: "O2P-AUTHORIZATION-CLOBBERED",
        check: |s| {
            let name = [
                "OAUTH2_PROXY_SET_AUTHORIZATION_HEADER",
                "OAUTH2_PROXY_PASS_AUTHORIZATION_HEADER",
            ]
            .into_iter()
            .find(|n| s.truthy(n))?;
            finding(
                "O2P-AUTHORIZATION-CLOBBERED",
                Severity::Error,
                "API calls fail with 401 after sign-in",
                "the ID token replaces the app's own Authorization header (Open WebUI keeps its token there)",
                "turn it off; Portcullis never touches a bearer token that is not its own",
                source(s, name),
            )
        },
    },
    Rule {
        id: "O2P-SKIP-AUTH-UNANCHORED",
        check: |s| {
            let routes = s.value("OAUTH2_PROXY_SKIP_AUTH_ROUTES")?;
            let unanchored = routes.split(',').any(|r| {
                let regex = r.rsplit_once('=').map_or(r, |(_, re)| re);
                !regex.trim().starts_with('^')
            });
            unanchored.then(|| finding(
                "O2P-SKIP-AUTH-UNANCHORED",
                Severity::Error,
                "pages meant to be private are public",
                "an unanchored skip-auth regex matches anywhere in the path (/admin/public/… too)",
                "anchor every route with ^ (Portcullis refuses unanchored skip_auth rules)",
                source(s, "OAUTH2_PROXY_SKIP_AUTH_ROUTES"),
            )).flatten()
        },
    },
    Rule {
        id: "O2P-SKIP-AUTH-SIGNUP",
        check: |s| {
            let routes = s.value("OAUTH2_PROXY_SKIP_AUTH_ROUTES")?;
            let opens_signup = routes.split(',').any(|r| {
                let regex = r.split_once('=').map_or(r, |(_, re)| re).trim();
                regex::Regex::new(regex).is_ok_and(|re| re.is_match("/api/v1/auths/signup"))
            });
            (opens_signup && s.truthy("ENABLE_SIGNUP"))
                .then(|| finding(
                    "O2P-SKIP-AUTH-SIGNUP",
                    Severity::Error,
                    "anyone on the internet can create an account in the app",
                    "a skip-auth route lets /api/v1/auths/signup through without signing in, and ENABLE_SIGNUP=true accepts it",
                    "set ENABLE_SIGNUP=false (users come from the identity provider) and narrow the skip-auth routes",
                    source(s, "OAUTH2_PROXY_SKIP_AUTH_ROUTES"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "O2P-COOKIE-SPLIT",
        check: |s| {
            let cookie_sessions = s
                .value("OAUTH2_PROXY_SESSION_STORE_TYPE")
                .is_none_or(|t| t.eq_ignore_ascii_case("cookie"));
            let big = [
                "OAUTH2_PROXY_PASS_ACCESS_TOKEN",
                "OAUTH2_PROXY_SET_AUTHORIZATION_HEADER",
                "OAUTH2_PROXY_PASS_AUTHORIZATION_HEADER",
            ]
            .iter()
            .find(|name| s.truthy(name))
            .copied()
            .or_else(|| {
                s.value("OAUTH2_PROXY_PROVIDER")
                    .is_some_and(|p| {
                        matches!(
                            p.to_ascii_lowercase().as_str(),
                            "azure" | "entra-id" | "keycloak-oidc" | "adfs"
                        )
                    })
                    .then_some("OAUTH2_PROXY_PROVIDER")
            })?;
            (s.has_oauth2_proxy() && cookie_sessions)
                .then(|| finding(
                    "O2P-COOKIE-SPLIT",
                    Severity::Warning,
                    "sign-in loops or 431 Request Header Fields Too Large for some users (those in many groups)",
                    "the whole session (tokens included) lives in the cookie; past 4 KB it is split into _oauth2_proxy_0, _1…, nginx auth_request passes only the first Set-Cookie, and large headers are refused",
                    "keep sessions server-side: Portcullis's cookie carries only an opaque id (or SESSION_STORE_TYPE=redis)",
                    source(s, big),
                ))
                .flatten()
        },
    },
    Rule {
        id: "O2P-UPSTREAM-TIMEOUT",
        check: |s| {
            (s.has_oauth2_proxy() && s.get("OAUTH2_PROXY_UPSTREAM_TIMEOUT").is_none())
                .then(|| finding(
                    "O2P-UPSTREAM-TIMEOUT",
                    Severity::Warning,
                    "long model answers stop with 502 after 30 seconds",
                    "oauth2-proxy's upstream timeout defaults to 30 s, a total limit",
                    "raise --upstream-timeout; Portcullis's timeouts are idle timeouts, so a stream that keeps sending lives",
                    None,
                ))
                .flatten()
        },
    },
    Rule {
        id: "O2P-REVERSE-PROXY-TRUSTS-ALL",
        check: |s| {
            (s.truthy("OAUTH2_PROXY_REVERSE_PROXY") && s.get("OAUTH2_PROXY_TRUSTED_PROXY_IPS").is_none() && s.get("OAUTH2_PROXY_TRUSTED_PROXY_IP").is_none())
                .then(|| finding(
                    "O2P-REVERSE-PROXY-TRUSTS-ALL",
                    Severity::Error,
                    "anyone can spoof X-Forwarded-* (including X-Forwarded-Uri for forward-auth: a known bypass)",
                    "--reverse-proxy without trusted proxy addresses believes forwarding headers from every client",
                    "list the proxy's addresses (Portcullis: trusted_proxies)",
                    source(s, "OAUTH2_PROXY_REVERSE_PROXY"),
                ))
                .flatten()
        },
    },
    Rule {
        id: "O2P-SIGN-OUT-WITHOUT-IDP",
        check: |s| {
            let url = s.value("WEBUI_AUTH_SIGNOUT_REDIRECT_URL")?;
            (url.contains("/oauth2/sign_out") && !url.contains("rd="))
                .then(|| finding(
                    "O2P-SIGN-OUT-WITHOUT-IDP",
                    Severity::Warning,
                    "sign-out signs the user back in through the identity provider",
                    "/oauth2/sign_out without rd= ends only the proxy's cookie; the provider's session remains",
                    "chain the provider's logout (rd=…/logout?client_id=…&logout_uri=… for Cognito); Portcullis's sign-out does it from the provider configuration",
                    source(s, "WEBUI_AUTH_SIGNOUT_REDIRECT_URL"),
                ))
                .flatten()
        },
    },
];

/// The order reports use: errors first, then by rule id.
pub fn most_severe_first(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(b.rule)));
}

/// Every finding for these settings, the most severe first.
pub fn check(settings: &Settings) -> Vec<Finding> {
    let mut findings: Vec<Finding> = RULES.iter().filter_map(|r| (r.check)(settings)).collect();
    most_severe_first(&mut findings);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(env: &str) -> Settings {
        let mut s = Settings::default();
        s.read_env(env, "test.env");
        s
    }

    fn fires(rule: &str, env: &str) -> bool {
        check(&settings(env)).iter().any(|f| f.rule == rule)
    }

    const TRUSTED: &str = "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\nWEBUI_AUTH_SIGNOUT_REDIRECT_URL=https://gw/.portcullis/sign_out\n";

    /// Every rule with a configuration that trips it and one that does not.
    #[test]
    fn each_rule_has_a_failing_and_a_passing_fixture() {
        let cases: &[(&str, String, String)] = &[
            ("OWUI-DEFAULT-ROLE-PENDING", TRUSTED.into(), format!("{TRUSTED}DEFAULT_USER_ROLE=user\n")),
            ("OWUI-PERSISTENT-CONFIG", TRUSTED.into(), format!("{TRUSTED}ENABLE_PERSISTENT_CONFIG=false\n")),
            (
                "OWUI-NAME-IS-SUBJECT",
                "WEBUI_AUTH_TRUSTED_NAME_HEADER=X-Forwarded-User\nOAUTH2_PROXY_PASS_USER_HEADERS=true\n".into(),
                "WEBUI_AUTH_TRUSTED_NAME_HEADER=X-Forwarded-User\n".into(),
            ),
            (
                "OWUI-HEADER-MISMATCH",
                // X-Auth-Request-* go to nginx, never to oauth2-proxy's own upstream (pitfall 15).
                "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Auth-Request-Email\nOAUTH2_PROXY_SET_XAUTHREQUEST=true\nOAUTH2_PROXY_UPSTREAMS=http://owui:8080\n".into(),
                "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\nOAUTH2_PROXY_PASS_USER_HEADERS=true\n".into(),
            ),
            (
                "OWUI-NAME-IS-EMAIL",
                "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\nWEBUI_AUTH_TRUSTED_NAME_HEADER=x-forwarded-email\n".into(),
                "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\nWEBUI_AUTH_TRUSTED_NAME_HEADER=X-Forwarded-User\n".into(),
            ),
            ("OWUI-UNREAD-SETTING", format!("{TRUSTED}WEBUI_AUTH_TYPE=trusted-header\n"), TRUSTED.into()),
            ("OWUI-PASSWORD-AUTH-OFF", format!("{TRUSTED}ENABLE_PASSWORD_AUTH=false\n"), format!("{TRUSTED}ENABLE_PASSWORD_AUTH=true\n")),
            ("OWUI-EMPTY-SECRET", "WEBUI_AUTH=false\n".into(), "WEBUI_AUTH=false\nWEBUI_SECRET_KEY=long-random\n".into()),
            ("OWUI-SIGNOUT-LOOP", "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\n".into(), TRUSTED.into()),
            (
                "OWUI-CORS-ORIGIN",
                "WEBUI_URL=https://chat.example.com\nCORS_ALLOW_ORIGIN=http://localhost:5173\n".into(),
                "WEBUI_URL=https://chat.example.com\nCORS_ALLOW_ORIGIN=http://localhost:5173;https://chat.example.com/\n".into(),
            ),
            ("OWUI-SCIM-WITH-TRUSTED-HEADERS", format!("{TRUSTED}ENABLE_SCIM=true\n"), TRUSTED.into()),
            ("OWUI-GROUPS-HEADER-REMOVES", format!("{TRUSTED}WEBUI_AUTH_TRUSTED_GROUPS_HEADER=X-Forwarded-Groups\n"), TRUSTED.into()),
            ("O2P-PREFER-EMAIL-TO-USER", "OAUTH2_PROXY_PREFER_EMAIL_TO_USER=true\n".into(), "OAUTH2_PROXY_PREFER_EMAIL_TO_USER=false\n".into()),
            ("O2P-USER-ID-CLAIM-IGNORED", "OAUTH2_PROXY_USER_ID_CLAIM=email\n".into(), "OAUTH2_PROXY_EMAIL_DOMAINS=*\n".into()),
            ("O2P-AUTHORIZATION-CLOBBERED", "OAUTH2_PROXY_SET_AUTHORIZATION_HEADER=true\n".into(), "OAUTH2_PROXY_SET_AUTHORIZATION_HEADER=false\n".into()),
            ("O2P-SKIP-AUTH-UNANCHORED", "OAUTH2_PROXY_SKIP_AUTH_ROUTES=GET=/public\n".into(), "OAUTH2_PROXY_SKIP_AUTH_ROUTES=GET=^/public/\n".into()),
            (
                "O2P-SKIP-AUTH-SIGNUP",
                "OAUTH2_PROXY_SKIP_AUTH_ROUTES=POST=^/api/v1/auths/\nENABLE_SIGNUP=true\n".into(),
                "OAUTH2_PROXY_SKIP_AUTH_ROUTES=POST=^/api/v1/auths/\nENABLE_SIGNUP=false\n".into(),
            ),
            (
                "O2P-COOKIE-SPLIT",
                "OAUTH2_PROXY_PROVIDER=entra-id\n".into(),
                "OAUTH2_PROXY_PROVIDER=entra-id\nOAUTH2_PROXY_SESSION_STORE_TYPE=redis\n".into(),
            ),
            ("O2P-UPSTREAM-TIMEOUT", "OAUTH2_PROXY_EMAIL_DOMAINS=*\n".into(), "OAUTH2_PROXY_UPSTREAM_TIMEOUT=10m\n".into()),
            ("O2P-REVERSE-PROXY-TRUSTS-ALL", "OAUTH2_PROXY_REVERSE_PROXY=true\n".into(), "OAUTH2_PROXY_REVERSE_PROXY=true\nOAUTH2_PROXY_TRUSTED_PROXY_IPS=10.0.0.0/8\n".into()),
            ("O2P-SIGN-OUT-WITHOUT-IDP", "WEBUI_AUTH_SIGNOUT_REDIRECT_URL=/oauth2/sign_out\n".into(), "WEBUI_AUTH_SIGNOUT_REDIRECT_URL=/oauth2/sign_out?rd=https%3A%2F%2Fidp%2Flogout\n".into()),
        ];
        assert_eq!(cases.len(), RULES.len(), "every rule has fixtures");
        for (rule, failing, passing) in cases {
            assert!(fires(rule, failing), "{rule} should fire on:\n{failing}");
            assert!(
                !fires(rule, passing),
                "{rule} should not fire on:\n{passing}"
            );
        }
    }

    #[test]
    fn portcullis_headers_are_checked_against_the_app() {
        let mut s = settings("WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Auth-Request-Email\n");
        s.set_gateway_headers(vec!["X-Forwarded-Email".into(), "X-Forwarded-User".into()]);
        assert!(check(&s).iter().any(|f| f.rule == "OWUI-HEADER-MISMATCH"));
        let mut s = settings("WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\n");
        s.set_gateway_headers(vec!["X-Forwarded-Email".into()]);
        assert!(!check(&s).iter().any(|f| f.rule == "OWUI-HEADER-MISMATCH"));
    }

    /// Pitfall 15: in nginx auth_request mode (no upstreams) the X-Auth-Request-* family can reach
    /// the app through auth_request_set; in front of an upstream it cannot.
    #[test]
    fn x_auth_request_headers_reach_the_app_only_through_nginx() {
        let nginx = "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Auth-Request-Email\nOAUTH2_PROXY_SET_XAUTHREQUEST=true\nOAUTH2_PROXY_UPSTREAMS=static://202\n";
        assert!(!fires("OWUI-HEADER-MISMATCH", nginx));
        let upstream = nginx.replace("static://202", "http://127.0.0.1:8080");
        assert!(fires("OWUI-HEADER-MISMATCH", &upstream));
    }

    #[test]
    fn cors_allow_origin_is_compared_with_every_public_origin() {
        // `*` allows every origin; Portcullis's own public URL counts as a public origin.
        assert!(!fires(
            "OWUI-CORS-ORIGIN",
            "WEBUI_URL=https://chat.example.com\nCORS_ALLOW_ORIGIN=*\n"
        ));
        let mut s = settings("CORS_ALLOW_ORIGIN=https://chat.example.com\n");
        s.set_gateway_origins(&["https://chat.example.com:443/".into()]);
        assert!(!check(&s).iter().any(|f| f.rule == "OWUI-CORS-ORIGIN"));
        s.set_gateway_origins(&["https://ai.example.com".into()]);
        let found = check(&s);
        let cors = found.iter().find(|f| f.rule == "OWUI-CORS-ORIGIN").unwrap();
        assert!(cors.fix.contains("https://ai.example.com"), "{cors:?}");
        // Nothing known about the public origin: nothing to compare with.
        assert!(!fires(
            "OWUI-CORS-ORIGIN",
            "CORS_ALLOW_ORIGIN=http://localhost:5173\n"
        ));
    }

    #[test]
    fn cors_is_not_blamed_for_streaming() {
        // The seeds blamed CORS_ALLOW_ORIGIN for broken streaming: API streaming is not affected
        // (only socket.io's accepted origins are, OWUI-CORS-ORIGIN).
        let findings = check(&settings(&format!(
            "{TRUSTED}DEFAULT_USER_ROLE=user\nCORS_ALLOW_ORIGIN=*\n"
        )));
        assert!(
            findings.iter().all(|f| !f.symptom.contains("stream")),
            "{findings:?}"
        );
    }
}
