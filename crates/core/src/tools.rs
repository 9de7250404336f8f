//! Tool-level policy for MCP apps: which `tools/call` a person may make, by group and tool name.
//!
//! Rules are read in order; the first whose groups include the caller and whose patterns match
//! the tool decides (`allow` admits, `deny` refuses). With rules configured, a call no rule
//! matches is refused: deny unless allowed. Without rules, every tool is allowed (the app's
//! access policy still decides who reaches the app at all). Patterns are tool names with `*`
//! standing for any run of characters (`delete_*`, `*`).

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// Who the rule is for; empty: everyone.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// What an MCP app checks and records about tool calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    pub rules: Vec<ToolRule>,
    /// Record each call's arguments in the audit trail too (off: they may hold anything).
    pub audit_arguments: bool,
}

impl ToolPolicy {
    /// Whether someone in `groups` may call `tool`; the refusal says why.
    pub fn decide(&self, groups: &[String], tool: &str) -> Result<(), String> {
        if self.rules.is_empty() {
            return Ok(());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let applies = rule.groups.is_empty() || rule.groups.iter().any(|g| groups.contains(g));
            if !applies {
                continue;
            }
            if rule.deny.iter().any(|p| matches(p, tool)) {
                return Err(format!(
                    "the tool \"{tool}\" is denied (tool rule {})",
                    i + 1
                ));
            }
            if rule.allow.iter().any(|p| matches(p, tool)) {
                return Ok(());
            }
        }
        Err(format!("no tool rule allows \"{tool}\" for you"))
    }
}

/// A glob with `*` only, matched against the whole name.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What is wrong with a rule, if anything.
pub fn check_rule(rule: &ToolRule) -> Result<(), String> {
    if rule.allow.is_empty() == rule.deny.is_empty() {
        return Err("each tool rule has either allow or deny (a list of tool names)".into());
    }
    if let Some(bad) = rule
        .allow
        .iter()
        .chain(&rule.deny)
        .find(|p| p.trim().is_empty())
    {
        return Err(format!("{bad:?} is not a tool name or pattern"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        assert!(matches("*", "anything"));
        assert!(matches("delete_*", "delete_page"));
        assert!(!matches("delete_*", "undelete_page"));
        assert!(matches("*_page", "delete_page"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("echo", "echo"));
        assert!(!matches("echo", "echo2"));
        assert!(!matches("ab*ba", "aba"));
    }

    #[test]
    fn the_first_matching_rule_decides_and_nothing_matching_is_refused() {
        let policy = ToolPolicy {
            rules: vec![
                ToolRule {
                    groups: vec!["contractors".into()],
                    deny: vec!["delete_*".into()],
                    ..ToolRule::default()
                },
                ToolRule {
                    groups: vec!["staff".into(), "contractors".into()],
                    allow: vec!["*".into()],
                    ..ToolRule::default()
                },
            ],
            audit_arguments: false,
        };
        let staff = ["staff".to_owned()];
        let contractor = ["contractors".to_owned()];
        assert!(policy.decide(&staff, "delete_page").is_ok());
        assert!(policy.decide(&contractor, "delete_page").is_err());
        assert!(policy.decide(&contractor, "read_page").is_ok());
        assert!(
            policy.decide(&[], "read_page").is_err(),
            "no rule is for them"
        );
        assert!(ToolPolicy::default().decide(&[], "x").is_ok());
    }
}
