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

    // whoami: each field with the real provider's claim it came from.
    browser.goto(&format!("{base}/.portcullis/whoami")).await;
    let page = browser.wait_for_text("Where each field came from").await;
    assert!(page.contains("claim email"), "{page}");
    browser.screenshot("whoami").await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_and_keys_in_the_admin_ui() {
    let h = Harness::start("[[apps]]\nname = 'chat'\nupstream = '{upstream}'\n").await;
    h.setup_admin().await;
    let browser = Browser::start().await;
    let base = &h.base;

    // Sign in through the local form; the admin pages need it.
    browser
        .goto(&format!("{base}/.portcullis/admin/users"))
        .await;
    browser
        .wait_for_url(&format!("{base}/.portcullis/sign_in"))
        .await;
    browser.type_into("#login", "admin").await;
    browser.type_into("#password", common::ADMIN_PASSWORD).await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser
        .wait_for_url(&format!("{base}/.portcullis/admin/users"))
        .await;
    browser.wait_for_text("Add a user").await;

    // Create a user.
    browser.type_into("#username", "frank").await;
    browser.type_into("#display_name", "Frank Fields").await;
    browser.type_into("#email", "frank@example.com").await;
    browser
        .click("form[action='/.portcullis/admin/users'][method=post] button")
        .await;
    browser
        .wait_for_url(&format!("{base}/.portcullis/admin/users/frank"))
        .await;
    browser.wait_for_text("User created.").await;

    // Put them in a group.
    browser.type_into("#group", "ops").await;
    browser.click("form[action$='/groups'] button").await;
    browser.wait_for_text("Added to the group.").await;
    assert!(browser.source().await.contains("<td>ops</td>"));

    // Create a key: shown once; it works on the proxy.
    browser.type_into("#key-name", "ci-pipeline").await;
    browser.type_into("#key-apps", "chat").await;
    browser.click("form[action$='/keys'] button").await;
    let page = browser.wait_for_text("Copy it now").await;
    let start = page.find("id=\"new-key\">").unwrap() + "id=\"new-key\">".len();
    let key = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("pcs_"), "{key}");
    browser.screenshot("admin-user-new-key").await;
    // The page script (allowed by its hash, the only script the CSP lets run) shows the copy
    // button, and the button copies the key.
    let shown = browser
        .eval("return !document.querySelector('button[data-copy=\"new-key\"]').hidden")
        .await;
    assert_eq!(shown, true, "the copy button runs");
    browser.click("button[data-copy='new-key']").await;
    let mut answered = false;
    for _ in 0..50 {
        let page = browser.source().await;
        if page.contains(">Copied<") || page.contains("Copying failed") {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(answered, "the copy button answered");
    let works = h
        .http
        .get(h.url("/deploy"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(works.status(), reqwest::StatusCode::OK);

    // Revoke it.
    browser
        .click("button[aria-label='Revoke ci-pipeline']")
        .await;
    browser.wait_for_text("Key revoked.").await;
    let refused = h
        .http
        .get(h.url("/deploy"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The users list finds them; the audit log shows what happened.
    browser
        .goto(&format!("{base}/.portcullis/admin/users?q=frank"))
        .await;
    browser.wait_for_text("1–1 of 1").await;
    browser.screenshot("admin-users").await;
    browser
        .goto(&format!("{base}/.portcullis/admin/audit"))
        .await;
    let audit = browser.wait_for_text("key_revoked").await;
    for action in ["key_created", "group_added", "user_created", "sign_in"] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit page"
        );
    }
    browser.screenshot("admin-audit").await;
    h.running.shutdown().await;
}

/// The password flows as a person goes through them: an admin hands out a reset link, the user
/// chooses a password with it, signs in, and changes it on the account page (a mistake first,
/// shown next to the field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_recovered_with_a_link_and_changed_on_the_account_page() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user(
        "grace",
        Some("grace@example.com"),
        None,
        portcullis_core::Role::User,
        &[],
    )
    .await;
    let issued: serde_json::Value = h
        .http
        .post(h.url("/.portcullis/api/v1/users/grace/reset-link"))
        .header("cookie", format!("_portcullis={admin}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = Browser::start().await;
    let base = &h.base;

    browser.goto(issued["url"].as_str().unwrap()).await;
    browser.wait_for_text("Choose a new password").await;
    let violations = browser.accessibility_violations().await;
    assert!(violations.is_empty(), "reset page: {violations:#?}");
    browser.type_into("#password", "password123").await;
    browser.type_into("#confirm", "password123").await;
    browser
        .click("form[action='/.portcullis/reset'] button")
        .await;
    browser.wait_for_text("most common").await;
    browser.screenshot("reset-link-refused").await;
    browser.type_into("#password", "a garden of tulips").await;
    browser.type_into("#confirm", "a garden of tulips").await;
    browser
        .click("form[action='/.portcullis/reset'] button")
        .await;
    browser
        .wait_for_text("Your password has been changed")
        .await;
    browser.screenshot("sign-in-after-reset").await;

    browser.type_into("#login", "grace").await;
    browser.type_into("#password", "a garden of tulips").await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    // Signed in: the built-in whoami page (no app is configured) shows who.
    browser.wait_for_text("grace@example.com").await;
    browser.goto(&format!("{base}/.portcullis/account")).await;
    browser.wait_for_text("Change password").await;
    browser
        .type_into("#current_password", "not it at all")
        .await;
    browser.type_into("#password", "rain on the window").await;
    browser.type_into("#confirm", "rain on the window").await;
    browser
        .click("form[action='/.portcullis/account/password'] button")
        .await;
    let page = browser
        .wait_for_text("That is not your current password.")
        .await;
    assert!(
        page.contains("aria-invalid=\"true\""),
        "the field is marked"
    );
    browser.screenshot("account-password-error").await;
    let violations = browser.accessibility_violations().await;
    assert!(
        violations.is_empty(),
        "account page with an error: {violations:#?}"
    );
    browser
        .type_into("#current_password", "a garden of tulips")
        .await;
    browser.type_into("#password", "rain on the window").await;
    browser.type_into("#confirm", "rain on the window").await;
    browser
        .click("form[action='/.portcullis/account/password'] button")
        .await;
    browser
        .wait_for_text("Your password has been changed; your other sessions have ended.")
        .await;
    browser.screenshot("account-password-changed").await;
    assert!(h.sign_in("grace", "rain on the window").await.is_ok());
    h.running.shutdown().await;
}

/// The second-factor pages must be usable with a keyboard and a screen reader, and fit a phone.
async fn check_page(browser: &Browser, name: &str) {
    for (width, suffix) in [(1280, ""), (390, "-phone")] {
        browser.resize(width, 900).await;
        browser.screenshot(&format!("{name}{suffix}")).await;
        let violations = browser.accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "{name} at {width} px: {violations:#?}"
        );
        let sideways = browser
            .eval("return document.documentElement.scrollWidth > window.innerWidth")
            .await;
        assert_eq!(sideways, false, "{name} scrolls sideways at {width} px");
    }
    browser.resize(1280, 900).await;
}

/// Signs in at the test provider's real login and consent pages as alice.
async fn provider_sign_in(browser: &Browser, issuer: &str) {
    browser.click("a.button").await;
    browser.wait_for_url(issuer).await;
    browser.wait_for_text("name=\"login\"").await;
    browser.type_into("input[name=login]", "alice").await;
    browser.type_into("input[name=password]", "whatever").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("prompt\" value=\"consent").await;
    browser.click("button[type=submit]").await;
}

/// The text of the element `css` on the current page.
async fn text_of(browser: &Browser, css: &str) -> String {
    let script = format!("return document.querySelector({css:?}).textContent");
    browser.eval(&script).await.as_str().unwrap().to_owned()
}

/// Types the code the authenticator app with `secret` shows at `at` (seconds from now).
async fn type_code(browser: &Browser, css: &str, secret: &str, ahead: u64) {
    let secret = portcullis_auth::factors::totp::TotpSecret::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = secret.code_at(portcullis_core::Timestamp(
        i64::try_from(now + ahead).unwrap(),
    ));
    browser.type_into(css, &code).await;
}

/// A provider sign-in without `amr` reaches a `require_mfa` app only after a Portcullis factor:
/// the first time by setting up an authenticator app (QR code, first code, recovery codes), the
/// next time with the app's code. A local account gets the code step after its password, and
/// a recovery code stands in for a lost phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factors_are_set_up_and_used_in_chromium() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&base, &[]);
    let app = "[[apps]]\nname = 'vault'\nupstream = '{upstream}'\nrequire_mfa = true\nidentity_headers = { profile = 'openwebui' }\n";
    let h = Harness::start_at(port, &format!("{app}{}", idp.provider_toml(""))).await;
    h.setup_admin().await;
    h.add_user(
        "grace",
        Some("grace@example.com"),
        None,
        portcullis_core::Role::User,
        &[],
    )
    .await;
    // Signed in through the provider, which says nothing about factors: set one up first.
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/c/42")).await;
    browser.wait_for_text("Continue with Test IdP").await;
    provider_sign_in(&browser, &idp.issuer).await;
    browser.wait_for_text("A second factor is needed").await;
    check_page(&browser, "step-up-set-up-needed").await;
    browser.click("a.button").await;
    browser.wait_for_text("Set up an authenticator app").await;
    check_page(&browser, "factor-set-up").await;
    let secret = text_of(&browser, "#totp-secret").await.replace(' ', "");
    browser.type_into("#label", "Pixel").await;
    browser.type_into("#code", "000000").await;
    browser
        .click("form[action='/.portcullis/account/factors/totp'] button")
        .await;
    let page = browser.wait_for_text("That code is not right").await;
    assert!(
        page.contains("aria-invalid=\"true\""),
        "the field is marked"
    );
    browser.screenshot("factor-set-up-wrong-code").await;
    assert_eq!(
        text_of(&browser, "#totp-secret").await.replace(' ', ""),
        secret,
        "the same secret, so the app already scanned still works"
    );
    type_code(&browser, "#code", &secret, 0).await;
    browser
        .click("form[action='/.portcullis/account/factors/totp'] button")
        .await;
    browser.wait_for_text("They are shown only now").await;
    check_page(&browser, "recovery-codes").await;
    browser.click("a.button").await;
    browser.wait_for_url(&format!("{base}/c/42")).await;
    browser.wait_for_text("Alice Anders").await;

    // Another browser, another provider sign-in: now the app's code is asked.
    let second = Browser::start().await;
    second.goto(&format!("{base}/c/43")).await;
    second.wait_for_text("Continue with Test IdP").await;
    provider_sign_in(&second, &idp.issuer).await;
    second.wait_for_text("Two-step verification").await;
    check_page(&second, "step-up-code").await;
    // The code of the next step: the one just used to set the app up is spent.
    type_code(&second, "#code", &secret, 30).await;
    second
        .click("form[action='/.portcullis/sign_in/factor'] button")
        .await;
    second.wait_for_url(&format!("{base}/c/43")).await;
    second.wait_for_text("Alice Anders").await;
    second.goto(&format!("{base}/.portcullis/whoami")).await;
    second.wait_for_text("(a second factor)").await;

    // A local account: the app on the account page, then the code step after the password.
    let third = Browser::start().await;
    third
        .goto(&format!(
            "{base}/.portcullis/sign_in?rd=/.portcullis/account"
        ))
        .await;
    third.type_into("#login", "grace").await;
    third.type_into("#password", "user-password-1").await;
    third
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    third.wait_for_text("Second factors").await;
    third.click("#factors-panel a.button").await;
    third.wait_for_text("Set up an authenticator app").await;
    let secret = text_of(&third, "#totp-secret").await.replace(' ', "");
    type_code(&third, "#code", &secret, 0).await;
    third
        .click("form[action='/.portcullis/account/factors/totp'] button")
        .await;
    third.wait_for_text("They are shown only now").await;
    let codes = third
        .eval(
            "return [...document.querySelectorAll('#recovery-codes li')].map(li => li.textContent)",
        )
        .await;
    let recovery = codes[0].as_str().unwrap().to_owned();
    third.click("a.button").await;
    let page = third.wait_for_text("Recovery codes left: 10 of 10").await;
    assert!(page.contains("Authenticator app"), "{page}");
    check_page(&third, "account-with-factor").await;

    let fourth = Browser::start().await;
    fourth
        .goto(&format!(
            "{base}/.portcullis/sign_in?rd=/.portcullis/account"
        ))
        .await;
    fourth.type_into("#login", "grace").await;
    fourth.type_into("#password", "user-password-1").await;
    fourth
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    fourth.wait_for_text("Your password is right").await;
    check_page(&fourth, "sign-in-code").await;
    fourth.type_into("#code", "123456").await;
    fourth
        .click("form[action='/.portcullis/sign_in/factor'] button")
        .await;
    fourth.wait_for_text("That code is not right").await;
    fourth.screenshot("sign-in-code-wrong").await;
    fourth.type_into("#code", &recovery).await;
    fourth
        .click("form[action='/.portcullis/sign_in/factor'] button")
        .await;
    fourth.wait_for_text("Recovery codes left: 9 of 10").await;
    h.running.shutdown().await;
}

/// Passkeys with Chromium's virtual authenticator: added on the account page (the session
/// steps up, recovery codes are shown once), then a passwordless sign-in that reaches a
/// `require_mfa` app directly, and the passkey as the second factor after a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_are_added_and_sign_in_with_chromiums_virtual_authenticator() {
    let app = "[[apps]]\nname = 'vault'\nupstream = '{upstream}'\nrequire_mfa = true\n";
    let h = Harness::start_on_localhost(app).await;
    h.setup_admin().await;
    h.add_user(
        "grace",
        Some("grace@example.com"),
        Some("Grace Hopper"),
        portcullis_core::Role::User,
        &[],
    )
    .await;
    let base = format!("http://localhost:{}", h.running.addr.port());
    let browser = Browser::start().await;
    let authenticator = browser.add_virtual_authenticator().await;

    browser
        .goto(&format!(
            "{base}/.portcullis/sign_in?rd=/.portcullis/account"
        ))
        .await;
    browser.type_into("#login", "grace").await;
    browser.type_into("#password", "user-password-1").await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser.wait_for_text("Add a passkey").await;
    browser.type_into("#passkey-label", "Laptop").await;
    browser
        .click("form[action='/.portcullis/account/passkeys'] button")
        .await;
    browser.wait_for_text("Passkey added").await;
    browser.wait_for_text("They are shown only now").await;
    let held = browser.credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "one discoverable credential: {held:?}");
    assert_eq!(held[0]["isResidentCredential"], true);
    browser.click("a.button").await;
    let page = browser.wait_for_text("Passkey").await;
    assert!(page.contains("Laptop"), "{page}");
    check_page(&browser, "account-with-passkey").await;

    // Signed out, the passkey alone signs in, and counts as two factors: the vault opens.
    browser.goto(&format!("{base}/.portcullis/sign_out")).await;
    browser.wait_for_text("signed out").await;
    browser.goto(&format!("{base}/vault/report")).await;
    browser.wait_for_text("Sign in with a passkey").await;
    check_page(&browser, "sign-in-with-passkey").await;
    browser
        .click("form[action='/.portcullis/sign_in/passkey'] button")
        .await;
    browser.wait_for_url(&format!("{base}/vault/report")).await;
    browser.goto(&format!("{base}/.portcullis/whoami")).await;
    let page = browser.wait_for_text("(a second factor)").await;
    assert!(page.contains("hwk, mfa"), "{page}");

    // After a password, the passkey is the second factor.
    browser.goto(&format!("{base}/.portcullis/sign_out")).await;
    browser.wait_for_text("signed out").await;
    browser
        .goto(&format!("{base}/.portcullis/sign_in?rd=/vault/second"))
        .await;
    browser.type_into("#login", "grace").await;
    browser.type_into("#password", "user-password-1").await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser.wait_for_text("Use a passkey").await;
    check_page(&browser, "sign-in-code-or-passkey").await;
    browser
        .click("form.passkey[action='/.portcullis/sign_in/factor'] button")
        .await;
    browser.wait_for_url(&format!("{base}/vault/second")).await;
    h.running.shutdown().await;
}

