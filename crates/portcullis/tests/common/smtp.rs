//! A real SMTP server for the tests: aiosmtpd (PyPI, pinned in tests/smtp/requirements.txt,
//! installed by scripts/install-test-deps) on a loopback port, delivering into a maildir the
//! test reads; with STARTTLS required, on a certificate from its own test CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

pub struct SmtpServer {
    pub port: u16,
    /// The CA that signed the server's certificate (STARTTLS servers only).
    pub ca_file: Option<PathBuf>,
    maildir: PathBuf,
    _child: Child,
    _dir: TempDir,
}

impl SmtpServer {
    /// A plain server (no TLS), or one that requires STARTTLS.
    pub async fn start(starttls: bool) -> SmtpServer {
        let python =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/smtp-venv/bin/python");
        assert!(
            python.exists(),
            "{}: scripts/install-test-deps installs aiosmtpd",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let port = super::idp::free_port();
        let mut command = Command::new(&python);
        command.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        let ca_file = if starttls {
            super::ldap::certificates(dir.path());
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            command.args([
                "--tlscert",
                cert.to_str().unwrap(),
                "--tlskey",
                key.to_str().unwrap(),
            ]);
            Some(dir.path().join("ca.pem"))
        } else {
            command.arg("--no-requiretls");
            None
        };
        command
            .args(["-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()])
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return SmtpServer {
                    port,
                    ca_file,
                    maildir,
                    _child: child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    /// The messages delivered so far, as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}
