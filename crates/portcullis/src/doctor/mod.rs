//! `portcullis doctor`: Portcullis's own configuration plus the foreign ones given (Open WebUI and
//! oauth2-proxy env files, ECS task definitions, oauth2-proxy flags), checked against the catalog
//! in `portcullis_doctor`. Exits 1 when an error is found, so CI can run it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_doctor::{Finding, Settings, Severity};

mod live;
pub use live::{ACME_DIRECTORY_FIX, probe_acme_directory};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// An env file (Open WebUI and/or oauth2-proxy variables). Repeatable.
    #[arg(long = "env")]
    env: Vec<PathBuf>,
    /// An AWS ECS task definition (JSON): every container's environment. Repeatable.
    #[arg(long = "ecs")]
    ecs: Vec<PathBuf>,
    /// A docker-compose file: every service's environment, oauth2-proxy's command. Repeatable.
    #[arg(long = "compose")]
    compose: Vec<PathBuf>,
    /// An oauth2-proxy cfg file.
    #[arg(long = "oauth2-proxy-cfg")]
    oauth2_proxy_cfg: Vec<PathBuf>,
    /// oauth2-proxy's command-line flags, as one string (it starts with `--`: taken as the value,
    /// not as a flag of ours).
    #[arg(long = "oauth2-proxy-args", allow_hyphen_values = true)]
    oauth2_proxy_args: Option<String>,
    /// Also probe over the network: providers' discovery and keys, the public URL, upstreams,
    /// apps reachable around Portcullis.
    #[arg(long)]
    live: bool,
    /// With --live: sign a new canary user in to this Open WebUI app through the headers
    /// Portcullis would send, and report the role it got (the user stays in Open WebUI).
    #[arg(long, requires = "live")]
    canary: Option<String>,
    /// human (default) or json.
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    format: String,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Portcullis's own configuration: every problem check-config knows, as findings; and the identity
/// headers its apps receive, for the rules that compare them with the app's settings.
fn own_config(
    loaded: &Result<portcullis_core::config::Config, String>,
    path: Option<&Path>,
    settings: &mut Settings,
) -> Vec<Finding> {
    match loaded {
        Ok(config) => {
            if !config.apps.is_empty() {
                let headers = config
                    .apps
                    .iter()
                    .flat_map(|a| a.identity_headers.mappings())
                    .map(|(name, _)| name)
                    .collect();
                settings.set_gateway_headers(headers);
                // Where people reach the apps: the public URL (when one is set: the listen
                // address is not where browsers come from), and each app's own host.
                let public = config.public_url.clone();
                let scheme = match &public {
                    Some(url) if url.starts_with("http:") => "http",
                    _ => "https",
                };
                let mut urls: Vec<String> = public.into_iter().collect();
                urls.extend(
                    config
                        .apps
                        .iter()
                        .filter_map(|a| a.host.as_ref())
                        .map(|host| format!("{scheme}://{host}")),
                );
                settings.set_gateway_origins(&urls);
            }
            portcullis_doctor::own::check(config, settings)
        }
        Err(errors) => vec![Finding {
            rule: "PORTCULLIS-CONFIG",
            severity: Severity::Error,
            symptom: "Portcullis will not start with this configuration".into(),
            why: errors.trim().to_owned(),
            fix: "correct the keys named above (portcullis check-config shows the same)".into(),
            source: path.map(|p| p.display().to_string()),
        }],
    }
}

pub fn run(config: Option<&Path>, args: DoctorArgs) -> ExitCode {
    let mut settings = Settings::default();
    let mut problems = Vec::new();
    for path in &args.env {
        match read(path) {
            Ok(text) => settings.read_env(&text, &path.display().to_string()),
            Err(e) => problems.push(e),
        }
    }
    for path in &args.ecs {
        match read(path).and_then(|text| settings.read_ecs(&text, &path.display().to_string())) {
            Ok(()) => {}
            Err(e) => problems.push(e),
        }
    }
    for path in &args.compose {
        match read(path).and_then(|text| settings.read_compose(&text, &path.display().to_string()))
        {
            Ok(()) => {}
            Err(e) => problems.push(e),
        }
    }
    for path in &args.oauth2_proxy_cfg {
        match read(path) {
            Ok(text) => settings.read_oauth2_proxy_cfg(&text, &path.display().to_string()),
            Err(e) => problems.push(e),
        }
    }
    if let Some(flags) = &args.oauth2_proxy_args {
        settings.read_oauth2_proxy_flags(flags, "--oauth2-proxy-args");
    }
    if !problems.is_empty() {
        for p in problems {
            eprintln!("portcullis doctor: {p}");
        }
        return ExitCode::from(2);
    }
    let loaded = crate::config::load(config)
        .map(|(c, _)| c)
        .map_err(|e| e.to_string());
    let mut findings = own_config(&loaded, config, &mut settings);
    findings.extend(portcullis_doctor::check(&settings));
    let mut passed = Vec::new();
    if args.live {
        match &loaded {
            Ok(config) => match live_probes(config, args.canary.as_deref()) {
                Ok(report) => {
                    passed = report.passed;
                    findings.extend(report.findings);
                }
                Err(e) => {
                    eprintln!("portcullis doctor: {e}");
                    return ExitCode::from(2);
                }
            },
            Err(_) => eprintln!(
                "portcullis doctor: --live needs a valid configuration (see PORTCULLIS-CONFIG); skipped"
            ),
        }
    }
    portcullis_doctor::most_severe_first(&mut findings);
    if args.format == "json" {
        let report = serde_json::json!({ "findings": findings, "live_checks_passed": passed });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for check in &passed {
            println!("ok {check}");
        }
        if !passed.is_empty() {
            println!();
        }
        print!("{}", portcullis_doctor::human(&findings));
    }
    if portcullis_doctor::has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn live_probes(
    config: &portcullis_core::config::Config,
    canary: Option<&str>,
) -> Result<live::LiveReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the async runtime: {e}"))?;
    Ok(runtime.block_on(live::probe(config, canary)))
}

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// Write the portcullis.toml equivalent to an oauth2-proxy configuration, and list what
    /// changes meaning.
    #[command(name = "oauth2-proxy")]
    OAuth2Proxy {
        /// An env file with OAUTH2_PROXY_* variables.
        #[arg(long = "env")]
        env: Vec<PathBuf>,
        /// oauth2-proxy's cfg file.
        #[arg(long = "config-file")]
        config_file: Vec<PathBuf>,
        /// oauth2-proxy's command-line flags, as one string (starting with `--`).
        #[arg(long = "args", allow_hyphen_values = true)]
        args: Option<String>,
        /// Where to write the configuration (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub fn import(command: ImportCommand) -> ExitCode {
    let ImportCommand::OAuth2Proxy {
        env,
        config_file,
        args,
        output,
    } = command;
    let mut settings = Settings::default();
    for path in &env {
        match read(path) {
            Ok(text) => settings.read_env(&text, &path.display().to_string()),
            Err(e) => return usage(&e),
        }
    }
    for path in &config_file {
        match read(path) {
            Ok(text) => settings.read_oauth2_proxy_cfg(&text, &path.display().to_string()),
            Err(e) => return usage(&e),
        }
    }
    if let Some(flags) = &args {
        settings.read_oauth2_proxy_flags(flags, "--args");
    }
    let imported = match portcullis_doctor::import::oauth2_proxy(&settings) {
        Ok(imported) => imported,
        Err(e) => return usage(&e),
    };
    match &output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                return usage(&format!("writing {}: {e}", path.display()));
            }
        }
        None => print!("{}", imported.toml),
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("portcullis import: {message}");
    ExitCode::from(2)
}
