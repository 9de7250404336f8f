//! `portcullis doctor`: Portcullis's own configuration plus the foreign ones given (Open WebUI and
//! oauth2-proxy env files, ECS task definitions, oauth2-proxy flags), checked against the catalog
//! in `portcullis_doctor`. Exits 1 when an error is found, so CI can run it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_doctor::{Finding, Settings, Severity};

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
    /// oauth2-proxy's command-line flags, as one string.
    #[arg(long = "oauth2-proxy-args")]
    oauth2_proxy_args: Option<String>,
    /// human (default) or json.
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    format: String,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Portcullis's own configuration: every problem check-config knows, as findings; and the identity
/// headers its apps receive, for the rules that compare them with the app's settings.
fn own_config(path: Option<&Path>, settings: &mut Settings) -> Vec<Finding> {
    match crate::config::load(path) {
        Ok((config, _)) => {
            if !config.apps.is_empty() {
                let headers = config
                    .apps
                    .iter()
                    .flat_map(|a| a.identity_headers.mappings())
                    .map(|(name, _)| name)
                    .collect();
                settings.set_gateway_headers(headers);
            }
            portcullis_doctor::own::check(&config, settings)
        }
        Err(errors) => vec![Finding {
            rule: "PORTCULLIS-CONFIG",
            severity: Severity::Error,
            symptom: "Portcullis will not start with this configuration".into(),
            why: errors.to_string().trim().to_owned(),
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
    let mut findings = own_config(config, &mut settings);
    findings.extend(portcullis_doctor::check(&settings));
    portcullis_doctor::most_severe_first(&mut findings);
    if args.format == "json" {
        println!("{}", portcullis_doctor::json(&findings));
    } else {
        print!("{}", portcullis_doctor::human(&findings));
    }
    if portcullis_doctor::has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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
        /// oauth2-proxy's command-line flags, as one string.
        #[arg(long = "args")]
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
