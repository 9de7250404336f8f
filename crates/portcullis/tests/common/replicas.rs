//! Real PostgreSQL clusters (scripts/postgres) and real `portcullis serve` processes sharing them,
//! for the replica and outage tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::idp::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

/// A throwaway PostgreSQL cluster of this test's own (it may be stopped and started again).
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub url: String,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script())
            .args([
                "start",
                dir.path().to_str().unwrap(),
                &free_port().to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/postgres start failed (is PostgreSQL installed? scripts/install-test-deps): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        PgCluster { dir, url }
    }

    fn run(&self, command: &str) {
        let status = Command::new(script())
            .args([command, self.dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "scripts/postgres {command}");
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.run("stop");
    }

    pub fn restart(&self) {
        self.run("restart");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.dir.path().to_str().unwrap()])
            .stderr(Stdio::null())
            .status();
    }
}

/// A 32-byte token key every replica shares (base64url).
pub const TOKEN_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// One `portcullis serve` process.
pub struct Replica {
    child: Child,
    pub base: String,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

/// A command for the binary with the test runner's PORTCULLIS_* variables removed.
pub fn portcullis(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command
}

impl Replica {
    /// Starts a replica on its own port with `config` (TOML; `{port}` becomes its port) and
    /// waits until it is ready.
    pub async fn start(config: &str) -> Replica {
        Self::start_on(free_port(), config).await
    }

    pub async fn start_on(port: u16, config: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        let toml = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshutdown_grace = \"1s\"\n{}",
            dir.path().join("data").display(),
            config.replace("{port}", &port.to_string())
        );
        std::fs::write(&path, toml).unwrap();
        let child = portcullis(&["serve", "--config", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let replica = Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config: path,
            _dir: dir,
        };
        replica.wait_ready(Duration::from_secs(30)).await;
        replica
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/ready", self.base)).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs an operator command against this replica's configuration (and so its database).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        let mut command = portcullis(&all);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Ends the process at once, as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it holds; returns how long that took, or panics after `within`.
pub async fn within<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
