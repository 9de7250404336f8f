//! Loading the configuration: one TOML file plus `PORTCULLIS_*` environment overrides.

use std::path::{Path, PathBuf};

use figment::Figment;
use portcullis_core::config::Config;

mod report;

pub const DEFAULT_CONFIG_FILE: &str = "portcullis.toml";

/// Everything wrong with a configuration, each line naming the key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the configuration is not valid:")?;
        for line in &self.0 {
            writeln!(f, "  - {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates the configuration. An explicit `path` must exist; without one,
/// `portcullis.toml` is read when present and the defaults apply otherwise.
pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigErrors> {
    let used = match path {
        Some(p) if !p.is_file() => {
            return Err(ConfigErrors(vec![format!(
                "--config {}: no such file (omit --config to run on the defaults)",
                p.display()
            )]));
        }
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
            Some(PathBuf::from(DEFAULT_CONFIG_FILE))
        }
        None => None,
    };
    let file = match &used {
        Some(p) => Some(report::FileText {
            path: p.clone(),
            text: read_expanded(p)?,
        }),
        None => None,
    };
    let config = report::extract(file.as_ref(), top_level_keys()).map_err(ConfigErrors)?;
    let compiled = config
        .compile()
        .map_err(|issues| ConfigErrors(issues.iter().map(ToString::to_string).collect()))?;
    let problems = file_problems(&config, &compiled);
    if !problems.is_empty() {
        return Err(ConfigErrors(problems));
    }
    Ok((config, used))
}

/// What is wrong with the files the configuration names (certificates, keys, CA bundles): read
/// and parsed by the same code that will use them, so a start never fails on what check-config
/// passed.
fn file_problems(config: &Config, compiled: &portcullis_core::config::Compiled) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((cert, key)) = config.tls.as_ref().and_then(|tls| tls.files()) {
        use portcullis_web::tls::{CertificateFacts, expired, load_pair};
        match load_pair(cert, key) {
            Err(e) => problems.push(format!("tls: {e}")),
            Ok(pair) => {
                let now = std::time::SystemTime::now();
                if let Some(problem) =
                    CertificateFacts::of(&pair).and_then(|f| expired(cert, &f, now))
                {
                    problems.push(format!("tls.cert: {problem}"));
                }
            }
        }
    }
    if let Some(ca) = config
        .tls
        .as_ref()
        .and_then(|tls| tls.acme.as_ref())
        .and_then(|acme| acme.directory_ca.as_ref())
        && let Err(e) = portcullis_http::pem::certificates(ca)
    {
        problems.push(format!("tls.acme.directory_ca: {e}"));
    }
    for (key, problem) in portcullis_proxy::upstream::check_tls(&compiled.routes) {
        problems.push(format!("{key}: {problem}"));
    }
    problems
}

/// Whether the variable `PORTCULLIS_{name}` is configuration. Not every `PORTCULLIS_…` variable
/// is: Kubernetes gives every pod in a namespace with a Service named `portcullis` its service
/// links (`PORTCULLIS_PORT=tcp://10.0.0.1:4180`, `PORTCULLIS_SERVICE_HOST`,
/// `PORTCULLIS_PORT_4180_TCP_ADDR`, …), and wrappers set their own (`PORTCULLIS_BIN`). The rule
/// (docs/configuration.md): service links are never configuration; any other variable is when
/// it has levels (`__`), names a top-level key, or nearly does — so `PORTCULLIS_SESION__…` and
/// `PORTCULLIS_LISTN` are still refused as unknown keys, while `PORTCULLIS_BIN` is left alone.
/// `PORTCULLIS_CONFIG` names the file (clap reads it) and is never a key.
fn is_configuration(name: &str, keys: &[&str]) -> bool {
    let name = name.to_ascii_lowercase();
    if name == "config" || is_service_link(&name) {
        return false;
    }
    name.contains("__")
        || keys
            .iter()
            .any(|key| *key == name || (name.len() >= 4 && edit_distance(key, &name) <= 2))
}

/// Kubernetes' service link variables for a Service named `portcullis`, without the prefix:
/// `port`, `port_4180_tcp`, `port_4180_tcp_addr`, `service_host`, `service_port`,
/// `service_port_http`.
fn is_service_link(name: &str) -> bool {
    name == "port"
        || name.starts_with("port_")
        || name == "service_host"
        || name == "service_port"
        || name.starts_with("service_port_")
}

/// Levenshtein distance, for "nearly a key".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The configuration's top-level keys, as serde knows them: asked of `Config` itself (an
/// unknown key's error lists the expected ones), so this cannot drift from the struct.
fn top_level_keys() -> &'static [&'static str] {
    use figment::error::Kind;
    use figment::providers::Serialized;
    let probe = Figment::from(Serialized::default("portcullis-probe-not-a-key", 0));
    match probe.extract::<Config>() {
        Ok(_) => &[],
        Err(errors) => errors
            .into_iter()
            .find_map(|e| match e.kind {
                Kind::UnknownField(_, expected) => Some(expected),
                _ => None,
            })
            .unwrap_or(&[]),
    }
}

