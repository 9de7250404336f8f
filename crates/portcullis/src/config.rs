//! Loading the configuration: one TOML file plus `PORTCULLIS_*` environment overrides.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use portcullis_core::config::Config;

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
    let mut figment = Figment::new();
    let used = match path {
        Some(p) => {
            if !p.is_file() {
                return Err(ConfigErrors(vec![format!(
                    "--config {}: no such file (omit --config to run on the defaults)",
                    p.display()
                )]));
            }
            figment = figment.merge(Toml::file_exact(p));
            Some(p.to_path_buf())
        }
        None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            Some(PathBuf::from(DEFAULT_CONFIG_FILE))
        }
        None => None,
    };
    // `PORTCULLIS_CONFIG` names the file (read by clap), it is not a key.
    figment = figment.merge(Env::prefixed("PORTCULLIS_").ignore(&["config"]).split("__"));
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigErrors(e.into_iter().map(describe).collect()))?;
    let issues = config.validate();
    if !issues.is_empty() {
        return Err(ConfigErrors(
            issues.iter().map(ToString::to_string).collect(),
        ));
    }
    Ok((config, used))
}

/// Figment's message plus the key path and where the value came from.
fn describe(e: figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!(" (from {src})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if key.is_empty() {
        format!("{}{source}", e.kind)
    } else {
        format!("{key}: {}{source}", e.kind)
    }
}
