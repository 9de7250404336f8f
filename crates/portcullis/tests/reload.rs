//! Reloading the configuration without a restart: apps and policies change for new
//! connections, a configuration that changes what the process is built around (the listener,
//! the store) is refused naming those settings, and `portcullis serve` reloads on SIGHUP and on
//! a changed file while an invalid file changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use common::idp::free_port;
use portcullis::serve::ReloadRefused;
use portcullis_core::Role;
use reqwest::StatusCode;

const CHAT: &str = "[[apps]]\nname = 'chat'\npath_prefix = '/chat'\nupstream = '{upstream}'\n\
                    access = { groups = ['staff'] }\n";
const NOTES: &str = "[[apps]]\nname = 'notes'\npath_prefix = '/notes'\nupstream = '{upstream}'\n";

/// A client with no pooled connections: each request opens a new one, which is what a reload
/// changes.
fn fresh() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn status(h: &Harness, path: &str, cookie: &str) -> StatusCode {
    fresh()
        .get(h.url(path))
        .header("cookie", format!("_portcullis={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

/// The harness's configuration file with `from` replaced by `to`, loaded as check-config would.
fn edited(h: &Harness, from: &str, to: &str) -> portcullis_core::config::Config {
    let path = h.dir.path().join("portcullis.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    portcullis::config::load(Some(&path))
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

#[tokio::test]
async fn apps_and_policies_change_live_and_the_listener_does_not() {
    let h = Harness::start(CHAT).await;
    h.add_user("erin", None, None, Role::User, &["staff"]).await;
    h.add_user("olaf", None, None, Role::User, &[]).await;
    let erin = h.sign_in("erin", "user-password-1").await.unwrap();
    let olaf = h.sign_in("olaf", "user-password-1").await.unwrap();
    assert_eq!(status(&h, "/chat/x", &erin).await, StatusCode::OK);
    assert_eq!(status(&h, "/chat/x", &olaf).await, StatusCode::FORBIDDEN);
    assert_eq!(status(&h, "/notes/x", &olaf).await, StatusCode::NOT_FOUND);

    // A new app, and chat's policy widened: both hold for the next connection, sessions kept.
    let upstream = h.upstream.url();
    let config = edited(
        &h,
        "access = { groups = ['staff'] }\n",
        &format!(
            "access = {{ groups = ['staff', 'everyone'] }}\n{}",
            NOTES.replace("{upstream}", &upstream)
        ),
    );
    h.add_user("eve", None, None, Role::User, &["everyone"])
        .await;
    let eve = h.sign_in("eve", "user-password-1").await.unwrap();
    assert_eq!(status(&h, "/chat/x", &eve).await, StatusCode::FORBIDDEN);
    h.running.reload(config).await.unwrap();
    assert_eq!(status(&h, "/chat/x", &eve).await, StatusCode::OK);
    assert_eq!(status(&h, "/notes/x", &olaf).await, StatusCode::OK);
    assert_eq!(status(&h, "/chat/x", &erin).await, StatusCode::OK);

    // Moving the listener is refused by name, and nothing changes.
    let moved = edited(
        &h,
        &format!("listen = \"127.0.0.1:{}\"", h.running.addr.port()),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    match h.running.reload(moved).await {
        Err(ReloadRefused::NeedsRestart(settings)) => assert_eq!(settings, ["listen"]),
        other => panic!("expected a refusal naming listen, got {other:?}"),
    }
    assert_eq!(status(&h, "/notes/x", &olaf).await, StatusCode::OK);
    h.running.shutdown().await;
}

/// `portcullis serve` on `config`'s text; returns it and its base URL once it answers.
async fn serve(dir: &std::path::Path, text: &str) -> (std::process::Child, String) {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    let child = common::replicas::portcullis(&["serve", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let base = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .map(|l| format!("http://{}", l.trim_end_matches('"')))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fresh().get(format!("{base}/ping")).send().await.is_err() {
        assert!(Instant::now() < deadline, "portcullis serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

async fn answers(base: &str, path: &str) -> StatusCode {
    fresh()
        .get(format!("{base}{path}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_reloads_on_a_changed_file_and_on_sighup_and_keeps_serving_through_a_bad_one() {
    let upstream = common::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str| {
        format!(
            "[[apps]]\nname = '{name}'\npath_prefix = '/{name}'\nupstream = '{}'\nskip_auth = [{{ path = '^/' }}]\n",
            upstream.url()
        )
    };
    let head = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nshutdown_grace = \"1s\"\n",
        free_port(),
        dir.path().join("data").display()
    );
    let (mut child, base) = serve(dir.path(), &format!("{head}{}", app("one"))).await;
    assert_eq!(answers(&base, "/one/x").await, StatusCode::OK);
    let path = dir.path().join("portcullis.toml");

    // The file changes: picked up without a signal.
    std::fs::write(&path, format!("{head}{}{}", app("one"), app("two"))).unwrap();
    until("the changed file was not reloaded", async || {
        answers(&base, "/two/x").await == StatusCode::OK
    })
    .await;

    // A broken file: reported, and the running configuration keeps serving.
    std::fs::write(&path, format!("{head}{}\nlisten_typo = 1\n", app("one"))).unwrap();
    until("the broken file was not reported", async || {
        std::fs::read_to_string(dir.path().join("serve.log"))
            .unwrap()
            .contains("the new configuration is not valid")
    })
    .await;
    assert_eq!(answers(&base, "/two/x").await, StatusCode::OK);

    // SIGHUP after the file is fixed (its mtime kept, as a config-management tool might).
    let fixed = format!("{head}{}{}", app("one"), app("three"));
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, fixed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(answers(&base, "/three/x").await, StatusCode::NOT_FOUND);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    until("SIGHUP did not reload", async || {
        answers(&base, "/three/x").await == StatusCode::OK
    })
    .await;
    assert_eq!(answers(&base, "/two/x").await, StatusCode::NOT_FOUND);
    let _ = child.kill();
    let _ = child.wait();
}