/// Every admin page at a desktop and a phone width: screenshots to look at, no serious
/// accessibility violation (axe-core), and no horizontal scrolling of the page itself at 390 px
/// (wide tables scroll inside their panel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_page_fits_a_desktop_and_a_phone() {
    let h = Harness::start("").await;
    let admin = h.setup_admin().await;
    h.add_user(
        "frank",
        Some("frank@example.com"),
        Some("Frank Fields"),
        portcullis_core::Role::User,
        &["ops"],
    )
    .await;
    let _ = h.sign_in("frank", "user-password-1").await.unwrap();
    let key = h
        .http
        .post(h.url("/.portcullis/api/v1/users/frank/keys"))
        .header("cookie", format!("_portcullis={admin}"))
        .json(&serde_json::json!({"name": "a-rather-long-key-name-for-a-pipeline"}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), reqwest::StatusCode::CREATED);
    let browser = Browser::start().await;
    let base = &h.base;
    browser
        .goto(&format!(
            "{base}/.portcullis/sign_in?rd=/.portcullis/admin/users"
        ))
        .await;
    browser.type_into("#login", "admin").await;
    browser.type_into("#password", common::ADMIN_PASSWORD).await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser.wait_for_text("Add a user").await;

    let pages = [
        ("admin-users", "/.portcullis/admin/users"),
        ("admin-user", "/.portcullis/admin/users/frank"),
        ("admin-user-delete", "/.portcullis/admin/users/frank/delete"),
        ("admin-groups", "/.portcullis/admin/groups"),
        ("admin-group", "/.portcullis/admin/groups/ops"),
        ("admin-audit", "/.portcullis/admin/audit"),
        ("admin-outbox", "/.portcullis/admin/outbox"),
        ("account", "/.portcullis/account"),
    ];
    // Light and dark mode each get axe-core's contrast check (WCAG AA).
    for (width, height, scheme) in [
        (1280, 900, "light"),
        (390, 844, "light"),
        (1280, 900, "dark"),
    ] {
        browser.resize(width, height).await;
        browser.color_scheme(scheme).await;
        for (name, path) in pages {
            browser.goto(&format!("{base}{path}")).await;
            browser.wait_for_text("Portcullis").await;
            browser
                .screenshot(&format!("{name}-{width}-{scheme}"))
                .await;
            let violations = browser.accessibility_violations().await;
            assert!(
                violations.is_empty(),
                "{path} at {width} px, {scheme}: {violations:#?}"
            );
            let overflow = browser
                .eval("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
                .await;
            assert!(
                overflow.as_i64().unwrap() <= 0,
                "{path} scrolls sideways by {overflow} px at {width} px"
            );
        }
    }
    h.running.shutdown().await;
}

