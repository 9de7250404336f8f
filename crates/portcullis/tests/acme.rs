//! Certificates over ACME from a real CA (Debian's pebble, Let's Encrypt's test server): issued
//! through TLS-ALPN-01 on the listener and HTTP-01 on the redirect listener, trusted by a client
//! that trusts only pebble's root, renewed before they expire, kept sealed in the store, and
//! ordered once by two replicas sharing PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use common::pebble::Pebble;
use common::replicas::{PgCluster, TOKEN_KEY, portcullis};
use reqwest::StatusCode;

const DOMAIN: &str = "portcullis.test";
const APP: &str = "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n";

/// A client that trusts only pebble's issuing root and finds `DOMAIN` at 127.0.0.1:`port`.
fn client(root: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(DOMAIN, ([127, 0, 0, 1], port).into())
        .tls_info(true)
        // A new handshake per request, so each one sees the certificate served now.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The certificate served at `DOMAIN`:`port` once a request over it verifies, DER; waits for it.
async fn served(client: &reqwest::Client, port: u16, within: Duration) -> Vec<u8> {
    // On failure the test's output shows what the ordering said.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("portcullis_web::tls=info")
        .with_test_writer()
        .try_init();
    let deadline = Instant::now() + within;
    loop {
        match client
            .get(format!("https://{DOMAIN}:{port}/ping"))
            .send()
            .await
        {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                let info = response
                    .extensions()
                    .get::<reqwest::tls::TlsInfo>()
                    .unwrap();
                return info.peer_certificate().unwrap().to_vec();
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no trusted certificate at {DOMAIN}:{port} within {within:?}: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn tls_alpn_01_gets_a_trusted_certificate_renewed_before_it_expires() {
    // 30-second certificates: renewed with a third of their life left, about 20 s in.
    let pebble = Pebble::start(30).await;
    let port = pebble.tls_port;
    let h = Harness::start_on(
        port,
        &format!(
            "public_url = 'https://{DOMAIN}:{port}'\n{APP}[tls]\n{}",
            pebble.acme_table(&[DOMAIN], "")
        ),
    )
    .await;
    let root = pebble.root().await;
    let first = served(&client(&root, port), port, Duration::from_secs(60)).await;
    assert_eq!(pebble.issued(), 1);

    // Outside an order, a handshake offering only the CA's protocol gets nothing.
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnything))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let checked = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(DOMAIN.try_into().unwrap(), tcp)
        .await;
    assert!(
        checked.is_err(),
        "no challenge certificate outside an order"
    );

    // Stored for the next start and for other replicas, the key sealed.
    let stored = h
        .running
        .state
        .store
        .acme_value("certificate")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.contains("BEGIN CERTIFICATE"), "{stored}");
    assert!(!stored.contains("PRIVATE KEY"), "the key is stored sealed");

    // Renewed before expiry (30 s), without a restart and without a failed handshake between.
    let started = Instant::now();
    loop {
        // A new client each time: a resumed TLS session would report the first certificate.
        let fresh = self::client(&root, port);
        let now = served(&fresh, port, Duration::from_secs(5)).await;
        if now != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(28),
            "the certificate was not renewed before it expired"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(pebble.issued(), 2);
}

#[tokio::test]
async fn http_01_is_answered_on_the_redirect_listener() {
    let pebble = Pebble::start(3600).await;
    let port = common::idp::free_port();
    let _h = Harness::start_on(
        port,
        &format!(
            "public_url = 'https://{DOMAIN}:{port}'\n{APP}[tls]\nredirect_http = '127.0.0.1:{}'\n{}",
            pebble.http_port,
            pebble.acme_table(&[DOMAIN], "challenge = 'http-01'\n")
        ),
    )
    .await;
    let client = client(&pebble.root().await, port);
    served(&client, port, Duration::from_secs(60)).await;
    assert_eq!(pebble.issued(), 1);

    // Everything else on the plain listener is still only a redirect; an unknown token too.
    for path in ["/chat", "/.well-known/acme-challenge/not-a-token"] {
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{}{path}", pebble.http_port))
            .header("host", DOMAIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
    }
}

#[tokio::test]
async fn two_replicas_on_postgresql_order_once_and_serve_the_same_certificate() {
    let pg = PgCluster::start();
    let pebble = Pebble::start(3600).await;
    // The CA checks at its TLS port: one replica listens there; whichever orders, both answer.
    let ports = [pebble.tls_port, common::idp::free_port()];
    let dirs: Vec<tempfile::TempDir> = ports.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children = Vec::new();
    for (port, dir) in ports.iter().zip(&dirs) {
        let path = dir.path().join("portcullis.toml");
        std::fs::write(
            &path,
            format!(
                "listen = '127.0.0.1:{port}'\ndata_dir = '{}'\ntoken_key = '{TOKEN_KEY}'\n\
                 public_url = 'https://{DOMAIN}'\n\
                 [store]\nurl = '{}'\n[[apps]]\nname = 'chat'\nupstream = 'http://127.0.0.1:9'\n\
                 [tls]\n{}",
                dir.path().join("data").display(),
                pg.url,
                pebble.acme_table(&[DOMAIN], "")
            ),
        )
        .unwrap();
        children.push(
            portcullis(&["serve", "--config", path.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let root = pebble.root().await;
    let mut leaves = Vec::new();
    for port in ports {
        leaves.push(served(&client(&root, port), port, Duration::from_secs(60)).await);
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        leaves[0], leaves[1],
        "both replicas serve the one certificate"
    );
    assert_eq!(pebble.issued(), 1, "ordered once");
}

#[tokio::test]
async fn a_ca_that_requires_external_account_binding_issues_with_the_configured_key() {
    const KID: &str = "kid-1";
    const KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::requiring_eab(KID, KEY).await;
    let port = pebble.tls_port;
    let _h = Harness::start_on(
        port,
        &format!(
            "public_url = 'https://{DOMAIN}:{port}'\n{APP}[tls]\n{}",
            pebble.acme_table(
                &[DOMAIN],
                &format!("[tls.acme.eab]\nkid = '{KID}'\nhmac_key = '{KEY}'\n")
            )
        ),
    )
    .await;
    let root = pebble.root().await;
    served(&client(&root, port), port, Duration::from_secs(60)).await;
    assert_eq!(pebble.issued(), 1);
}

#[tokio::test]
async fn check_config_and_doctor_live_report_an_acme_directory_that_does_not_answer() {
    let pebble = Pebble::start(3600).await;
    let closed = common::idp::free_port();
    for (directory, expect_problem) in [
        (pebble.directory.clone(), false),
        (format!("https://127.0.0.1:{closed}/dir"), true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("portcullis.toml"),
            format!(
                "listen = '127.0.0.1:{}'\ndata_dir = '{}'\n[tls]\n[tls.acme]\ndomains = ['{DOMAIN}']\n\
                 directory = '{directory}'\ndirectory_ca = '{}'\n",
                common::idp::free_port(),
                dir.path().join("data").display(),
                pebble.pki.ca_file().display()
            ),
        )
        .unwrap();
        let out = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || {
                portcullis(&["doctor", "--live", "--format", "json"])
                    .current_dir(dir)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let checked = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || {
                portcullis(&["check-config"])
                    .current_dir(dir)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(checked.status.success(), "a warning, not a refusal");
        let warned = String::from_utf8_lossy(&checked.stderr).contains("does not answer");
        assert_eq!(warned, expect_problem, "check-config {directory}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let flagged = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "LIVE-ACME-DIRECTORY");
        assert_eq!(flagged, expect_problem, "{directory}: {report}");
        if !expect_problem {
            assert!(
                report["live_checks_passed"]
                    .to_string()
                    .contains("ACME directory"),
                "{report}"
            );
        }
    }
}

/// A verifier that accepts any certificate: the check above is about what the server sends.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
