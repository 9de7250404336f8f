//! `portcullis doctor`: reads the configurations people actually have (env files, ECS task
//! definitions, oauth2-proxy flags) and reports every known trap with what breaks, why, and the
//! fix. The catalog is [`rules::RULES`]; each rule has a stable id for CI to match on.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod import;
pub mod inputs;
pub mod own;
pub mod rules;

pub use inputs::Settings;
pub use rules::{Finding, Severity, check, most_severe_first};

/// Findings as people read them.
pub fn human(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "doctor: no known problem found\n".into();
    }
    let mut out = String::new();
    for f in findings {
        let severity = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "NOTE",
        };
        out.push_str(&format!("{severity} {}: {}\n", f.rule, f.symptom));
        if let Some(source) = &f.source {
            out.push_str(&format!("  where: {source}\n"));
        }
        out.push_str(&format!("  why:   {}\n  fix:   {}\n\n", f.why, f.fix));
    }
    out
}

/// Findings as JSON, for CI.
pub fn json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "findings": findings }))
        .unwrap_or_else(|_| "{\"findings\": []}".into())
}

/// Whether any finding is an error (doctor then exits non-zero).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
