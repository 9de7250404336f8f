//! A real headless Chromium signs in through the real provider's login page and reaches the app.
//! Screenshots land in target/screenshots/ for a person to look at; they are not committed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::Harness;
use common::browser::Browser;
use common::idp::{Idp, free_port};

const APP: &str = "[[apps]]\nname = 'chat'\nupstream = '{upstream}'\nidentity_headers = { profile = 'openwebui' }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_the_provider_and_reaches_the_app() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&base, &[]);
    let h = Harness::start_at(port, &format!("{APP}{}", idp.provider_toml(""))).await;
    h.setup_admin().await;
    let browser = Browser::start().await;

    // An unauthenticated visit lands on the sign-in page with the provider's button.
    browser.goto(&format!("{base}/c/42")).await;
    browser
        .wait_for_url(&format!("{base}/.portcullis/sign_in"))
        .await;
    browser.wait_for_text("Continue with Test IdP").await;
    browser.screenshot("sign-in").await;

    // A wrong password through the local form shows the generic error.
    browser.type_into("#login", "admin").await;
    browser.type_into("#password", "not-the-password").await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser.wait_for_text("Wrong username or password.").await;
    browser.screenshot("sign-in-error").await;

    // Through the provider's real login and consent pages.
    browser.click("a.button").await;
    browser.wait_for_url(&idp.issuer).await;
    browser.wait_for_text("name=\"login\"").await;
    browser.type_into("input[name=login]", "alice").await;
    browser.type_into("input[name=password]", "whatever").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("prompt\" value=\"consent").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_url(&format!("{base}/c/42")).await;
    let page = browser.wait_for_text("Alice Anders").await;
    assert!(page.contains("alice@example.com"), "{page}");

    // A page that refuses: the provider's callback without a flow.
    browser
        .goto(&format!("{base}/oauth2/callback?code=x&state=forged"))
        .await;
    browser.wait_for_text("This sign-in is not known").await;
    browser.screenshot("callback-error").await;

    // Sign-out goes through the provider's logout confirmation.
    browser.goto(&format!("{base}/.portcullis/sign_out")).await;
    browser.wait_for_url(&idp.issuer).await;
    browser.screenshot("provider-logout").await;
    h.running.shutdown().await;
}
