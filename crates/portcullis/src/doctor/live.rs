//! `portcullis doctor --live`: what only the network can tell. Each identity provider's discovery
//! document and key set, that the public URL (where providers send people back) answers as
//! Portcullis, that every upstream answers, whether an app on loopback can also be reached on this
//! machine's network address (then anyone who can reach it can forge identity headers), and on
//! request a canary sign-in into an Open WebUI app through the headers Portcullis would send.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use portcullis_auth::oidc::Providers;
use portcullis_core::config::{
    AcmeConfig, Config, UpstreamTransport, WHOAMI_UPSTREAM, parse_upstream,
};
use portcullis_core::profile::ProfileName;
use portcullis_core::{Identity, Role, SystemClock};
use portcullis_doctor::{Finding, Severity};
use portcullis_proxy::RouteTable;

/// How long any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the probes found: the checks that passed (shown as such) and the problems.
#[derive(Default)]
pub struct LiveReport {
    pub passed: Vec<String>,
    pub findings: Vec<Finding>,
}

impl LiveReport {
    fn problem(
        &mut self,
        rule: &'static str,
        severity: Severity,
        symptom: String,
        why: String,
        fix: String,
        source: String,
    ) {
        self.findings.push(Finding {
            rule,
            severity,
            symptom,
            why,
            fix,
            source: Some(source),
        });
    }
}

pub async fn probe(config: &Config, canary: Option<&str>) -> LiveReport {
    let mut report = LiveReport::default();
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROBE_TIMEOUT)
        .user_agent("portcullis-doctor")
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            report.problem(
                "LIVE-PROBE",
                Severity::Error,
                "doctor could not probe anything".into(),
                e.to_string(),
                "report this as a bug".into(),
                "--live".into(),
            );
            return report;
        }
    };
    providers(config, &mut report).await;
    public_url(config, &http, &mut report).await;
    listener_certificate(config, std::time::SystemTime::now(), &mut report);
    acme_directory(config, &mut report).await;
    upstreams(config, &mut report).await;
    openwebui_sinks(config, &http, &mut report).await;
    if let Some(app) = canary {
        canary_sign_in(config, &http, app, &mut report).await;
    }
    report
}

async fn providers(config: &Config, report: &mut LiveReport) {
    let providers = match Providers::new(&config.providers, Arc::new(SystemClock)) {
        Ok(p) => p,
        Err(e) => {
            report.problem(
                "LIVE-PROVIDER",
                Severity::Error,
                "sign-in through providers cannot work".into(),
                e.to_string(),
                "check the [[providers]] entries".into(),
                "providers".into(),
            );
            return;
        }
    };
    for provider in providers.all() {
        let source = format!(
            "provider {:?} (issuer {})",
            provider.id(),
            provider.config.issuer.as_deref().unwrap_or("-")
        );
        match tokio::time::timeout(PROBE_TIMEOUT, provider.probe()).await {
            Ok(Ok(checked)) => report.passed.extend(checked.into_iter().map(|c| format!("provider {}: {c}", provider.id()))),
            Ok(Err(e)) => report.problem(
                "LIVE-PROVIDER",
                Severity::Error,
                format!("\"Continue with {}\" fails: the identity provider is unavailable", provider.id()),
                e.to_string(),
                "check issuer (it must be exactly the iss of the provider's tokens, without /.well-known/…) and that this host can reach it (DNS, egress firewall, HTTPS proxy)".into(),
                source,
            ),
            Err(_) => report.problem(
                "LIVE-PROVIDER",
                Severity::Error,
                format!("\"Continue with {}\" hangs, then fails", provider.id()),
                format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
                "check that this host can reach the issuer (egress firewall, HTTPS proxy)".into(),
                source,
            ),
        }
    }
}

/// Providers send people back to `{public_url}/oauth2/callback`: the public URL must reach this
/// Portcullis. Its sign-in page names it, which nothing else in front is likely to.
async fn public_url(config: &Config, http: &reqwest::Client, report: &mut LiveReport) {
    let base = config.public_url();
    let url = format!("{}/.portcullis/sign_in", base.trim_end_matches('/'));
    let callback = format!("{}/oauth2/callback", base.trim_end_matches('/'));
    match http.get(&url).send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status.is_success() && body.contains("Portcullis") {
                report.passed.push(format!("public URL: {url} answers as Portcullis (callback {callback})"));
            } else {
                report.problem(
                    "LIVE-CALLBACK",
                    Severity::Error,
                    "after signing in at the provider, people land on something that is not Portcullis".into(),
                    format!("{url} answered {status} with a page that is not Portcullis's sign-in"),
                    "point public_url at the address people use for Portcullis, and the load balancer or DNS at Portcullis".into(),
                    "public_url".into(),
                );
            }
        }
        Err(e) => report.problem(
            "LIVE-CALLBACK",
            Severity::Warning,
            "after signing in at the provider, people may land on an error page".into(),
            format!("{url} does not answer from here ({}); expected while Portcullis is not running yet", chain(&e)),
            format!("start Portcullis and run doctor --live again; if it still fails, check DNS, the load balancer's listener and target for {callback}"),
            "public_url".into(),
        ),
    }
}

