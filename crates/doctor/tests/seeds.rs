//! The seeds' own configurations as fixtures: doctor's findings on them match what really happens
//! (../shared/reference/integrations.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_doctor::{Settings, check, has_errors};

fn rules(findings: &[portcullis_doctor::Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.rule).collect()
}

#[test]
fn the_breaking_task_definition() {
    let mut settings = Settings::default();
    settings.read_env(include_str!("fixtures/seed-td51-broken.env"), "td51.env");
    let findings = check(&settings);
    let found = rules(&findings);
    for expected in [
        "OWUI-EMPTY-SECRET",
        "OWUI-SIGNOUT-LOOP",
        "OWUI-DEFAULT-ROLE-PENDING",
    ] {
        assert!(found.contains(&expected), "{expected} missing: {found:?}");
    }
    assert!(has_errors(&findings));
}

#[test]
fn the_working_task_definition_still_has_traps() {
    let mut settings = Settings::default();
    settings
        .read_ecs(include_str!("fixtures/seed-working-task.json"), "task.json")
        .unwrap();
    let findings = check(&settings);
    let found = rules(&findings);
    // prefer-email-to-user stops X-Forwarded-Email: the app's email header is never sent.
    for expected in [
        "O2P-PREFER-EMAIL-TO-USER",
        "OWUI-HEADER-MISMATCH",
        "OWUI-NAME-IS-SUBJECT",
        "O2P-USER-ID-CLAIM-IGNORED",
        "O2P-UPSTREAM-TIMEOUT",
    ] {
        assert!(found.contains(&expected), "{expected} missing: {found:?}");
    }
    // What this configuration does get right is not flagged.
    for absent in [
        "OWUI-DEFAULT-ROLE-PENDING",
        "OWUI-SIGNOUT-LOOP",
        "O2P-SIGN-OUT-WITHOUT-IDP",
    ] {
        assert!(
            !found.contains(&absent),
            "{absent} flagged wrongly: {found:?}"
        );
    }
    let where_ = findings
        .iter()
        .find(|f| f.rule == "O2P-PREFER-EMAIL-TO-USER")
        .and_then(|f| f.source.clone())
        .unwrap();
    assert!(where_.contains("container oauth2-proxy"), "{where_}");
}

/// The final workaround: X-Forwarded-Email for both headers. Names stop being GUIDs (they become
/// emails); what is left is reported as it really behaves (integrations.md): DEFAULT_USER_ROLE
/// unset means pending for every new user, SCIM_ENABLED turns on Open WebUI's SCIM (the fallback
/// name), and two of the variables are read by nothing.
#[test]
fn the_final_task_definition_with_the_email_header_for_both() {
    let mut settings = Settings::default();
    settings.read_env(include_str!("fixtures/seed-final-task.env"), "td81.env");
    let findings = check(&settings);
    let found = rules(&findings);
    for expected in [
        "OWUI-NAME-IS-EMAIL",
        "OWUI-DEFAULT-ROLE-PENDING",
        "OWUI-SCIM-WITH-TRUSTED-HEADERS",
        "OWUI-UNREAD-SETTING",
        "O2P-USER-ID-CLAIM-IGNORED",
    ] {
        assert!(found.contains(&expected), "{expected} missing: {found:?}");
    }
    for absent in [
        "OWUI-NAME-IS-SUBJECT",
        "OWUI-HEADER-MISMATCH",
        "OWUI-EMPTY-SECRET",
    ] {
        assert!(
            !found.contains(&absent),
            "{absent} flagged wrongly: {found:?}"
        );
    }
    let unread = findings
        .iter()
        .find(|f| f.rule == "OWUI-UNREAD-SETTING")
        .and_then(|f| f.source.clone())
        .unwrap();
    assert!(
        unread.contains("WEBUI_AUTH_TYPE") && unread.contains("WEBUI_AUTH_TRUSTED_HEADER"),
        "{unread}"
    );
}
