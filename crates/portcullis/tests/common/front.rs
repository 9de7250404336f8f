//! The proxies that can stand in front of an app with Portcullis deciding: Portcullis's own
//! built-in proxy (over HTTP/1.1, and over HTTP/2 with its own TLS), Debian's nginx and Caddy running the exact blocks of docs/forward-auth.md,
//! and a stand-in for Traefik (not packaged in Debian) running that page's Traefik block.
//!
//! Every front serves the app `chat` at `http://chat.example.com:<port>` (https for HTTP/2); [`Front::client`]
//! resolves that name (and any other) to the front, so a test can send any `Host`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::Harness;
use super::idp::free_port;

pub const DOCS: &str = include_str!("../../../../docs/forward-auth.md");

/// The host every front serves the `chat` app at.
pub const CHAT_HOST: &str = "chat.example.com";

/// The fenced block of `language` in the forward-auth page (the first one).
pub fn snippet(language: &str) -> String {
    snippets(language)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {language} block in docs/forward-auth.md"))
}

/// Every fenced block of `language` in the forward-auth page, in order.
pub fn snippets(language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    let mut out = Vec::new();
    let mut rest = DOCS;
    while let Some(at) = rest.find(&fence) {
        let body = &rest[at + fence.len()..];
        let end = body.find("```").unwrap();
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Portcullis itself in front of the app.
    Builtin,
    /// Portcullis itself, listening with TLS, spoken to in HTTP/2: a second instance on the same
    /// data folder (same users, sessions and keys) with `[tls]`.
    BuiltinH2,
    Nginx,
    Caddy,
    Traefik,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Builtin,
        Kind::BuiltinH2,
        Kind::Nginx,
        Kind::Caddy,
        Kind::Traefik,
    ];
    /// Portcullis's own proxy, in either protocol.
    pub fn is_builtin(self) -> bool {
        matches!(self, Kind::Builtin | Kind::BuiltinH2)
    }
    /// The proxies that ask Portcullis (forward-auth) instead of letting it forward.
    pub const FORWARD_AUTH: [Kind; 3] = [Kind::Nginx, Kind::Caddy, Kind::Traefik];
}

/// A running front.
pub struct Front {
    pub kind: Kind,
    pub port: u16,
    _process: Option<Child>,
    _task: Option<tokio::task::JoinHandle<()>>,
    /// The HTTP/2 front's own Portcullis, and the CA its certificate comes from.
    tls: Option<(portcullis::serve::Running, super::pki::Pki)>,
    _dir: tempfile::TempDir,
}

impl Front {
    /// `http://chat.example.com:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        self.url_for(CHAT_HOST, path)
    }

    pub fn url_for(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.port)
    }

    /// A client that reaches this front under `hosts`' names and never follows redirects. The
    /// built-in front is reached from 127.0.0.2, which is not a trusted proxy: a client there
    /// is as untrusted as any on the internet.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let to = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for host in hosts.iter().chain([&CHAT_HOST]) {
            builder = builder.resolve(host, to);
        }
        if self.kind.is_builtin() {
            builder = builder.local_address("127.0.0.2".parse::<IpAddr>().unwrap());
        }
        if let Some((_, pki)) = &self.tls {
            builder = builder
                .add_root_certificate(
                    reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap(),
                )
                .http2_prior_knowledge();
        }
        builder.build().unwrap()
    }

    /// The address a raw TCP client connects to (from 127.0.0.2 for the built-in front), for
    /// HTTP/1.1 written by hand.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        assert!(self.tls.is_none(), "raw HTTP/1.1 is for the plain fronts");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if self.kind == Kind::Builtin {
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        }
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .unwrap()
    }
}