/// Certificates this close to their end are reported: renewal (certbot's default is 30 days
/// before) should already have happened.
const EXPIRY_WARNING: Duration = Duration::from_secs(21 * 86_400);

/// The `[tls]` certificate: how long it has left, and whether it names `public_url`'s host.
fn listener_certificate(config: &Config, now: std::time::SystemTime, report: &mut LiveReport) {
    use portcullis_web::tls::{CertificateFacts, humanize, load_pair};
    let Some((cert, key)) = config.tls.as_ref().and_then(|tls| tls.files()) else {
        return;
    };
    let Some(facts) = load_pair(cert, key)
        .ok()
        .and_then(|pair| CertificateFacts::of(&pair))
    else {
        // check-config has said what is wrong with the files.
        return;
    };
    let left = facts.not_after.duration_since(now).unwrap_or_default();
    if left < EXPIRY_WARNING {
        report.problem(
            "LIVE-CERT-EXPIRING",
            if left.is_zero() { Severity::Error } else { Severity::Warning },
            "browsers will refuse Portcullis once its certificate expires".into(),
            format!("{} expires in {}", cert.display(), humanize(left)),
            "renew it (certbot renew, cert-manager, your CA) and write the new files in place: Portcullis reloads them".into(),
            "tls.cert".into(),
        );
    } else {
        report.passed.push(format!(
            "TLS certificate: valid for {} more",
            humanize(left)
        ));
    }
    let public = config.public_url();
    let host = public
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .map(|authority| portcullis_http::forwarded::strip_port(authority).to_ascii_lowercase())
        .unwrap_or_default();
    if !facts.covers(&host) {
        report.problem(
            "LIVE-CERT-NAME",
            Severity::Error,
            format!("browsers warn that {public} is not who it says it is"),
            format!(
                "{} is for {} but public_url's host is {host}",
                cert.display(),
                facts.names.join(", ")
            ),
            "use a certificate for the public host, or correct public_url".into(),
            "tls.cert".into(),
        );
    }
}

/// The ACME CA's directory answers from here, as the ordering will ask it (same CA bundle).
async fn acme_directory(config: &Config, report: &mut LiveReport) {
    let Some(acme) = config.tls.as_ref().and_then(|tls| tls.acme.as_ref()) else {
        return;
    };
    match probe_acme_directory(acme).await {
        Ok(()) => report
            .passed
            .push(format!("ACME directory: {} answers", acme.directory)),
        Err(why) => report.problem(
            "LIVE-ACME-DIRECTORY",
            Severity::Error,
            "no certificate can be ordered or renewed: browsers will refuse Portcullis once the current one ends".into(),
            format!("the ACME directory {} does not answer: {why}", acme.directory),
            ACME_DIRECTORY_FIX.into(),
            "tls.acme.directory".into(),
        ),
    }
}

pub const ACME_DIRECTORY_FIX: &str = "check the URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory), outbound https from this host, and tls.acme.directory_ca for a private CA";

/// Fetches the ACME directory (trusting `directory_ca` when set) and checks that it is one.
pub async fn probe_acme_directory(acme: &AcmeConfig) -> Result<(), String> {
    let mut builder = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .user_agent("portcullis-doctor");
    if let Some(ca) = &acme.directory_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {}", ca.display(), chain(&e)))?;
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let http = builder.build().map_err(|e| e.to_string())?;
    let response = http
        .get(&acme.directory)
        .send()
        .await
        .map_err(|e| chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("it answered {}", response.status()));
    }
    match response.json::<serde_json::Value>().await {
        Ok(directory) if directory.get("newOrder").is_some() => Ok(()),
        Ok(_) => Err("it answered, but not with an ACME directory (no newOrder)".into()),
        Err(e) => Err(format!(
            "it answered something that is not JSON ({})",
            chain(&e)
        )),
    }
}

