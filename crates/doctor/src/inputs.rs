//! The configurations doctor reads: env files (Open WebUI and oauth2-proxy variables), AWS ECS
//! task definitions (every container's `environment`), and oauth2-proxy flags. Everything is
//! reduced to variables, each remembered with where it came from.

use std::collections::BTreeMap;

/// One variable and its origin (`task.json: open-webui`, `.env:12`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub source: String,
}

/// Every variable seen, by name. Later sources override earlier ones, as in a real deployment.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    vars: BTreeMap<String, Setting>,
}

impl Settings {
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.vars.get(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(|s| s.value.as_str())
    }

    /// A boolean as these apps read it: `true`, `1`, `yes` (any case).
    pub fn truthy(&self, name: &str) -> bool {
        self.value(name)
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn set(&mut self, name: &str, value: &str, source: String) {
        self.vars.insert(
            name.trim().to_owned(),
            Setting {
                value: value.to_owned(),
                source,
            },
        );
    }

    /// Open WebUI is configured here (any of its trusted-header or auth variables).
    pub fn has_openwebui(&self) -> bool {
        self.vars.keys().any(|k| {
            k.starts_with("WEBUI_") || k == "DEFAULT_USER_ROLE" || k == "ENABLE_PASSWORD_AUTH"
        })
    }

    /// oauth2-proxy is configured here.
    pub fn has_oauth2_proxy(&self) -> bool {
        self.vars.keys().any(|k| k.starts_with("OAUTH2_PROXY_"))
    }

    /// An env file: `KEY=value`, optional `export`, quotes, `#` comments.
    pub fn read_env(&mut self, text: &str, file: &str) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or_else(|| value.split(" #").next().unwrap_or(value).trim());
            self.set(key, value, format!("{file}:{}", n + 1));
        }
    }

    /// An ECS task definition: every container's `environment` (`{name, value}` pairs).
    pub fn read_ecs(&mut self, text: &str, file: &str) -> Result<(), String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{file} is not JSON: {e}"))?;
        let definition = doc.get("taskDefinition").unwrap_or(&doc);
        let containers = definition
            .get("containerDefinitions")
            .and_then(|c| c.as_array())
            .ok_or_else(|| {
                format!("{file} has no containerDefinitions: is it an ECS task definition?")
            })?;
        for container in containers {
            let name = container
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("?");
            for pair in container
                .get("environment")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                if let (Some(key), Some(value)) = (
                    pair.get("name").and_then(|n| n.as_str()),
                    pair.get("value").and_then(|v| v.as_str()),
                ) {
                    self.set(key, value, format!("{file}: container {name}"));
                }
            }
        }
        Ok(())
    }

    /// oauth2-proxy command-line flags (`--prefer-email-to-user`, `--user-id-claim=oid`), kept
    /// under their environment names (`OAUTH2_PROXY_PREFER_EMAIL_TO_USER`).
    pub fn read_oauth2_proxy_flags(&mut self, args: &str, file: &str) {
        for arg in args.split_whitespace() {
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, value) = flag.split_once('=').unwrap_or((flag, "true"));
            let env = format!(
                "OAUTH2_PROXY_{}",
                name.replace('-', "_").to_ascii_uppercase()
            );
            self.set(&env, value.trim_matches('"'), format!("{file}: --{name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_ecs_and_flags_are_read() {
        let mut s = Settings::default();
        s.read_env(
            "# comment\nexport A=1\nB=\"two words\"\nC='x' \nD=plain # trailing\n",
            ".env",
        );
        assert_eq!(s.value("A"), Some("1"));
        assert_eq!(s.value("B"), Some("two words"));
        assert_eq!(s.value("C"), Some("x"));
        assert_eq!(s.value("D"), Some("plain"));
        assert_eq!(s.get("D").unwrap().source, ".env:5");
        s.read_ecs(
            r#"{"containerDefinitions": [{"name": "webui", "environment": [{"name": "DEFAULT_USER_ROLE", "value": "pending"}]}]}"#,
            "task.json",
        )
        .unwrap();
        assert_eq!(s.value("DEFAULT_USER_ROLE"), Some("pending"));
        assert!(s.read_ecs("{}", "bad.json").is_err());
        s.read_oauth2_proxy_flags("--prefer-email-to-user --user-id-claim=oid", "args");
        assert!(s.truthy("OAUTH2_PROXY_PREFER_EMAIL_TO_USER"));
        assert_eq!(s.value("OAUTH2_PROXY_USER_ID_CLAIM"), Some("oid"));
    }
}
