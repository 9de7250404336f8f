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
    /// The identity headers Portcullis's own configuration sends to apps (lower case).
    gateway_headers: Option<Vec<String>>,
    /// The origins people reach the apps at, from Portcullis's own configuration.
    gateway_origins: Vec<String>,
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

    /// Portcullis is the proxy in front, sending these identity headers.
    pub fn set_gateway_headers(&mut self, headers: Vec<String>) {
        self.gateway_headers = Some(
            headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        );
    }

    pub fn gateway_headers(&self) -> Option<&[String]> {
        self.gateway_headers.as_deref()
    }

    /// Portcullis serves the apps at these URLs (its public URL, each app's host).
    pub fn set_gateway_origins(&mut self, urls: &[String]) {
        self.gateway_origins = urls.iter().filter_map(|u| origin_of(u)).collect();
    }

    /// The origins people's browsers use: Portcullis's, and the absolute URLs Open WebUI and
    /// oauth2-proxy are configured with (`WEBUI_URL`, the sign-out and redirect URLs).
    pub fn public_origins(&self) -> Vec<String> {
        let mut origins = self.gateway_origins.clone();
        for name in [
            "WEBUI_URL",
            "WEBUI_AUTH_SIGNOUT_REDIRECT_URL",
            "OAUTH2_PROXY_REDIRECT_URL",
        ] {
            if let Some(origin) = self.value(name).and_then(origin_of) {
                origins.push(origin);
            }
        }
        origins.sort();
        origins.dedup();
        origins
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

    /// An ECS task definition: every container's `environment` (`{name, value}` pairs). Also
    /// what is usually cut out of one: `aws ecs describe-task-definition` (`taskDefinition`), a
    /// single container definition, or the bare list of `{name, value}` pairs that
    /// `… | jq '.taskDefinition.containerDefinitions[0].environment'` prints.
    pub fn read_ecs(&mut self, text: &str, file: &str) -> Result<(), String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{file} is not JSON: {e}"))?;
        let definition = doc.get("taskDefinition").unwrap_or(&doc);
        if let Some(containers) = definition
            .get("containerDefinitions")
            .and_then(|c| c.as_array())
        {
            for container in containers {
                let name = container
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("?");
                if let Some(pairs) = container.get("environment").and_then(|e| e.as_array()) {
                    self.read_pairs(pairs, &format!("{file}: container {name}"));
                }
            }
            return Ok(());
        }
        let pairs = definition
            .get("environment")
            .and_then(|e| e.as_array())
            .or_else(|| definition.as_array())
            .filter(|pairs| pairs.iter().all(|p| p.get("name").is_some()));
        match pairs {
            Some(pairs) => {
                self.read_pairs(pairs, file);
                Ok(())
            }
            None => Err(format!(
                "{file} has no containerDefinitions, environment or list of {{name, value}}: \
                 is it an ECS task definition?"
            )),
        }
    }

    /// `{name, value}` pairs, as ECS writes an environment.
    fn read_pairs(&mut self, pairs: &[serde_json::Value], origin: &str) {
        for pair in pairs {
            if let (Some(key), Some(value)) = (
                pair.get("name").and_then(|n| n.as_str()),
                pair.get("value").and_then(|v| v.as_str()),
            ) {
                self.set(key, value, origin.to_owned());
            }
        }
    }

    /// A docker-compose file: every service's `environment` (a map or a `KEY=value` list), and
    /// the flags of a service that runs oauth2-proxy.
    pub fn read_compose(&mut self, text: &str, file: &str) -> Result<(), String> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("{file} is not YAML: {e}"))?;
        let services = doc
            .get("services")
            .and_then(|s| s.as_mapping())
            .ok_or_else(|| format!("{file} has no services: is it a docker-compose file?"))?;
        for (name, service) in services {
            let name = name.as_str().unwrap_or("?");
            let origin = format!("{file}: service {name}");
            match service.get("environment") {
                Some(serde_yaml::Value::Mapping(map)) => {
                    for (key, value) in map {
                        let value = match value {
                            serde_yaml::Value::String(s) => s.clone(),
                            serde_yaml::Value::Bool(b) => b.to_string(),
                            serde_yaml::Value::Number(n) => n.to_string(),
                            _ => String::new(),
                        };
                        if let Some(key) = key.as_str() {
                            self.set(key, &value, origin.clone());
                        }
                    }
                }
                Some(serde_yaml::Value::Sequence(list)) => {
                    for item in list.iter().filter_map(|i| i.as_str()) {
                        if let Some((key, value)) = item.split_once('=') {
                            self.set(key, value, origin.clone());
                        }
                    }
                }
                _ => {}
            }
            let image = service.get("image").and_then(|i| i.as_str()).unwrap_or("");
            if image.contains("oauth2-proxy") {
                let command = match service.get("command") {
                    Some(serde_yaml::Value::String(s)) => s.clone(),
                    Some(serde_yaml::Value::Sequence(list)) => list
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                self.read_oauth2_proxy_flags(&command, &origin);
            }
        }
        Ok(())
    }

    /// An oauth2-proxy cfg file (`key = "value"` or `key = ["a", "b"]`, TOML), kept under the
    /// env names.
    pub fn read_oauth2_proxy_cfg(&mut self, text: &str, file: &str) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim();
                let value = match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                    Some(items) => items
                        .split(',')
                        .map(|i| i.trim().trim_matches('"'))
                        .filter(|i| !i.is_empty())
                        .collect::<Vec<_>>()
                        .join(","),
                    None => value.trim_matches('"').to_owned(),
                };
                self.set(&oauth2_proxy_env(key), &value, format!("{file}:{}", n + 1));
            }
        }
    }

    /// oauth2-proxy command-line flags (`--prefer-email-to-user`, `--user-id-claim=oid`), kept
    /// under their environment names (`OAUTH2_PROXY_PREFER_EMAIL_TO_USER`); a repeated flag
    /// (`--upstream a --upstream b`) becomes a comma-separated list, as in the environment.
    pub fn read_oauth2_proxy_flags(&mut self, args: &str, file: &str) {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for arg in args.split_whitespace() {
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, value) = flag.split_once('=').unwrap_or((flag, "true"));
            let env = oauth2_proxy_env(name);
            let value = value.trim_matches('"');
            let joined = match seen.get(&env) {
                Some(earlier) => format!("{earlier},{value}"),
                None => value.to_owned(),
            };
            seen.insert(env.clone(), joined.clone());
            self.set(&env, &joined, format!("{file}: --{name}"));
        }
    }
}