/// An error with its causes (reqwest's own message leaves out why a connection failed).
fn chain(e: &dyn std::error::Error) -> String {
    portcullis_core::error::with_causes(e)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// This machine's address on its default route (a UDP "connect" sends nothing).
fn network_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn host_and_port(authority: &str) -> (String, u16) {
    match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (
            host.trim_matches(['[', ']']).to_owned(),
            port.parse().unwrap_or(80),
        ),
        _ => (authority.to_owned(), 80),
    }
}

/// A GET of the app's base path through the gateway's own connection pool, so TLS to the app
/// (its CA, server name, client certificate) and Unix sockets are tried exactly as requests
/// will be: the status, or why there was none.
async fn probe_upstream(
    table: &RouteTable,
    name: &str,
) -> Option<Result<http::StatusCode, String>> {
    let app = table.apps().find(|a| a.name == name)?;
    let path = if app.base_path.is_empty() {
        "/"
    } else {
        app.base_path.as_str()
    };
    let request = http::Request::get(path)
        .header(http::header::HOST, app.host_header.clone())
        .body(axum::body::Body::empty())
        .ok()?;
    let sent = tokio::time::timeout(
        app.timeouts.connect.max(Duration::from_secs(1)) + PROBE_TIMEOUT,
        app.upstream.send(request),
    )
    .await;
    Some(match sent {
        Err(_) => Err("no answer within the probe's time".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((response, _))) => Ok(response.status()),
    })
}

async fn upstreams(config: &Config, report: &mut LiveReport) {
    let network = network_address();
    let Ok(compiled) = config.compile() else {
        return;
    };
    let table = RouteTable::build(&compiled.routes, None);
    for (i, app) in config.apps.iter().enumerate() {
        if app.upstream == WHOAMI_UPSTREAM {
            continue;
        }
        let Ok(upstream) = parse_upstream(&app.upstream) else {
            continue;
        };
        let source = format!("apps[{i}] ({}).upstream = {}", app.name, app.upstream);
        match probe_upstream(&table, &app.name).await {
            None => continue,
            Some(Ok(status)) => report.passed.push(format!(
                "app {}: {} answered {}",
                app.name, app.upstream, status
            )),
            Some(Err(why)) => {
                report.problem(
                "LIVE-UPSTREAM",
                Severity::Error,
                format!("people get 502 \"upstream unavailable\" on app {}", app.name),
                format!("{} does not answer from here: {why}", app.upstream),
                "start the app, or correct the upstream URL (from Portcullis's point of view: in a container, not localhost of the host)".into(),
                source.clone(),
                );
                // Whether it is exposed can only be told while it listens.
                continue;
            }
        }
        if let UpstreamTransport::Unix(path) = &upstream.transport {
            report.passed.push(format!(
                "app {}: reached over the Unix socket {}, not the network (its file permissions decide who else can)",
                app.name,
                path.display()
            ));
            continue;
        }
        let (host, port) = host_and_port(&upstream.authority);
        if !is_loopback_host(&host) {
            report.problem(
                "LIVE-APP-ON-NETWORK",
                Severity::Info,
                format!("if anything but Portcullis can reach {}, it can send forged identity headers", upstream.authority),
                format!("app {} is reached over the network, not loopback; doctor cannot see your firewall or security groups", app.name),
                "allow only Portcullis to reach the app's port (security group, firewall, an internal docker network without a published port)".into(),
                source,
            );
            continue;
        }
        let Some(ip) = network else {
            report.passed.push(format!(
                "app {}: no network address on this machine to test exposure from",
                app.name
            ));
            continue;
        };
        let around = SocketAddr::new(ip, port);
        let exposed = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(around),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if exposed {
            report.problem(
                "LIVE-APP-EXPOSED",
                Severity::Warning,
                format!("anyone who can reach {around} can sign in to app {} as anyone, by sending the identity headers themselves", app.name),
                format!("the upstream is configured on loopback, but the app also accepts connections on this machine's address {ip}: it listens on all interfaces"),
                "bind the app to 127.0.0.1 (Open WebUI: --host 127.0.0.1; docker: publish as 127.0.0.1:PORT:PORT), or firewall the port".into(),
                source,
            );
        } else {
            report.passed.push(format!(
                "app {}: not reachable on {around}, only through Portcullis",
                app.name
            ));
        }
    }
}

