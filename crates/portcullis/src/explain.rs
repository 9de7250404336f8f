//! `portcullis explain --app NAME --claims FILE`: what an app would receive for a token's claims,
//! offline, with where each identity field came from — so a mapping can be debugged before it is
//! deployed (the "names show as GUIDs" case shows plainly).

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use portcullis_core::claims::{Preset, map_claims};
use portcullis_core::config::{Config, ConfigIssue};
use portcullis_core::identity::looks_opaque;
use portcullis_core::{Identity, Role};
use portcullis_proxy::RouteTable;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The app whose headers to show.
    #[arg(long)]
    app: String,
    /// A JSON file of claims, or of a raw ID token (`eyJ…`, read without verifying it).
    #[arg(long)]
    claims: PathBuf,
    /// The provider whose claim mapping applies (default: the only one configured, else the
    /// generic mapping).
    #[arg(long)]
    provider: Option<String>,
}

/// Claims from a JSON object, or from the payload of a compact JWT.
fn read_claims(text: &str) -> Result<Value, String> {
    let text = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(text)
        && value.is_object()
    {
        return Ok(value);
    }
    let payload = text
        .split('.')
        .nth(1)
        .ok_or("the file is neither a JSON object of claims nor a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("the token's payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the token's payload is not JSON: {e}"))
}

pub fn run(config: &Config, args: ExplainArgs) -> ExitCode {
    match explain(config, &args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcullis explain: {message}");
            ExitCode::FAILURE
        }
    }
}

fn explain(config: &Config, args: &ExplainArgs) -> Result<String, String> {
    let text = std::fs::read_to_string(&args.claims)
        .map_err(|e| format!("reading {}: {e}", args.claims.display()))?;
    let claims = read_claims(&text)?;
    let provider = match &args.provider {
        Some(id) => Some(
            config
                .providers
                .iter()
                .find(|p| &p.id == id)
                .ok_or_else(|| format!("no provider has the id {id:?}"))?,
        ),
        None if config.providers.len() == 1 => config.providers.first(),
        None => None,
    };
    let mapping = provider.map_or_else(|| Preset::Generic.defaults(), |p| p.mapping());
    let mapped = map_claims(&claims, &mapping).map_err(|e| e.to_string())?;
    let compiled = config.compile().map_err(|issues| {
        format!(
            "the configuration is not valid: {}",
            ConfigIssue::list(&issues)
        )
    })?;
    let table = RouteTable::build(&compiled.routes, None);
    let app = table
        .apps()
        .find(|a| a.name == args.app)
        .ok_or_else(|| format!("no app is called {:?}", args.app))?;
    // Offline there is no directory: the subject apps receive is the id of the user the
    // provider's subject gets linked to.
    let identity = Identity {
        subject: "<directory user id>".to_owned(),
        username: mapped.username.clone(),
        email: mapped.email.clone(),
        display_name: mapped.display_name.clone(),
        groups: mapped.groups.clone(),
        role: Role::User,
    };
    let source = |field: &str| {
        mapped
            .sources
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| "—".to_owned(), |(_, claim)| claim.clone())
    };
    let mut out = format!(
        "Mapping: {}\n\nIdentity (field ← claim = value)\n",
        provider.map_or_else(|| "generic".to_owned(), |p| format!("provider {}", p.id))
    );
    for (field, value) in [
        ("subject", mapped.subject.clone()),
        ("username", identity.username.clone()),
        ("email", identity.email.as_deref().unwrap_or("—").to_owned()),
        ("name", identity.display_name.clone()),
    ] {
        out.push_str(&format!("  {field:9} ← {:18} = {value}\n", source(field)));
    }
    out.push_str(&format!("  groups    = {}\n", identity.groups.join(", ")));
    out.push_str(
        "  (the subject links the provider's account to a directory user; headers and assertions\n   \
         carry that user's own id)\n",
    );
    if identity.display_name == mapped.subject || looks_opaque(&identity.display_name) {
        out.push_str(
            "\n! The display name looks like an opaque id: people would see it as their name.\n  \
             Map a real name claim (claims.name) for this provider.\n",
        );
    } else if looks_opaque(&mapped.subject) {
        out.push_str("\nThe subject is opaque (as it should be); it is never used as a name.\n");
    }
    out.push_str(&format!("\nHeaders the app {:?} receives\n", app.name));
    let sent: Vec<_> = app.identity_headers.values(&identity).collect();
    for name in app.identity_headers.names() {
        let shown = sent
            .iter()
            .rev()
            .find(|(sent_name, _)| *sent_name == name)
            .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_else(|| "(not sent: empty)".to_owned());
        out.push_str(&format!("  {}: {shown}\n", name.as_str()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_are_recognised() {
        assert!(looks_opaque("6f1c1f1e-8d3a-4c59-9f39-0a2f5e9a7c11"));
        assert!(!looks_opaque("Ada Lovelace"));
        assert!(!looks_opaque("ada@example.com"));
        assert!(read_claims("{\"sub\": \"x\"}").is_ok());
        assert!(read_claims("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").is_ok());
        assert!(read_claims("nonsense").is_err());
    }
}
