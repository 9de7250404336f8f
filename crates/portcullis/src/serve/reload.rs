//! Reloading the configuration without a restart (on SIGHUP, or when the file changes): a new
//! [`Stack`] is built from it and handed to every worker for the connections it accepts from
//! then on; connections already open finish on the old one, as with nginx's reload. The
//! settings the process is built around (what it listens on, where its data is) only change with
//! a restart, and a reload that changes them is refused naming them.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::config::Config;
use portcullis_web::AppState;
use tokio::sync::{Mutex, watch};

use super::stack::{Background, Base, Stack};
use crate::config;

/// Why a new configuration is not serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    #[error(
        "these settings only change with a restart: {}; the running configuration keeps serving",
        .0.join(", ")
    )]
    NeedsRestart(Vec<&'static str>),
    #[error(
        "the new configuration could not be started ({0}); the running configuration keeps serving"
    )]
    Build(String),
}

struct Current {
    config: Config,
    background: Option<Background>,
}

pub(crate) struct Reloader {
    base: Base,
    /// One per worker: what its next connection is served with.
    lanes: Vec<watch::Sender<AppState>>,
    /// Held for the whole of a reload, so two never interleave.
    current: Mutex<Current>,
}

impl Reloader {
    pub(crate) fn new(
        config: Config,
        base: Base,
        lanes: Vec<watch::Sender<AppState>>,
        background: Background,
    ) -> Self {
        Reloader {
            base,
            lanes,
            current: Mutex::new(Current {
                config,
                background: Some(background),
            }),
        }
    }

    /// Builds `config` and serves new connections with it; the old background tasks stop
    /// (deliveries under way get the grace) once the new ones are ready to start.
    pub(crate) async fn reload(&self, config: Config) -> Result<(), ReloadRefused> {
        let mut current = self.current.lock().await;
        let fixed = fixed_changes(&current.config, &config);
        if !fixed.is_empty() {
            return Err(ReloadRefused::NeedsRestart(fixed));
        }
        let stack = Stack::build(&config, &self.base)
            .await
            .map_err(|e| ReloadRefused::Build(format!("{e:#}")))?;
        for (lane, state) in self.lanes.iter().zip(&stack.states) {
            // A worker that has ended (the process is stopping) no longer listens: nothing to do.
            let _ = lane.send(state.clone());
        }
        if let Some(old) = current.background.take() {
            old.stop().await;
        }
        current.background = Some(stack.start_background(config.shutdown_grace));
        current.config = config;
        Ok(())
    }

    pub(crate) async fn stop_background(&self) {
        if let Some(background) = self.current.lock().await.background.take() {
            background.stop().await;
        }
    }
}

/// The settings of `new` that differ from `old` and cannot change while running: the listener
/// and its TLS, the data folder and store, the token key (everything sealed depends on it), the
/// log's destination and format, and the shutdown grace the workers were started with.
fn fixed_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    // Compared by their Debug text, which shows every field of these plain settings.
    fn differs<T: Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut changed = Vec::new();
    let checks: [(&'static str, bool); 7] = [
        ("listen", old.listen != new.listen),
        ("tls", differs(&old.tls, &new.tls)),
        ("data_dir", old.data_dir != new.data_dir),
        ("store", differs(&old.store, &new.store)),
        ("token_key", old.token_key != new.token_key),
        ("log", differs(&old.log, &new.log)),
        ("shutdown_grace", old.shutdown_grace != new.shutdown_grace),
    ];
    for (name, is_changed) in checks {
        if is_changed {
            changed.push(name);
        }
    }
    changed
}

/// How often the configuration file is checked for a change.
const CONFIG_CHECK: Duration = Duration::from_secs(2);

/// Reloads the configuration on SIGHUP and when its file changes. A new configuration that is
/// not valid is reported as check-config would and changes nothing.
pub(super) async fn reload_when_asked(reloader: Arc<Reloader>, path: Option<std::path::PathBuf>) {
    let modified = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    };
    let mut seen = modified(&path);
    let mut checks = tokio::time::interval(CONFIG_CHECK);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = hangup_received => "SIGHUP",
            _ = checks.tick() => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "the configuration file changed"
            }
        };
        match config::load(path.as_deref()) {
            Err(errors) => tracing::error!(
                reason = why,
                "the new configuration is not valid; the running one keeps serving:\n{errors}"
            ),
            Ok((config, _)) => match reloader.reload(config).await {
                Ok(()) => tracing::info!(reason = why, "configuration reloaded"),
                Err(refused) => tracing::error!(reason = why, "{refused}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn only_the_settings_the_process_is_built_around_need_a_restart() {
        let old = parse("[[apps]]\nname = 'a'\nupstream = 'http://127.0.0.1:1'\n");
        let apps_changed = parse(
            "public_url = 'https://chat.example.com'\n[[apps]]\nname = 'b'\nupstream = 'http://127.0.0.1:2'\n",
        );
        assert!(fixed_changes(&old, &apps_changed).is_empty());
        let moved = parse(
            "listen = '0.0.0.0:80'\n[store]\nurl = 'postgres://db/portcullis'\n[[apps]]\nname = 'a'\nupstream = 'http://127.0.0.1:1'\n",
        );
        assert_eq!(fixed_changes(&old, &moved), ["listen", "store"]);
    }
}