/// oauth2-proxy's environment name for a flag or cfg key: list options are singular as flags
/// (`--upstream`) and plural in the environment (`OAUTH2_PROXY_UPSTREAMS`).
fn oauth2_proxy_env(option: &str) -> String {
    let upper = option.trim().replace('-', "_").to_ascii_uppercase();
    let name = match upper.as_str() {
        "UPSTREAM" => "UPSTREAMS",
        "EMAIL_DOMAIN" => "EMAIL_DOMAINS",
        "SKIP_AUTH_ROUTE" => "SKIP_AUTH_ROUTES",
        "WHITELIST_DOMAIN" => "WHITELIST_DOMAINS",
        "ALLOWED_GROUP" => "ALLOWED_GROUPS",
        "TRUSTED_PROXY_IP" => "TRUSTED_PROXY_IPS",
        "COOKIE_DOMAIN" => "COOKIE_DOMAINS",
        other => other,
    };
    format!("OAUTH2_PROXY_{name}")
}

/// `scheme://host[:port]` of an absolute http(s) URL, lower case, as browsers send `Origin`
/// (the default port left out).
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let authority = authority.rsplit('@').next()?;
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
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
        assert!(s.read_ecs("[1, 2]", "numbers.json").is_err());
        // What `aws ecs describe-task-definition … | jq '…environment'` prints: a bare list.
        s.read_ecs(
            r#"[{"name": "ENABLE_OAUTH_SIGNUP", "value": "true"}, {"name": "WEBUI_URL", "value": "https://chat.example.com"}]"#,
            "env.json",
        )
        .unwrap();
        assert_eq!(s.value("WEBUI_URL"), Some("https://chat.example.com"));
        assert_eq!(s.get("WEBUI_URL").unwrap().source, "env.json");
        // One container definition.
        s.read_ecs(
            r#"{"name": "webui", "environment": [{"name": "DEFAULT_USER_ROLE", "value": "user"}]}"#,
            "container.json",
        )
        .unwrap();
        assert_eq!(s.value("DEFAULT_USER_ROLE"), Some("user"));
        s.read_compose(
            "services:\n  webui:\n    image: ghcr.io/open-webui/open-webui\n    environment:\n      ENABLE_SCIM: true\n  \
             proxy:\n    image: quay.io/oauth2-proxy/oauth2-proxy\n    environment:\n      - OAUTH2_PROXY_REVERSE_PROXY=true\n    \
             command: [\"--set-xauthrequest\", \"--upstream-timeout=5m\"]\n",
            "compose.yml",
        )
        .unwrap();
        assert!(s.truthy("ENABLE_SCIM"));
        assert!(s.truthy("OAUTH2_PROXY_REVERSE_PROXY"));
        assert!(s.truthy("OAUTH2_PROXY_SET_XAUTHREQUEST"));
        assert_eq!(s.value("OAUTH2_PROXY_UPSTREAM_TIMEOUT"), Some("5m"));
        assert!(s.read_compose("a: 1", "x.yml").is_err());
        s.read_oauth2_proxy_cfg(
            "# cfg\nskip_auth_routes = \"GET=/x\"\nupstreams = [ \"http://a:1/\", \"http://b:2/b\" ]\n",
            "o2p.cfg",
        );
        assert_eq!(s.value("OAUTH2_PROXY_SKIP_AUTH_ROUTES"), Some("GET=/x"));
        assert_eq!(
            s.value("OAUTH2_PROXY_UPSTREAMS"),
            Some("http://a:1/,http://b:2/b")
        );
        s.read_oauth2_proxy_flags(
            "--upstream=http://c:3/ --upstream=http://d:4/ --email-domain=*",
            "args",
        );
        assert_eq!(
            s.value("OAUTH2_PROXY_UPSTREAMS"),
            Some("http://c:3/,http://d:4/")
        );
        assert_eq!(s.value("OAUTH2_PROXY_EMAIL_DOMAINS"), Some("*"));
        s.read_oauth2_proxy_flags("--prefer-email-to-user --user-id-claim=oid", "args");
        assert!(s.truthy("OAUTH2_PROXY_PREFER_EMAIL_TO_USER"));
        assert_eq!(s.value("OAUTH2_PROXY_USER_ID_CLAIM"), Some("oid"));
    }
}