/// The pages outside the admin UI pass axe-core too, at a desktop and a phone width: the setup
/// page, the sign-in page, whoami, the must-change step, and the error pages (404, 403, 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_page_passes_axe_at_both_widths() {
    let h = Harness::start("[local_auth]\nfree_attempts = 1\nbase_backoff = '60s'\n").await;
    let base = h.base.clone();
    let browser = Browser::start().await;
    let link = h.running.setup_link.clone().unwrap();
    browser.goto(&link).await;
    browser.wait_for_text("Create the admin account").await;
    check_page(&browser, "setup").await;
    let admin = h.setup_admin().await;
    h.add_user(
        "ivan",
        Some("ivan@example.com"),
        None,
        portcullis_core::Role::User,
        &[],
    )
    .await;
    let set = h
        .http
        .put(h.url("/.portcullis/api/v1/users/ivan/password"))
        .header("cookie", format!("_portcullis={admin}"))
        .json(&serde_json::json!({"password": "a temporary phrase", "must_change": true}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());

    browser.goto(&format!("{base}/.portcullis/sign_in")).await;
    browser.wait_for_text("Sign in").await;
    check_page(&browser, "sign-in-page").await;
    browser.type_into("#login", "ivan").await;
    browser.type_into("#password", "a temporary phrase").await;
    browser
        .click("form[action='/.portcullis/sign_in'] button")
        .await;
    browser.wait_for_text("Your administrator asks you").await;
    check_page(&browser, "must-change").await;
    browser.type_into("#password", "ivan picks a phrase").await;
    browser.type_into("#confirm", "ivan picks a phrase").await;
    browser
        .click("form[action='/.portcullis/sign_in/new_password'] button")
        .await;
    browser.wait_for_text("ivan@example.com").await;
    browser.goto(&format!("{base}/.portcullis/whoami")).await;
    browser.wait_for_text("Where each field came from").await;
    check_page(&browser, "whoami-page").await;
    browser
        .goto(&format!("{base}/.portcullis/admin/users"))
        .await;
    browser.wait_for_text("Access denied").await;
    check_page(&browser, "error-403").await;
    browser
        .goto(&format!("{base}/.portcullis/no-such-page"))
        .await;
    browser
        .wait_for_text("Portcullis has no page at this address")
        .await;
    check_page(&browser, "error-404").await;

    // One free attempt: two wrong passwords lock the account, the third attempt is throttled.
    let fresh = Browser::start().await;
    fresh.goto(&format!("{base}/.portcullis/sign_in")).await;
    let wrong = "Wrong username or password.";
    for (i, expected) in [wrong, wrong, "Too many failed sign-ins"]
        .iter()
        .enumerate()
    {
        fresh.wait_for_text("Sign in").await;
        if i == 0 {
            // Afterwards the form keeps the name and asks only for the password again.
            fresh.type_into("#login", "ivan").await;
        }
        fresh.type_into("#password", "not the phrase").await;
        fresh
            .click("form[action='/.portcullis/sign_in'] button")
            .await;
        fresh.wait_for_text(expected).await;
    }
    fresh.wait_for_text("Too many failed sign-ins").await;
    check_page(&fresh, "error-429").await;
    h.running.shutdown().await;
}
