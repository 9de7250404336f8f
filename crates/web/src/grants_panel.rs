//! The "Connected MCP clients" panel (on the account page and an admin's user page) and the
//! person's own revocation: each OAuth grant with its client, app, scopes and last use.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::Failure;
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use portcullis_store::Grant;

use crate::admin::{csrf_refusal, location};
use crate::csrf::CsrfForm;
use crate::state::{AppState, ClientAddr};

/// The panel; each row's revoke form posts to `{base}/grants/{id}/revoke`.
pub(crate) fn panel(grants: &[Grant], base: &str, csrf: &str) -> String {
    let rows: String = grants
        .iter()
        .map(|g| {
            format!(
                "<tr><td>{client}<div class=\"code\">{client_id}</div></td><td>{app}</td><td>{scopes}</td>\
                 <td class=\"nowrap\">{created} UTC</td><td class=\"nowrap\">{used}</td><td>\
                 <form method=\"post\" action=\"{base}/grants/{id}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" class=\"secondary\" aria-label=\"Disconnect {client}\">Disconnect</button></form></td></tr>",
                client = escape(&g.client_name),
                client_id = escape(&short(&g.client_id)),
                app = escape(&g.app),
                scopes = escape(&g.scopes.join(" ")),
                created = g.created_at.utc(),
                used = g
                    .last_used_at
                    .map(|t| format!("{} UTC", t.utc()))
                    .unwrap_or_else(|| "—".to_owned()),
                id = escape(&g.id),
            )
        })
        .collect();
    format!(
        "<div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Connected MCP clients\"><h2>Connected MCP clients</h2>\
         <p class=\"muted\">Clients allowed to use MCP servers through Portcullis (Claude, ChatGPT, VS Code…). Disconnecting one ends its access at once.</p>\
         <table><thead><tr><th>Client</th><th>MCP server</th><th>Scopes</th><th>Connected</th><th>Last used</th><th></th></tr></thead>\
         <tbody>{}</tbody></table></div>",
        rows_or(rows, 6, "No connected clients.")
    )
}

/// Long client ids (metadata document URLs, registered ids) shortened for the table.
fn short(id: &str) -> String {
    if id.chars().count() <= 48 {
        return id.to_owned();
    }
    let head: String = id.chars().take(45).collect();
    format!("{head}…")
}

/// `POST /.portcullis/account/grants/{id}/revoke`: a person disconnects one of their clients.
pub async fn revoke_own(
    State(state): State<AppState>,
    from: ClientAddr,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    const HERE: &str = "/.portcullis/account";
    let me = match crate::account::signed_in_at(&state, &method, &headers, HERE).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = csrf_refusal(&state, &me, &form.csrf) {
        return refused;
    }
    if let Err(e) = state
        .directory
        .revoke_grant(&me.identity.username, &id, &from.actor(&me.user_id))
        .await
    {
        return respond::failure(&Failure::from(e), true);
    }
    state.apply_grant_change().await;
    location(StatusCode::SEE_OTHER, &format!("{HERE}?done=grant_revoked"))
}