/// Whether each `openwebui` sink's token is one Open WebUI accepts for its admin API (a search
/// that finds nobody). An `sk-` API key is refused with 403 while Open WebUI's API keys are
/// off (`ENABLE_API_KEYS`, off by default): then no user is ever provisioned.
async fn openwebui_sinks(config: &Config, http: &reqwest::Client, report: &mut LiveReport) {
    use portcullis_core::config::SinkKind;
    for (i, sink) in config.sinks.iter().enumerate() {
        if sink.kind != SinkKind::Openwebui {
            continue;
        }
        let token = sink.admin_token.as_deref().unwrap_or_default();
        let source = format!("sinks[{i}] ({}).admin_token", sink.id);
        let answer = http
            .get(format!("{}/api/v1/users/", sink.url.trim_end_matches('/')))
            .query(&[("query", "portcullis-doctor-probe@invalid")])
            .bearer_auth(token)
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(e) => {
                report.problem(
                    "LIVE-SINK",
                    Severity::Error,
                    format!(
                        "users are not provisioned into Open WebUI (sink {})",
                        sink.id
                    ),
                    format!("{} does not answer from here: {}", sink.url, chain(&e)),
                    "start Open WebUI, or correct the sink's url (as Portcullis reaches it)".into(),
                    format!("sinks[{i}] ({}).url = {}", sink.id, sink.url),
                );
                continue;
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            report.passed.push(format!(
                "sink {}: Open WebUI accepts the admin token",
                sink.id
            ));
        } else if token.starts_with("sk-")
            && (status == reqwest::StatusCode::FORBIDDEN || body.contains("API key"))
        {
            report.problem(
                "LIVE-OWUI-API-KEYS",
                Severity::Error,
                format!("users are not provisioned into Open WebUI (sink {}): every delivery is refused", sink.id),
                format!("Open WebUI refuses the sink's API key (sk-…) with {status}: API keys are turned off there ({})", body.trim()),
                "set ENABLE_API_KEYS=true in Open WebUI's environment (off by default) and restart it; the key must belong to an admin".into(),
                source,
            );
        } else if status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            report.problem(
                "LIVE-SINK",
                Severity::Error,
                format!("users are not provisioned into Open WebUI (sink {})", sink.id),
                format!("Open WebUI refuses the sink's token with {status}"),
                "use an Open WebUI admin's API key (Settings → Account → API keys, with ENABLE_API_KEYS=true) in admin_token".into(),
                source,
            );
        } else {
            report.problem(
                "LIVE-SINK",
                Severity::Warning,
                format!("provisioning into Open WebUI may fail (sink {})", sink.id),
                format!("its user search answered {status}"),
                "check that url is Open WebUI's base URL (not a path under it)".into(),
                source,
            );
        }
    }
}

/// Signs a new, clearly named canary user in to an Open WebUI app the way Portcullis would (the
/// app's identity headers, the JSON body its sign-in needs) and reports the role it got.
/// A new canary identity every run (nanoseconds: two runs in one second must not share a user,
/// or the second would report the first one's role).
fn canary_identity() -> Identity {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let email = format!("portcullis-canary-{stamp}@canary.invalid");
    Identity {
        subject: format!("canary-{stamp}"),
        username: email.clone(),
        email: portcullis_core::Email::parse(&email).ok(),
        display_name: "Portcullis canary".into(),
        groups: Vec::new(),
        role: Role::User,
    }
}

/// Open WebUI's trusted-header sign-in with exactly the headers the app `name` receives:
/// its status and JSON answer. `Err` says why no sign-in could be tried.
async fn canary_request(
    config: &Config,
    http: &reqwest::Client,
    name: &str,
    identity: &Identity,
) -> Result<(reqwest::StatusCode, serde_json::Value), (String, String)> {
    let Some(cfg) = config.apps.iter().find(|a| a.name == name) else {
        return Err((
            format!("no app is called {name:?}"),
            "name an app from portcullis.toml".into(),
        ));
    };
    if cfg.identity_headers.profile != ProfileName::Openwebui {
        return Err((
            format!(
                "app {name:?} does not use the openwebui profile; the canary speaks Open WebUI's trusted-header sign-in"
            ),
            "use --canary with an Open WebUI app".into(),
        ));
    }
    let compiled = config.compile().map_err(|issues| {
        (
            format!(
                "the configuration is not valid: {}",
                portcullis_core::config::ConfigIssue::list(&issues)
            ),
            "fix the configuration first (portcullis check-config)".to_owned(),
        )
    })?;
    let table = RouteTable::build(&compiled.routes, None);
    let app = table
        .apps()
        .find(|a| a.name == name)
        .ok_or_else(|| (format!("no app is called {name:?}"), String::new()))?;
    let mut request = http
        .post(format!(
            "{}/api/v1/auths/signin",
            cfg.upstream.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "email": "", "password": "" }));
    for (header, value) in app.identity_headers.values(identity) {
        request = request.header(header.clone(), value);
    }
    let response = request.send().await.map_err(|e| {
        (
            format!("the sign-in request did not get an answer: {}", chain(&e)),
            "start the app (see LIVE-UPSTREAM)".to_owned(),
        )
    })?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or_default()))
}

