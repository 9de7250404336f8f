//! A real ACME server for the certificate tests: Debian's `pebble` (Let's Encrypt's test CA),
//! with `pebble-challtestsrv` as its DNS, answering every name with 127.0.0.1 so that the CA's
//! checks come back to the Portcullis under test on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::idp::free_port;
use super::pki::Pki;

pub struct Pebble {
    processes: Vec<Child>,
    /// The CA the directory's own https certificate comes from (not pebble's issuing root).
    pub pki: Pki,
    pub directory: String,
    management: String,
    /// Where the CA connects for TLS-ALPN-01 and HTTP-01.
    pub tls_port: u16,
    pub http_port: u16,
    log: PathBuf,
}

fn binary(name: &str) -> &str {
    assert!(
        Command::new(name)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "{name} is not installed: run scripts/install-test-deps (Debian package pebble)"
    );
    name
}

impl Pebble {
    /// Starts pebble issuing certificates valid for `validity` seconds.
    pub async fn start(validity: u64) -> Pebble {
        Self::launch(validity, None).await
    }

    /// Starts pebble requiring External Account Binding with the key id `kid` and MAC key
    /// `hmac_key` (base64url).
    pub async fn requiring_eab(kid: &str, hmac_key: &str) -> Pebble {
        Self::launch(3600, Some((kid, hmac_key))).await
    }

    async fn launch(validity: u64, eab: Option<(&str, &str)>) -> Pebble {
        let pki = Pki::new("pebble listener CA");
        let listener = pki.server("pebble", &["localhost", "127.0.0.1"]);
        let (acme, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let (tls_port, http_port) = (free_port(), free_port());
        let config = pki.dir.path().join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": listener.cert,
                "privateKey": listener.key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab.is_some(),
                "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({ kid: key })),
                "certificateValidityPeriod": validity,
            }})
            .to_string(),
        )
        .unwrap();
        let log = pki.dir.path().join("pebble.log");
        let dns_server = Command::new(binary("pebble-challtestsrv"))
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Command::new(binary("pebble"))
            .args(["-config", config.to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random 0–15 s wait before each check; every order proves its names again.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Pebble {
            processes: vec![pebble, dns_server],
            pki,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management: format!("https://127.0.0.1:{management}"),
            tls_port,
            http_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = pebble.pki.http();
        loop {
            if let Ok(r) = http.get(&pebble.directory).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "pebble did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pebble
    }

    /// The `[tls.acme]` keys that point Portcullis at this CA.
    pub fn acme_table(&self, domains: &[&str], more: &str) -> String {
        format!(
            "[tls.acme]\ndomains = {domains:?}\ndirectory = '{}'\ndirectory_ca = '{}'\nemail = 'ops@example.com'\n{more}",
            self.directory,
            self.pki.ca_file().display()
        )
    }

    /// Pebble's issuing root (made anew at each start), PEM: what a client must trust.
    pub async fn root(&self) -> String {
        self.pki
            .http()
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// How many certificates pebble has issued, from its log.
    pub fn issued(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Issued certificate serial"))
            .count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "pebble's log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}
