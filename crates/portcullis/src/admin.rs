//! Operator commands that work without a browser: `portcullis user …` and `portcullis key …`.
//! They change the store directly; a running Portcullis applies the change within a second
//! through the change feed.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use portcullis_auth::assertion::Assertions;
use portcullis_auth::audit::Entry;
use portcullis_auth::audit::{Actor, Audit};
use portcullis_auth::directory::KeepSessions;
use portcullis_auth::directory::{AddUser, Directory, DirectoryError, Settle};
use portcullis_auth::password::{PasswordPolicy, hash_blocking};
use portcullis_core::config::Config;
use portcullis_core::user::UserStatus;
use portcullis_core::{Clock, Role, SystemClock};

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    User,
    Pending,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::User => Role::User,
            RoleArg::Pending => Role::Pending,
        }
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user. With --password-stdin the first line of standard input is their password.
    Add {
        username: String,
        #[arg(long)]
        email: Option<portcullis_core::Email>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Disable a user: their sessions, open streams and API keys stop at once.
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    SetRole {
        username: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    AddToGroup {
        username: String,
        group: String,
    },
    /// Change a user's username, email or display name (an empty value removes the email or
    /// the display name).
    Edit {
        username: String,
        #[arg(long = "username", value_name = "NEW_NAME")]
        new_username: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a user for good: their sessions, keys and memberships end, provisioning sinks get
    /// the deletion, the audit trail keeps the record. Needs --yes.
    Delete {
        username: String,
        #[arg(long)]
        yes: bool,
    },
    /// Set a user's password from the first line of standard input; every session of theirs
    /// ends. With --must-change they choose a new one at their next sign-in.
    Passwd {
        username: String,
        #[arg(long)]
        must_change: bool,
    },
    /// Remove every second factor (authenticator app) and recovery code of a user, for a lost
    /// phone; they sign in with the password alone until they set up a new app. Needs --yes.
    ResetFactors {
        username: String,
        #[arg(long)]
        yes: bool,
    },
    /// Print a one-time link with which the user chooses a new password (nothing changes until
    /// they use it). Send it to them over a channel you trust.
    ResetLink {
        username: String,
        /// How long the link works, such as 30m or 1d (default: local_auth.reset_link_lifetime).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// Mail the link to the user's address through [smtp] instead of printing it.
        #[arg(long)]
        email: bool,
    },
    /// List the MCP clients a user connected through OAuth (grants), with scopes and last use.
    Grants {
        username: String,
    },
    /// Disconnect one of a user's MCP clients: its tokens stop within a second everywhere.
    RevokeGrant {
        username: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// Deliveries in a state, oldest first (default: dead letters).
    List {
        #[arg(long, default_value = "dead", value_parser = ["dead", "pending", "delivered", "discarded"])]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Try dead letters again now: one (`--sink S --seq N`) or all (`--all`).
    Retry(OutboxTarget),
    /// Give dead letters up for good: one or all.
    Discard(OutboxTarget),
}

#[derive(clap::Args)]
pub struct OutboxTarget {
    #[arg(long, requires = "seq", conflicts_with = "all")]
    sink: Option<String>,
    #[arg(long, requires = "sink")]
    seq: Option<i64>,
    #[arg(long)]
    all: bool,
}

impl OutboxTarget {
    fn which(&self) -> Result<Option<(&str, i64)>, String> {
        match (&self.sink, self.seq, self.all) {
            (Some(sink), Some(seq), false) => Ok(Some((sink.as_str(), seq))),
            (None, None, true) => Ok(None),
            _ => Err("name one delivery with --sink and --seq, or all with --all".into()),
        }
    }
}

#[derive(Subcommand)]
pub enum SigningKeyCommand {
    /// Start signing assertions with a new key. The old key stays published at
    /// /.well-known/jwks.json until its last assertion has expired; every running process
    /// switches within a second.
    Rotate,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it once on standard output.
    Create {
        /// The owner: requests with the key carry this user's identity.
        #[arg(long)]
        user: String,
        /// What uses the key (e.g. "ci-pipeline").
        #[arg(long)]
        name: String,
        /// An app the key may reach (repeatable); none: every app the owner may use.
        #[arg(long = "app")]
        apps: Vec<String>,
        /// Lifetime such as 30d or 12h; none: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Revoke a key by id.
    Revoke { id: String },
    /// List a user's keys (never the secrets).
    List {
        #[arg(long)]
        user: String,
    },
}

/// The operator at this machine's shell: the audit trail says "cli" and "local" for where.
fn actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    // The operator on the host is beyond any sign-in's factors.
    Actor::new(format!("cli:{user}"), Some("local".into())).with_second_factor(true)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the async runtime: {e}"))
}

async fn directory(config: &Config) -> Result<Directory, String> {
    let store = crate::config::open_store(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(
        Directory::new(store.clone(), clock.clone(), Audit::new(store, clock))
            .with_known_apps(crate::config::known_apps(config)),
    )
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A new password for the account known by `names`, from the first line of standard input,
/// checked against the configured policy.
fn read_password(config: &Config, names: &[&str]) -> Result<String, String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        // Typing it here would show it on the screen and keep it in the terminal's scrollback.
        return Err("pipe the password in on standard input (printf '%s\\n' \"$PASSWORD\" | portcullis …), or send the user a link with `portcullis user reset-link`".into());
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    PasswordPolicy::with_min_length(config.local_auth.min_password_length)
        .check(&password, names)?;
    Ok(password)
}

fn show(e: DirectoryError) -> String {
    e.to_string()
}

pub fn user(config: &Config, command: UserCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run_user(config, command))))
}

async fn run_user(config: &Config, command: UserCommand) -> Result<(), String> {
    let dir = directory(config).await?;
    let actor = actor();
    match command {
        UserCommand::Add {
            username,
            email,
            name,
            role,
            password_stdin,
        } => {
            let password_hash = if password_stdin {
                let names = [username.as_str(), email.as_deref().unwrap_or("")];
                let password = read_password(config, &names)?;
                Some(hash_blocking(&password).map_err(|e| e.to_string())?)
            } else {
                None
            };
            let new = AddUser {
                username,
                email,
                display_name: name,
                role: role.into(),
                password_hash,
            };
            let user = dir.add_user(new, &actor).await.map_err(show)?;
            println!("{}", user.id);
            eprintln!("added {} ({})", user.username, user.role.as_str());
        }
        UserCommand::List { offset, limit } => {
            println!(
                "{:<24} {:<8} {:<17} {:<32} groups",
                "username", "role", "status", "email"
            );
            let (users, _) = dir.find_users(None, offset, limit).await.map_err(show)?;
            for u in users {
                println!(
                    "{:<24} {:<8} {:<17} {:<32} {}",
                    u.username,
                    u.role.as_str(),
                    u.status.as_str(),
                    u.email.as_deref().unwrap_or("-"),
                    u.groups.join(",")
                );
            }
        }
        UserCommand::Disable { username } => {
            dir.set_status(&username, UserStatus::Disabled, &actor)
                .await
                .map_err(show)?;
            eprintln!("disabled {username}: their sessions, streams and keys stop within a second");
        }
        UserCommand::Enable { username } => {
            dir.set_status(&username, UserStatus::Active, &actor)
                .await
                .map_err(show)?;
            eprintln!("enabled {username}");
        }
        UserCommand::SetRole { username, role } => {
            let role: Role = role.into();
            dir.set_role(&username, role, &actor).await.map_err(show)?;
            eprintln!("{username} is now {}", role.as_str());
        }
        UserCommand::AddToGroup { username, group } => {
            dir.add_to_group(&username, &group, &actor)
                .await
                .map_err(show)?;
            eprintln!("{username} is in {group}");
        }
        UserCommand::Edit {
            username,
            new_username,
            email,
            name,
        } => {
            let user = dir.user(&username).await.map_err(show)?;
            let new_name = new_username
                .as_deref()
                .map_or(user.username.as_str(), str::trim);
            let email = match email.as_deref().map(str::trim) {
                Some("") => None,
                Some(email) => Some(
                    email
                        .parse::<portcullis_core::Email>()
                        .map_err(|e| format!("--email: {e}"))?,
                ),
                None => user.email.clone(),
            };
            let name = match name.as_deref().map(str::trim) {
                Some("") => None,
                Some(name) => Some(name),
                None => user.display_name.as_deref(),
            };
            let changed = dir
                .edit_user(&user, new_name, email.as_ref(), name, &actor)
                .await
                .map_err(show)?;
            if changed {
                eprintln!("updated {new_name}");
            } else {
                eprintln!("{username} already is like that; nothing changed");
            }
        }
        UserCommand::Delete { username, yes } => {
            if !yes {
                return Err(format!(
                    "deleting {username} ends their sessions and keys for good; run again with --yes (or disable them instead: user disable {username})"
                ));
            }
            dir.delete_user_named(&username, &actor)
                .await
                .map_err(show)?;
            eprintln!("deleted {username}");
        }
        UserCommand::Passwd {
            username,
            must_change,
        } => {
            let user = dir.user(&username).await.map_err(show)?;
            let names = [user.username.as_str(), user.email.as_deref().unwrap_or("")];
            let password = read_password(config, &names)?;
            let hash = hash_blocking(&password).map_err(|e| e.to_string())?;
            dir.set_password(&user, Some(&hash), must_change, KeepSessions::None, &actor)
                .await
                .map_err(show)?;
            let then = if must_change {
                "; they choose a new one at their next sign-in"
            } else {
                ""
            };
            eprintln!("set the password of {username}: their sessions have ended{then}");
        }
        UserCommand::ResetFactors { username, yes } => {
            if !yes {
                return Err(format!(
                    "resetting the second factors of {username} lets whoever has their password alone sign in; check who is asking, then run again with --yes"
                ));
            }
            let user = dir.user(&username).await.map_err(show)?;
            let removed = dir.reset_factors(&user, &actor).await.map_err(show)?;
            eprintln!("removed {removed} second factor(s) of {username}, and their recovery codes");
        }
        UserCommand::ResetLink {
            username,
            expires_in,
            email,
        } => {
            let lifetime = expires_in.unwrap_or(config.local_auth.reset_link_lifetime);
            // Whether it can be mailed is known before a link exists.
            let mail = if email {
                let smtp = config
                    .smtp
                    .as_ref()
                    .ok_or("no [smtp] relay is configured, so the link cannot be mailed; leave out --email to print it")?;
                let user = dir.user(&username).await.map_err(show)?;
                let to = user.email.clone().ok_or(format!(
                    "{username} has no email address; leave out --email to print the link"
                ))?;
                Some((portcullis_web::mail::Mailer::new(smtp)?, user, to))
            } else {
                None
            };
            let issued = dir
                .issue_reset_link(&username, lifetime, &actor)
                .await
                .map_err(show)?;
            let url = portcullis_web::reset_url(&config.public_url(), &issued.token);
            if let Some((mailer, user, to)) = mail {
                let name = user.display_name.as_deref().unwrap_or(&user.username);
                mailer
                    .send_reset_link(&to, name, &url, issued.expires_at)
                    .await
                    .map_err(|f| f.message)?;
                dir.reset_link_sent(&user, &to, &actor).await;
                eprintln!(
                    "sent a one-time link to {to}, working until {} UTC",
                    issued.expires_at.utc()
                );
                return Ok(());
            }
            // The link alone on standard output, so scripts can capture it.
            println!("{url}");
            eprintln!(
                "a one-time link for {username}, working until {} UTC; it is shown only now",
                issued.expires_at.utc()
            );
        }
        UserCommand::Grants { username } => {
            println!(
                "{:<43} {:<24} {:<16} {:<20} {:<20} scopes",
                "id", "client", "app", "connected (UTC)", "last used (UTC)"
            );
            for g in dir.grants_of(&username).await.map_err(show)? {
                println!(
                    "{:<43} {:<24} {:<16} {:<20} {:<20} {}",
                    g.id,
                    g.client_name,
                    g.app,
                    g.created_at.utc(),
                    g.last_used_at
                        .map_or_else(|| "never".to_owned(), |t| t.utc()),
                    g.scopes.join(" ")
                );
            }
        }
        UserCommand::RevokeGrant { username, id } => {
            let grant = dir
                .revoke_grant(&username, &id, &actor)
                .await
                .map_err(show)?;
            eprintln!(
                "disconnected {} from {} for {username}: its tokens stop within a second",
                grant.client_name, grant.app
            );
        }
    }
    Ok(())
}

pub fn key(config: &Config, command: KeyCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run_key(config, command))))
}