/// Signs a new, clearly named canary user in to an Open WebUI app the way Portcullis would and
/// reports the role it got.
async fn canary_sign_in(
    config: &Config,
    http: &reqwest::Client,
    name: &str,
    report: &mut LiveReport,
) {
    let source = format!("--canary {name}");
    let identity = canary_identity();
    let email = identity.email.as_deref().unwrap_or_default().to_owned();
    let (status, body) = match canary_request(config, http, name, &identity).await {
        Ok(answer) => answer,
        Err((why, fix)) => {
            report.problem(
                "LIVE-CANARY",
                Severity::Error,
                format!("no canary sign-in to {name} could be tried"),
                why,
                fix,
                source,
            );
            return;
        }
    };
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or_default();
        report.problem(
            "LIVE-CANARY",
            Severity::Error,
            format!("people cannot sign in to {name}: Open WebUI answers {status} \"{detail}\""),
            "Open WebUI refused a trusted-header sign-in with exactly the headers Portcullis sends".into(),
            match status.as_u16() {
                400 => "make WEBUI_AUTH_TRUSTED_EMAIL_HEADER name X-Forwarded-Email (doctor --env with Open WebUI's settings shows the mismatch)".into(),
                403 => "set ENABLE_PASSWORD_AUTH=true: Open WebUI blocks trusted-header sign-in without it".into(),
                _ => "run doctor --env with Open WebUI's settings to find the setting".into(),
            },
            source,
        );
        return;
    }
    let role = body["role"].as_str().unwrap_or("unknown");
    let cleanup = format!("delete {email} in Open WebUI's admin panel (Users)");
    if role == "pending" {
        report.problem(
            "LIVE-CANARY",
            Severity::Error,
            "new users see 'You do not have permission to access this resource' until an admin approves them".into(),
            format!("the canary {email} signed in to {name} and got the role pending"),
            format!("send the role: identity_headers.role_header = \"X-Forwarded-Role\" with WEBUI_AUTH_TRUSTED_ROLE_HEADER=X-Forwarded-Role, or set DEFAULT_USER_ROLE=user; then {cleanup}"),
            source,
        );
    } else {
        report.passed.push(format!("app {name}: canary {email} signed in through the headers and got the role {role}; {cleanup}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    /// A `[tls]` configuration with a certificate for `names`, public at `public_url`, and the
    /// certificate's end.
    fn with_certificate(
        dir: &Path,
        names: &[&str],
        public_url: &str,
    ) -> (Config, std::time::SystemTime) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let text = format!(
            "public_url = '{public_url}'\n[tls]\ncert = '{}'\nkey = '{}'\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        );
        let config: Config = toml::from_str(&text).unwrap();
        let pair = portcullis_web::tls::load_pair(&dir.join("cert.pem"), &dir.join("key.pem"));
        let facts = portcullis_web::tls::CertificateFacts::of(&pair.unwrap()).unwrap();
        (config, facts.not_after)
    }

    fn rules(report: &LiveReport) -> Vec<&str> {
        report.findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn a_listener_certificate_near_its_end_or_for_another_name_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (config, end) =
            with_certificate(dir.path(), &["*.example.com"], "https://chat.example.com");
        let mut fine = LiveReport::default();
        listener_certificate(&config, end - Duration::from_secs(60 * 86_400), &mut fine);
        assert!(rules(&fine).is_empty(), "{:?}", rules(&fine));

        let mut soon = LiveReport::default();
        listener_certificate(&config, end - Duration::from_secs(5 * 86_400), &mut soon);
        assert_eq!(rules(&soon), ["LIVE-CERT-EXPIRING"]);

        let (other, end) = with_certificate(dir.path(), &["localhost"], "https://chat.example.com");
        let mut named = LiveReport::default();
        listener_certificate(&other, end - Duration::from_secs(60 * 86_400), &mut named);
        assert_eq!(rules(&named), ["LIVE-CERT-NAME"]);
    }
}
