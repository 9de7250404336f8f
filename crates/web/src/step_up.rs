//! Which destinations need a second factor, decided from the same route table the gateway
//! uses, so the sign-in page and the gateway never disagree (a disagreement would be a loop).

use http::{HeaderMap, header};
use portcullis_core::config::SHARED_PREFIXES;
use portcullis_core::path;

use crate::state::AppState;

/// Whether going on to `return_to` (as the sign-in page got it) needs a second factor: the
/// app it routes to says `require_mfa`, or it is Portcullis's own admin surface under
/// `mfa.required`. The gateway decides the same from the same route table, so the two agree.
pub fn target_needs_mfa(state: &AppState, headers: &HeaderMap, return_to: &str) -> bool {
    let (host, rest) = match return_to
        .strip_prefix("https://")
        .or_else(|| return_to.strip_prefix("http://"))
    {
        Some(absolute) => {
            let (authority, rest) = absolute.split_at(absolute.find('/').unwrap_or(absolute.len()));
            (authority.to_owned(), rest.to_owned())
        }
        None => (
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            return_to.to_owned(),
        ),
    };
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    let raw_path = rest.split(['?', '#']).next().unwrap_or("/");
    let Ok(canonical) = path::canonicalize(if raw_path.is_empty() { "/" } else { raw_path }) else {
        return false;
    };
    let own = ["/.portcullis/admin", "/.portcullis/api"]
        .iter()
        .chain(SHARED_PREFIXES)
        .any(|prefix| path::has_prefix(&canonical, prefix));
    let routes = &state.gateway.routes;
    if own && !routes.claims(&host, &canonical) {
        return state.settings.mfa_required;
    }
    routes
        .route(&host, &canonical)
        .is_some_and(|app| app.require_mfa)
}
