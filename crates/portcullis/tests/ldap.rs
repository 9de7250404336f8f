//! Sign-in against a real OpenLDAP (`slapd` from Debian, StartTLS required, a private CA),
//! through the same form as local accounts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::ldap::{self, BASE, SERVICE_DN, SERVICE_PASSWORD};
use common::{Harness, received};
use reqwest::StatusCode;

fn config(slapd: &ldap::Slapd, bind_password: &str) -> String {
    config_with(
        slapd,
        bind_password,
        &format!("group_base = 'ou=groups,{BASE}'\n"),
    )
}

fn config_with(slapd: &ldap::Slapd, bind_password: &str, groups: &str) -> String {
    format!(
        "[[apps]]\nname = 'chat'\nupstream = '{{upstream}}'\nidentity_headers = {{ profile = 'forwarded' }}\n\
         [ldap]\nurl = '{url}'\nstarttls = true\nca_file = '{ca}'\n\
         bind_dn = '{SERVICE_DN}'\nbind_password = '{bind_password}'\n\
         user_base = 'ou=people,{BASE}'\n{groups}\
         admin_groups = ['ldap-admins']\n",
        url = slapd.url,
        ca = slapd.ca_file,
    )
}

#[tokio::test]
async fn ldap_users_sign_in_with_their_directory_password() {
    let slapd = ldap::start().await;
    let h = Harness::start(&config(&slapd, SERVICE_PASSWORD)).await;
    h.setup_admin().await;

    let cookie = h.sign_in("alice", "alice-ldap-pw").await.unwrap();
    let echo = h.echo("/models", &cookie).await;
    assert_eq!(received(&echo, "x-forwarded-user"), ["alice"]);
    assert_eq!(received(&echo, "x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(received(&echo, "x-forwarded-groups"), ["staff"]);
    // By email too, and bob's directory group makes him an admin.
    let bob = h.sign_in("bob@example.com", "bob-ldap-pw").await.unwrap();
    let me: serde_json::Value = h
        .http
        .get(h.url("/.portcullis/api/v1/me"))
        .header("cookie", format!("_portcullis={bob}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["identity"]["role"], "admin");
    assert_eq!(me["identity"]["display_name"], "Bob Builder");

    // Refusals all look alike to the person signing in.
    for (login, password, why) in [
        ("alice", "wrong", "wrong password"),
        ("alice", "", "empty password: refused before any bind"),
        ("nobody", "alice-ldap-pw", "unknown user"),
        (
            "al*",
            "alice-ldap-pw",
            "a wildcard is a literal character, not a search",
        ),
        ("*", "alice-ldap-pw", "a lone wildcard"),
        ("alice)(uid=*", "alice-ldap-pw", "filter injection"),
        ("*)(|(uid=*", "alice-ldap-pw", "filter injection"),
    ] {
        let refused = h.sign_in(login, password).await.expect_err(why);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(
            refused
                .text()
                .await
                .unwrap()
                .contains("Wrong username or password"),
            "{why}"
        );
    }
    h.running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_or_misconfigured_directory_says_so() {
    let slapd = ldap::start().await;
    let h = Harness::start(&config(&slapd, "not-the-service-password")).await;
    h.setup_admin().await;
    let refused = h
        .sign_in("alice", "alice-ldap-pw")
        .await
        .expect_err("no service bind");
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("directory cannot be reached")
    );
    // Local accounts keep working when the directory does not.
    assert!(h.sign_in("admin", common::ADMIN_PASSWORD).await.is_ok());
    h.running.shutdown().await;
}

#[tokio::test]
async fn groups_can_come_from_member_of() {
    let slapd = ldap::start().await;
    let h = Harness::start(&config_with(&slapd, SERVICE_PASSWORD, "")).await;
    h.setup_admin().await;
    let cookie = h.sign_in("bob", "bob-ldap-pw").await.unwrap();
    let echo = h.echo("/models", &cookie).await;
    assert_eq!(received(&echo, "x-forwarded-groups"), ["ldap-admins,staff"]);
    h.running.shutdown().await;
}
