//! `portcullis doctor` as operators and CI run it: findings, JSON, exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::process::Command;

fn doctor(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("doctor")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn doctor_reports_findings_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../doctor/tests/fixtures/seed-working-task.json");
    let (code, json) = doctor(
        &["--ecs", fixture.to_str().unwrap(), "--format", "json"],
        dir.path(),
    );
    assert_eq!(code, 1, "errors found: exit 1");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"O2P-PREFER-EMAIL-TO-USER"), "{rules:?}");
    assert_eq!(
        report["findings"][0]["severity"], "error",
        "most severe first"
    );

    let good = dir.path().join("good.env");
    std::fs::write(
        &good,
        "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Forwarded-Email\nWEBUI_AUTH_TRUSTED_NAME_HEADER=X-Forwarded-User\n\
         WEBUI_AUTH_SIGNOUT_REDIRECT_URL=https://chat.example.com/.portcullis/sign_out\nDEFAULT_USER_ROLE=user\n\
         ENABLE_PERSISTENT_CONFIG=false\n",
    )
    .unwrap();
    let (code, text) = doctor(&["--env", good.to_str().unwrap()], dir.path());
    assert_eq!((code, text.trim()), (0, "doctor: no known problem found"));

    // Portcullis's own configuration is compared with the app's: Open WebUI waits for a header
    // the openwebui profile does not send.
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[[apps]]\nname = 'chat'\nupstream = 'http://127.0.0.1:8080'\nidentity_headers = { profile = 'openwebui' }\n",
    )
    .unwrap();
    let app = dir.path().join("app.env");
    std::fs::write(
        &app,
        "WEBUI_AUTH_TRUSTED_EMAIL_HEADER=X-Auth-Request-Email\n",
    )
    .unwrap();
    let (code, text) = doctor(&["--env", app.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(text.contains("OWUI-HEADER-MISMATCH"), "{text}");

    let (code, _) = doctor(&["--env", "/no/such/file"], dir.path());
    assert_eq!(code, 2, "an unreadable input is a usage error");

    // docs/doctor.md's own example: the flags are one value, although it starts with `--`.
    let (code, text) = doctor(
        &[
            "--oauth2-proxy-args",
            "--prefer-email-to-user --user-id-claim=oid",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("O2P-PREFER-EMAIL-TO-USER"), "{text}");
}

#[test]
fn explain_shows_the_guid_case_plainly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[[apps]]\nname = 'chat'\nupstream = 'http://127.0.0.1:8080'\nidentity_headers = { profile = 'openwebui' }\n\
         [[providers]]\nid = 'cognito'\npreset = 'cognito'\nclient_id = 'abc'\nclient_secret = 'def'\n\
         issuer = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123'\n\
         [[providers]]\nid = 'mapped-badly'\npreset = 'cognito'\nclient_id = 'abc'\nclient_secret = 'def'\n\
         issuer = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123'\n\
         claims = { name = 'cognito:username' }\n",
    )
    .unwrap();
    let explain = |provider: &str, claims: &str| {
        std::fs::write(dir.path().join("claims.json"), claims).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "explain",
                "--app",
                "chat",
                "--claims",
                "claims.json",
                "--provider",
                provider,
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Cognito's username is the same UUID as the subject. Mapped as the name, it is the GUID case.
    let guid = "6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11";
    let claims = format!(
        r#"{{"sub": "{guid}", "cognito:username": "{guid}", "email": "ada@example.com", "email_verified": true}}"#
    );
    let report = explain("mapped-badly", &claims);
    assert!(report.contains("looks like an opaque id"), "{report}");
    assert!(
        report.contains(&format!("x-forwarded-user: {guid}")),
        "{report}"
    );
    // The preset never uses an opaque username as a name: it falls back to the email.
    let report = explain("cognito", &claims);
    assert!(
        report.contains("x-forwarded-user: ada@example.com"),
        "{report}"
    );
    assert!(!report.contains("looks like an opaque id"), "{report}");
    // With a name claim, the name is the name, and the subject stays out of the headers.
    let report = explain(
        "cognito",
        &format!(
            r#"{{"sub": "{guid}", "cognito:username": "{guid}", "name": "Ada Lovelace", "email": "ada@example.com", "email_verified": true}}"#
        ),
    );
    assert!(
        report.contains("x-forwarded-user: Ada Lovelace"),
        "{report}"
    );
    assert!(
        report.contains("name      ← name"),
        "where the name came from: {report}"
    );
    assert!(!report.contains("looks like an opaque id"), "{report}");
}

#[test]
fn import_oauth2_proxy_round_trips_through_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("oauth2-proxy.env");
    std::fs::write(
        &env,
        "OAUTH2_PROXY_PROVIDER=oidc\n\
         OAUTH2_PROXY_OIDC_ISSUER_URL=https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123\n\
         OAUTH2_PROXY_CLIENT_ID=77n2g266last0jim5h1c0qjckn\n\
         OAUTH2_PROXY_CLIENT_SECRET=never-copied\n\
         OAUTH2_PROXY_REDIRECT_URL=https://chat.example.com/oauth2/callback\n\
         OAUTH2_PROXY_UPSTREAMS=http://127.0.0.1:8080/\n\
         OAUTH2_PROXY_EMAIL_DOMAINS=*\n\
         OAUTH2_PROXY_HTTP_ADDRESS=0.0.0.0:4180\n\
         OAUTH2_PROXY_TRUSTED_PROXY_IPS=10.0.0.0/16\n\
         OAUTH2_PROXY_SKIP_AUTH_ROUTES=GET=/health,POST=/api/webhook\n\
         OAUTH2_PROXY_PREFER_EMAIL_TO_USER=true\n\
         OAUTH2_PROXY_USER_ID_CLAIM=email\n\
         OAUTH2_PROXY_UPSTREAM_TIMEOUT=30s\n\
         OAUTH2_PROXY_WHITELIST_DOMAINS=auth.example.com\n",
    )
    .unwrap();
    // Flags given as one value starting with `--` are read, not taken for flags of ours.
    let flags = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "import",
            "oauth2-proxy",
            "--args",
            "--provider=oidc --oidc-issuer-url=https://issuer.example.com --client-id=abc \
             --upstream=http://127.0.0.1:8080/",
        ])
        .output()
        .unwrap();
    assert!(
        flags.status.success(),
        "{}",
        String::from_utf8_lossy(&flags.stderr)
    );
    assert!(String::from_utf8_lossy(&flags.stdout).contains("https://issuer.example.com"));
    let out = dir.path().join("portcullis.toml");
    let imported = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["import", "oauth2-proxy", "--env"])
        .arg(&env)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let notes = String::from_utf8(imported.stderr).unwrap();
    for changed in [
        "prefer-email-to-user",
        "user-id-claim",
        "client secret is not copied",
        "anchored",
        "upstream-timeout",
    ] {
        assert!(notes.contains(changed), "no note about {changed}: {notes}");
    }
    let toml = std::fs::read_to_string(&out).unwrap();
    assert!(
        !toml.contains("never-copied"),
        "secrets are never written: {toml}"
    );
    assert!(toml.contains("path = \"^/health\""), "{toml}");
    let checked = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config"])
        .arg(&out)
        .env("OAUTH2_PROXY_CLIENT_SECRET", "from-the-environment")
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "the generated configuration is valid: {}\n{toml}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
