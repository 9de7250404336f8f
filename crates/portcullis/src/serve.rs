//! `portcullis serve`: build every part from the configuration, bind, serve, shut down gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use portcullis_auth::SetupToken;
use portcullis_auth::seal::Sealer;
use portcullis_core::Clock;
use portcullis_core::config::{Config, TlsConfig};
use portcullis_proxy::access::AccessLog;
use portcullis_web::AppState;
use portcullis_web::tls::CurrentCertificate;
use portcullis_web::tls::acme::AcmeOrdering;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{config, logging};

mod reload;
mod stack;

pub use reload::ReloadRefused;
use reload::{Reloader, reload_when_asked};
use stack::{Base, Stack};

/// A started Portcullis.
pub struct Running {
    pub addr: SocketAddr,
    /// The one-time link to create the first admin, while none exists.
    pub setup_link: Option<String>,
    /// The state it started with (a reload serves new connections with a new one).
    pub state: AppState,
    reloader: Arc<Reloader>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Serves new connections with `config` from now on, if it can change live; the old
    /// configuration keeps serving otherwise (and the error says why).
    pub async fn reload(&self, config: Config) -> Result<(), ReloadRefused> {
        self.reloader.reload(config).await
    }

    /// Stops accepting connections and waits for in-flight requests (up to the grace period).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

/// Builds everything from a validated configuration and starts serving on `config.listen`, with
/// one worker thread per CPU, writing one access-log line per proxied request to `access_log`.
pub async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    access_log: Arc<dyn AccessLog>,
) -> anyhow::Result<Running> {
    let store = crate::config::open_store(&config)
        .await
        .map_err(anyhow::Error::msg)?;
    let base = Base {
        sealer: token_sealer(&config)?,
        store,
        clock,
        access_log,
        setup: Arc::new(SetupToken::default()),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        whoami: Arc::default(),
    };
    let stack = Stack::build(&config, &base).await?;
    let setup_link = if base.store.count_admins().await? == 0 {
        let token = base.setup.issue();
        Some(format!(
            "{}/.portcullis/setup?token={token}",
            config.public_url()
        ))
    } else {
        None
    };
    let state = stack.states[0].clone();

    let tls = match &config.tls {
        Some(tls_config) => Some(portcullis_web::tls::ListenerTls::load(tls_config)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let redirect = match config.tls.as_ref().and_then(|t| t.redirect_http) {
        Some(plain) => Some(
            tokio::net::TcpListener::bind(plain)
                .await
                .with_context(|| format!("binding tls.redirect_http {plain}"))?,
        ),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let grace = config.shutdown_grace;
    let (lanes, live): (Vec<_>, Vec<_>) = stack
        .states
        .iter()
        .map(|state| tokio::sync::watch::channel(state.clone()))
        .unzip();
    let (stop_redirect_tx, stop_redirect) = oneshot::channel::<()>();
    let signal = async {
        let _ = shutdown_rx.await;
        let _ = stop_redirect_tx.send(());
    };
    let (listener_tls, certificate) = tls.unzip();
    let renewing = match (&config.tls, &certificate) {
        (Some(tls_config), Some(certificate)) => Some(tokio::spawn(keep_certificate(
            tls_config,
            certificate,
            &state,
        ))),
        _ => None,
    };
    let serving = portcullis_web::serve(listener, listener_tls, live, signal, grace)
        .context("starting the worker threads")?;
    if let (Some(redirect), Some(certificate)) = (redirect, certificate) {
        tokio::spawn(portcullis_web::tls::redirect_to_https(
            redirect,
            addr.port(),
            certificate,
            async {
                let _ = stop_redirect.await;
            },
        ));
    }
    let reloader = Arc::new(Reloader::new(
        config,
        base,
        lanes,
        stack.start_background(grace),
    ));
    let task = tokio::spawn({
        let reloader = reloader.clone();
        async move {
            serving.await;
            if let Some(renewing) = renewing {
                renewing.abort();
            }
            // Last, and waited for: deliveries under way finish before the process ends.
            reloader.stop_background().await;
        }
    });
    Ok(Running {
        addr,
        setup_link,
        state,
        reloader,
        shutdown: shutdown_tx,
        task,
    })
}

/// Keeps the listener's certificate current: its files watched, or ordered and renewed over
/// ACME.
fn keep_certificate(
    tls: &TlsConfig,
    certificate: &Arc<CurrentCertificate>,
    state: &AppState,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    match (tls.files(), &tls.acme) {
        (Some((cert, key)), _) => Box::pin(certificate.clone().watch(
            cert.to_owned(),
            key.to_owned(),
            tls.reload_check,
        )),
        (None, Some(acme)) => Box::pin(
            AcmeOrdering::new(
                acme.clone(),
                state.store.clone(),
                state.sealer.clone(),
                state.clock.clone(),
                certificate.clone(),
                tls.reload_check,
            )
            .run(),
        ),
        (None, None) => Box::pin(async {}),
    }
}

/// The key that seals provider tokens: from the configuration, or generated once and kept in
/// `data_dir/token.key` (readable by the owner only).
pub(crate) fn token_sealer(config: &Config) -> anyhow::Result<Sealer> {
    if let Some(key) = &config.token_key {
        return Sealer::from_base64(key).context("token_key");
    }
    let path = config.data_dir.join("token.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Sealer::from_base64(&existing)
            .with_context(|| format!("{} is damaged", path.display()));
    }
    let key = Sealer::generate_key();
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    Sealer::from_base64(&key).context("generated token key")
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The `serve` command.
pub fn run(config_path: Option<&Path>) -> ExitCode {
    let (config, used) = match config::load(config_path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(64);
        }
    };
    let (log, access_log) = match logging::init(&config) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_in_runtime = log.clone();
    let exit = runtime.block_on(async move {
        let flushing = tokio::spawn(log_in_runtime.clone().flush_every(logging::FLUSH_INTERVAL));
        let clock: Arc<dyn Clock> = Arc::new(portcullis_core::SystemClock);
        let running = match start(config.clone(), clock, access_log).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("could not start: {e:#}");
                eprintln!("portcullis: could not start: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let source = used.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
        tracing::info!(addr = %running.addr, config = %source, "Portcullis is listening");
        // What follows goes straight to stderr: the log lines before it come first.
        log_in_runtime.flush();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        eprintln!("Portcullis is listening on {scheme}://{} ({source})", running.addr);
        if let Some(link) = &running.setup_link {
            eprintln!(
                "\nNo administrator exists yet. Open this one-time link to create one:\n\n    {link}\n\n\
                 The link works until the admin account exists; restarting prints a new one.\n"
            );
        }
        let reloading = tokio::spawn(reload_when_asked(running.reloader.clone(), used.clone()));
        shutdown_signal().await;
        reloading.abort();
        tracing::info!("shutdown requested");
        running.shutdown().await;
        flushing.abort();
        ExitCode::SUCCESS
    });
    drop(runtime);
    log.flush();
    exit
}