async fn run_key(config: &Config, command: KeyCommand) -> Result<(), String> {
    let dir = directory(config).await?;
    let actor = actor();
    match command {
        KeyCommand::Create {
            user,
            name,
            apps,
            expires_in,
        } => {
            let created = dir
                .create_key(&user, &name, apps, expires_in, &actor)
                .await
                .map_err(show)?;
            // The secret alone on standard output, so scripts can capture it; it is shown once.
            println!("{}", created.secret);
            eprintln!(
                "key {} for {user} ({}); store it now, it cannot be shown again",
                created.stored.id, created.stored.name
            );
        }
        KeyCommand::Revoke { id } => {
            dir.revoke_key(&id, &actor).await.map_err(show)?;
            eprintln!("revoked {id}");
        }
        KeyCommand::List { user } => {
            println!(
                "{:<36} {:<20} {:<8} {:<20} {:<20} apps",
                "id", "name", "state", "expires (UTC)", "last used (UTC)"
            );
            let now = SystemClock.now();
            for k in dir.keys_of(&user).await.map_err(show)? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(expires)) if expires <= now => "expired",
                    _ => "active",
                };
                let when = |t: Option<portcullis_core::Timestamp>, none: &str| {
                    t.map_or_else(|| none.to_owned(), |t| t.utc())
                };
                let apps = if k.allowed_apps.is_empty() {
                    "*".to_owned()
                } else {
                    k.allowed_apps.join(",")
                };
                println!(
                    "{:<36} {:<20} {:<8} {:<20} {:<20} {apps}",
                    k.id,
                    k.name,
                    state,
                    when(k.expires_at, "never"),
                    when(k.last_used_at, "never")
                );
            }
        }
    }
    Ok(())
}

