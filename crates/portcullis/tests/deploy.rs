//! What `deploy/` ships, checked with the real tools: the systemd unit with `systemd-analyze`,
//! the compose file against the Compose specification's schema (tests/deploy), its Portcullis
//! configuration with check-config, and the image's health check (`portcullis probe`) against a
//! running Portcullis. (Building the image needs a container engine CI does not have: docs/deploy.md
//! says what is not exercised.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

#[test]
fn the_systemd_unit_verifies_and_is_rated_hardened() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/portcullis.service")).unwrap();
    // Pointed at this build's binary: verify checks that every command exists.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/portcullis", binary())).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd; scripts/install-test-deps installs it)");
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let rated = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&rated.stdout);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating: {report}"));
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{overall}"));
    assert!(score <= 2.0, "exposure {score}: {overall}");
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let validator = repo().join("tests/deploy/validate-compose.mjs");
    assert!(
        repo().join("tests/deploy/node_modules/ajv").is_dir(),
        "tests/deploy/node_modules: scripts/install-test-deps installs them"
    );
    let out = Command::new("node")
        .arg(&validator)
        .arg(repo().join("deploy/compose/docker-compose.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does refuse a mistake (a misspelt key), so the pass above means something.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    std::fs::write(
        &broken,
        "services:\n  a:\n    image: x\n    restrat: always\n",
    )
    .unwrap();
    let refused = Command::new("node")
        .arg(&validator)
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("restrat"));
}

#[test]
fn the_compose_configuration_passes_check_config() {
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(repo().join("deploy/compose/portcullis.toml"))
        .env("PORTCULLIS_PUBLIC_URL", "https://chat.example.com")
        .env("OPENWEBUI_ADMIN_TOKEN", "sk-from-the-environment")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("public_url https://chat.example.com"));
}

#[tokio::test]
async fn the_health_check_probe_reports_ready_and_down() {
    let h = common::Harness::start("").await;
    let ready = h.url("/ready");
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(binary())
                .args(["probe", &url])
                .output()
                .unwrap()
        })
    };
    let up = probe(ready).await.unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let nobody = format!("http://127.0.0.1:{}/ready", common::idp::free_port());
    let down = probe(nobody).await.unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("no answer"));
}