/// The file with every `${NAME}` replaced by that environment variable, so secrets (client
/// secrets, tokens) can stay out of the file — also for entries of lists such as `[[providers]]`,
/// which `PORTCULLIS_…` variables cannot address. `$${` writes a literal `${`.
fn read_expanded(path: &Path) -> Result<String, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("reading {}: {e}", path.display())]))?;
    expand_outside_comments(&text, |name| std::env::var(name).ok()).map_err(|missing| {
        ConfigErrors(
            missing
                .into_iter()
                .map(|name| {
                    format!(
                        "{}: ${{{name}}} is used but the environment variable {name} is not set",
                        path.display()
                    )
                })
                .collect(),
        )
    })
}

/// [`expand`] on every line but comment lines (a commented-out `${NAME}` — an example, a block
/// to enable later — must not demand a variable nobody set).
fn expand_outside_comments(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        match expand(line, &lookup) {
            Ok(expanded) => out.push_str(&expanded),
            Err(names) => missing.extend(names),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end)
                if after[..end]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && end > 0 =>
            {
                let name = &after[..end];
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => missing.push(name.to_owned()),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// The store the configuration names (PostgreSQL or SQLite in `data_dir`), migrated.
pub async fn open_store_sql(
    config: &portcullis_core::config::Config,
) -> Result<portcullis_store::SqlStore, String> {
    portcullis_store::SqlStore::configured(&config.store, &config.data_dir)
        .await
        .map_err(|e| {
            let place = match config.store.postgres_url() {
                Some(_) => config.store.redacted_url(),
                None => config.data_dir.display().to_string(),
            };
            format!("opening the store ({place}): {e}")
        })
}

/// [`open_store_sql`], shared as the `Store` the rest of Portcullis uses.
pub async fn open_store(
    config: &portcullis_core::config::Config,
) -> Result<std::sync::Arc<dyn portcullis_store::Store>, String> {
    Ok(std::sync::Arc::new(open_store_sql(config).await?))
}

/// The configured apps: what an API key may be limited to (besides the API scope), and which
/// of them need a second factor.
pub fn known_apps(config: &Config) -> portcullis_auth::directory::KnownApps {
    let needs =
        |app: &&portcullis_core::config::AppConfig| app.require_mfa.unwrap_or(config.mfa.required);
    portcullis_auth::directory::KnownApps {
        names: config.apps.iter().map(|app| app.name.clone()).collect(),
        need_mfa: config
            .apps
            .iter()
            .filter(needs)
            .map(|app| app.name.clone())
            .collect(),
        api_needs_mfa: config.mfa.required,
    }
}

#[cfg(test)]
mod expand_tests {
    use super::expand;

    #[test]
    fn variables_are_expanded_and_missing_ones_named() {
        let env = |name: &str| (name == "SECRET").then(|| "s3cr3t".to_owned());
        assert_eq!(expand("a = \"${SECRET}\"", env).unwrap(), "a = \"s3cr3t\"");
        assert_eq!(
            expand("literal $${SECRET} and ${ not a var", env).unwrap(),
            "literal ${SECRET} and ${ not a var"
        );
        assert_eq!(
            expand("${NOPE} ${ALSO_NOPE}", env).unwrap_err(),
            vec!["NOPE", "ALSO_NOPE"]
        );
    }

    #[test]
    fn commented_lines_are_left_alone() {
        let env = |name: &str| (name == "SECRET").then(|| "s3cr3t".to_owned());
        let text =
            "# url = \"${NOT_SET}\"\n  # also ${NOT_SET}\na = \"${SECRET}\"\nb = \"${GONE}\"\n";
        assert_eq!(
            super::expand_outside_comments(text, env).unwrap_err(),
            vec!["GONE"]
        );
        let text = "# url = \"${NOT_SET}\"\na = \"${SECRET}\"";
        assert_eq!(
            super::expand_outside_comments(text, env).unwrap(),
            "# url = \"${NOT_SET}\"\na = \"s3cr3t\""
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_links_and_wrappers_are_not_configuration_but_misspellings_are() {
        let keys = top_level_keys();
        assert!(
            keys.contains(&"listen") && keys.contains(&"session"),
            "{keys:?}"
        );
        for link in [
            "PORT",
            "PORT_4180_TCP",
            "PORT_4180_TCP_ADDR",
            "PORT_4180_TCP_PORT",
            "PORT_4180_TCP_PROTO",
            "SERVICE_HOST",
            "SERVICE_PORT",
            "SERVICE_PORT_HTTP",
            "BIN",
            "HOME_DIR",
            "CONFIG",
        ] {
            assert!(!is_configuration(link, keys), "{link}");
        }
        for key in [
            "LISTEN",
            "listen",
            "SESSION__IDLE_TIMEOUT",
            "SESION__IDLE_TIMEOUT",
            "LISTN",
            "PUBLIC_URLL",
        ] {
            assert!(is_configuration(key, keys), "{key}");
        }
    }
}