pub fn signing_keys(config: &Config, command: SigningKeyCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run_signing_keys(config, command))))
}

async fn run_signing_keys(config: &Config, command: SigningKeyCommand) -> Result<(), String> {
    let SigningKeyCommand::Rotate = command;
    let store = crate::config::open_store(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sealer = crate::serve::token_sealer(config).map_err(|e| format!("{e:#}"))?;
    let assertions = Assertions::load(
        store.clone(),
        Arc::new(sealer),
        clock.clone(),
        config.public_url(),
        config.assertion.lifetime,
    )
    .await
    .map_err(|e| e.to_string())?;
    // Every process hears of the new key through the change feed (a database trigger).
    let kid = assertions.rotate().await.map_err(|e| e.to_string())?;
    let actor = actor();
    Audit::new(store, clock)
        .record(Entry {
            action: "signing_key_rotated",
            success: true,
            actor: Some(&actor.id),
            subject: Some(&kid),
            reason: None,
            client_ip: actor.client_ip.clone(),
        })
        .await;
    println!(
        "assertions are now signed with key {kid}; the previous key stays published for {} more minutes",
        portcullis_auth::assertion::MAX_LIFETIME.as_secs() / 60 + 1
    );
    Ok(())
}

pub fn outbox(config: &Config, command: OutboxCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run_outbox(config, command))))
}

async fn run_outbox(config: &Config, command: OutboxCommand) -> Result<(), String> {
    let store = crate::config::open_store(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = Directory::new(
        store.clone(),
        clock.clone(),
        Audit::new(store.clone(), clock),
    );
    match command {
        OutboxCommand::List { state, limit } => {
            let rows = store
                .deliveries_in(&state, limit)
                .await
                .map_err(|e| e.to_string())?;
            println!("SINK\tSEQ\tUSER\tEVENT\tATTEMPTS\tLAST ERROR");
            for d in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.sink,
                    d.seq,
                    d.user_id,
                    d.kind,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry(target) => {
            let n = dir
                .settle_dead_letters(target.which()?, Settle::Retry, &actor())
                .await
                .map_err(show)?;
            eprintln!("{n} dead letter(s) will be delivered again by the running server");
        }
        OutboxCommand::Discard(target) => {
            let n = dir
                .settle_dead_letters(target.which()?, Settle::Discard, &actor())
                .await
                .map_err(show)?;
            eprintln!("{n} dead letter(s) discarded");
        }
    }
    Ok(())
}
