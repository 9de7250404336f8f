//! The `portcullis` command.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::{admin, config, serve};

/// Exit code for a configuration that cannot be used (EX_USAGE), returned before any port is bound.
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Single sign-on in front of self-hosted apps"
)]
struct Cli {
    /// Configuration file (default: ./portcullis.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the configuration without starting anything; exits 64 when it is not valid.
    CheckConfig,
    /// Read a password from standard input and print its argon2id hash.
    HashPassword,
    /// Manage users: add, list, disable, enable, set-role, add-to-group.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Manage API keys: create, revoke, list.
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// Turn another gateway's configuration into portcullis.toml: oauth2-proxy.
    #[command(subcommand)]
    Import(portcullis::doctor::ImportCommand),
    /// Show what an app would receive for a token's claims, and where each field comes from.
    Explain(portcullis::explain::ExplainArgs),
    /// The provisioning outbox: list dead letters, retry or discard them.
    #[command(subcommand)]
    Outbox(admin::OutboxCommand),
    /// Check this configuration and the apps' and proxies' (env files, ECS task definitions,
    /// oauth2-proxy flags) for the traps that break sign-in; exits 1 on an error.
    Doctor(portcullis::doctor::DoctorArgs),
    /// Manage the keys that sign identity assertions: rotate.
    #[command(subcommand)]
    Keys(admin::SigningKeyCommand),
    /// Apply the store's pending schema migrations (serve does it too); --dry-run lists them.
    Migrate(portcullis::store_cmd::MigrateArgs),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise: the container image's health check
    /// (`portcullis probe http://127.0.0.1:4180/ready`).
    Probe {
        /// The URL to ask, e.g. http://127.0.0.1:4180/ready.
        url: String,
    },
    /// Copy this deployment's SQLite store into an empty PostgreSQL database (--to URL).
    CopyStore(portcullis::store_cmd::CopyStoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve::run(cli.config.as_deref()),
        Command::CheckConfig => check_config(cli.config.as_deref()),
        Command::HashPassword => hash_password(),
        Command::User(command) => with_config(cli.config.as_deref(), |c| admin::user(c, command)),
        Command::Key(command) => with_config(cli.config.as_deref(), |c| admin::key(c, command)),
        Command::Doctor(args) => portcullis::doctor::run(cli.config.as_deref(), args),
        Command::Import(command) => portcullis::doctor::import(command),
        Command::Explain(args) => {
            with_config(cli.config.as_deref(), |c| portcullis::explain::run(c, args))
        }
        Command::Outbox(command) => {
            with_config(cli.config.as_deref(), |c| admin::outbox(c, command))
        }
        Command::Keys(command) => {
            with_config(cli.config.as_deref(), |c| admin::signing_keys(c, command))
        }
        Command::Migrate(args) => with_config(cli.config.as_deref(), |c| {
            portcullis::store_cmd::migrate(c, args)
        }),
        Command::Probe { url } => portcullis::probe::run(&url),
        Command::CopyStore(args) => with_config(cli.config.as_deref(), |c| {
            portcullis::store_cmd::copy_store(c, args)
        }),
    }
}

/// Runs an operator command on a valid configuration (it names the data directory).
fn with_config(
    path: Option<&std::path::Path>,
    run: impl FnOnce(&portcullis_core::config::Config) -> ExitCode,
) -> ExitCode {
    match config::load(path) {
        Ok((cfg, _)) => run(&cfg),
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn check_config(path: Option<&std::path::Path>) -> ExitCode {
    match config::load(path) {
        Ok((cfg, used)) => {
            // What only building it can tell: the sender's syntax, a readable CA file.
            if let Some(Err(problem)) = cfg.smtp.as_ref().map(portcullis_web::mail::Mailer::new) {
                eprintln!("{problem}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            for (i, app) in cfg.apps.iter().enumerate() {
                if app
                    .upstream_tls
                    .as_ref()
                    .is_some_and(|t| t.insecure_skip_verify)
                {
                    eprintln!(
                        "warning: apps[{i}].upstream_tls.insecure_skip_verify is on: the certificate of {} is not checked, so anyone between Portcullis and app {} can read and change its traffic, identity headers included (portcullis doctor: PCS-UPSTREAM-TLS-UNVERIFIED)",
                        app.upstream, app.name
                    );
                }
            }
            if let Some(acme) = cfg.tls.as_ref().and_then(|tls| tls.acme.as_ref()) {
                acme_directory_warning(acme);
            }
            let source = used
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            println!(
                "configuration OK ({source}): listen {}, public_url {}, {} app(s)",
                cfg.listen,
                cfg.public_url(),
                cfg.apps.len().max(1)
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Whether the ACME directory answers: a warning only, since a certificate already stored
/// keeps serving without it (and check-config may run where the CA is not reachable).
fn acme_directory_warning(acme: &portcullis_core::config::AcmeConfig) {
    let probed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| runtime.block_on(portcullis::doctor::probe_acme_directory(acme)));
    if let Ok(Err(why)) = probed {
        eprintln!(
            "warning: tls.acme.directory {} does not answer from here ({why}): no certificate can be ordered or renewed until it does; {} (portcullis doctor --live: LIVE-ACME-DIRECTORY)",
            acme.directory,
            portcullis::doctor::ACME_DIRECTORY_FIX
        );
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("could not read a password from standard input");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    let policy = portcullis_auth::password::PasswordPolicy::default();
    if let Err(problem) = policy.check(password, &[]) {
        eprintln!("{problem}");
        return ExitCode::FAILURE;
    }
    match portcullis_auth::password::hash_blocking(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
