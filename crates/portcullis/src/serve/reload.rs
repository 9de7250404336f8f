//! Reloading the configuration without a restart (on SIGHUP, or when the file changes): a new
//! [`Stack`] is built from it and handed to every worker for the connections it accepts from
//! then on; connections already open finish on the old one, as with nginx's reload. The
//! settings the process is built around (what it listens on, where its data is) only change with
//! a restart, and a reload that changes them is refused naming them.

use std::fmt::Debug;

use portcullis_core::config::Config;
use portcullis_web::AppState;
use tokio::sync::{Mutex, watch};

use super::{Background, Base, Stack};

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