impl Front {
    /// For the HTTP/2 front: `method target` sent as it is (`:path` unnormalised, as a hostile
    /// client would send it) with `headers`, from 127.0.0.2; the status and body.
    pub async fn h2_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        use http_body_util::{BodyExt, Empty};
        let (_, pki) = self.tls.as_ref().expect("the HTTP/2 front");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .unwrap();
        let connector =
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(pki.client_config(&[b"h2"])));
        let tls = connector
            .connect(CHAT_HOST.try_into().unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        // CONNECT names only an authority (RFC 9113 §8.5).
        let uri = if method == "CONNECT" {
            format!("{CHAT_HOST}:{}", self.port)
        } else {
            format!("https://{CHAT_HOST}:{}{target}", self.port)
        };
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = match sender
            .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
            .await
        {
            Ok(response) => response,
            // A stream the server reset (a malformed request): no answer at all.
            Err(e) => return (0, e.to_string()),
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The docs' text with the example addresses replaced by this test's.
fn localise(text: &str, h: &Harness) -> String {
    text.replace("127.0.0.1:4180", &h.running.addr.to_string())
        .replace(
            "127.0.0.1:3000",
            h.upstream.url().trim_start_matches("http://"),
        )
}

pub async fn start(kind: Kind, h: &Harness) -> Front {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = None;
    let (port, process, task) = match kind {
        Kind::Builtin => (h.running.addr.port(), None, None),
        Kind::BuiltinH2 => {
            let (running, pki) = start_tls_instance(h, dir.path()).await;
            let port = running.addr.port();
            tls = Some((running, pki));
            (port, None, None)
        }
        Kind::Nginx => {
            let (child, port) = start_nginx(h, dir.path()).await;
            (port, Some(child), None)
        }
        Kind::Caddy => {
            let (child, port) = start_caddy(h, dir.path()).await;
            (port, Some(child), None)
        }
        Kind::Traefik => {
            let static_config = localise(&snippets("yaml")[0], h);
            let dynamic = localise(&snippets("yaml")[1], h);
            let (task, port) = super::traefik::start(&static_config, &dynamic).await;
            (port, None, Some(task))
        }
    };
    Front {
        kind,
        port,
        _process: process,
        _task: task,
        tls,
        _dir: dir,
    }
}

/// A second Portcullis on the harness's data folder and configuration, listening with TLS (a
/// certificate for every name the tests use) on a port of its own.
async fn start_tls_instance(
    h: &Harness,
    dir: &Path,
) -> (portcullis::serve::Running, super::pki::Pki) {
    let pki = super::pki::Pki::new("security suite CA");
    let server = pki.server(
        "front",
        &[
            CHAT_HOST,
            "*.example.com",
            "*.example",
            "localhost",
            "127.0.0.1",
        ],
    );
    let port = free_port();
    let original = std::fs::read_to_string(h.dir.path().join("portcullis.toml")).unwrap();
    let mut text: String = original
        .lines()
        .filter(|line| !line.starts_with("listen =") && !line.starts_with("public_url ="))
        .map(|line| format!("{line}\n"))
        .collect();
    text = format!(
        "listen = \"127.0.0.1:{port}\"\npublic_url = \"https://{CHAT_HOST}:{port}\"\n{text}\n\
         [tls]\ncert = '{}'\nkey = '{}'\n",
        server.cert.display(),
        server.key.display()
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    let (config, _) = portcullis::config::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
    let running = portcullis::serve::start(
        config,
        std::sync::Arc::new(portcullis_core::SystemClock),
        std::sync::Arc::new(portcullis_proxy::access::TracingAccessLog),
    )
    .await
    .unwrap();
    (running, pki)
}

async fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy did not listen on {port}");
}

async fn start_nginx(h: &Harness, dir: &Path) -> (Child, u16) {
    let port = free_port();
    let server = localise(&snippet("nginx"), h)
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {dir}/body;\n proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n uwsgi_temp_path {dir}/uwsgi;\n scgi_temp_path {dir}/scgi;\n\
         {server}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("nginx from Debian (scripts/install-test-deps installs it)");
    wait_for_port(port, &mut child, &dir.join("stderr.log")).await;
    (child, port)
}

async fn start_caddy(h: &Harness, dir: &Path) -> (Child, u16) {
    let port = free_port();
    let caddyfile = localise(&snippet("caddyfile"), h).replace(
        &format!("{CHAT_HOST} {{"),
        &format!("http://{CHAT_HOST}:{port} {{"),
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let log = dir.join("caddy.log");
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("caddy.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("caddy from Debian (scripts/install-test-deps installs it)");
    wait_for_port(port, &mut child, &dir.join("caddy.err")).await;
    (child, port)
}
