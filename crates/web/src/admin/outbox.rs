//! Provisioning: what waits in the outbox, and the dead letters an operator can retry or discard.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::directory::Settle;
use portcullis_core::Failure;
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use super::{FormPost, Page, admin, admin_post, directory_failure, form_token, location};
use crate::state::AppState;

const HERE: &str = "/.portcullis/admin/outbox";

pub async fn page(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let me = match admin(&state, &method, &headers, HERE).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let (stats, dead) = match tokio::try_join!(
        state.store.outbox_stats(),
        state.store.deliveries_in("dead", 200)
    ) {
        Ok(found) => found,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let csrf = form_token(&state, &me);
    let now = state.clock.now().0;
    let oldest = stats
        .oldest_pending
        .map(|t| format!("{} s", (now - t.0).max(0)))
        .unwrap_or_else(|| "—".into());
    let mut rows = String::new();
    for d in &dead {
        let user = match state.store.user_by_id(&d.user_id).await {
            Ok(Some(u)) => u.username,
            _ => d.user_id.clone(),
        };
        let button = |action: &str, label: &str, class: &str| {
            format!(
                "<form method=\"post\" action=\"{HERE}/{action}\" style=\"display:inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"sink\" value=\"{sink}\"><input type=\"hidden\" name=\"seq\" value=\"{seq}\">\
                 <button type=\"submit\" class=\"{class}\" style=\"width:auto\">{label}</button></form>",
                sink = escape(&d.sink),
                seq = d.seq,
            )
        };
        rows.push_str(&format!(
            "<tr><td>{sink}</td><td>{user}</td><td>{event}</td><td>{attempts}</td><td class=\"code\">{error}</td><td class=\"nowrap\">{retry} {discard}</td></tr>",
            sink = escape(&d.sink),
            user = escape(&user),
            event = escape(&d.kind),
            attempts = d.attempts,
            error = escape(d.last_error.as_deref().unwrap_or("")),
            retry = button("retry", "Retry", "secondary"),
            discard = button("discard", "Discard", "danger"),
        ));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"6\" class=\"muted\">No dead letters.</td></tr>".into();
    }
    let body = format!(
        "<h1>Provisioning</h1><p class=\"muted\">Directory changes on their way to the apps (see docs/provisioning.md).</p>\
         <div class=\"panel\"><table><tr><th>Waiting</th><td>{pending}</td></tr><tr><th>Oldest waiting</th><td>{oldest}</td></tr>\
         <tr><th>Dead letters</th><td>{dead_count}</td></tr></table></div>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Dead letters\"><h2>Dead letters</h2><table><thead><tr><th>Sink</th><th>User</th><th>Event</th><th>Attempts</th><th>Last error</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <form method=\"post\" action=\"{HERE}/retry\" style=\"margin-top:14px\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" class=\"secondary\" style=\"width:auto\">Retry all</button></form></div>",
        pending = stats.pending,
        dead_count = stats.dead,
    );
    Page {
        title: "Provisioning",
        section: "outbox",
        who: &me.identity.username,
        admin: true,
    }
    .render(StatusCode::OK, &body)
}

#[derive(Deserialize)]
pub struct WhichForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    seq: Option<i64>,
}

async fn act(state: &AppState, post: &FormPost, form: &WhichForm, settle: Settle) -> Response {
    let actor = match admin_post(state, post, HERE, &form.csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    let which = form.sink.as_deref().zip(form.seq);
    match state
        .directory
        .settle_dead_letters(which, settle, &actor)
        .await
    {
        Ok(_) => location(StatusCode::SEE_OTHER, HERE),
        Err(e) => directory_failure(e),
    }
}

pub async fn retry(
    State(state): State<AppState>,
    post: FormPost,
    Form(form): Form<WhichForm>,
) -> Response {
    act(&state, &post, &form, Settle::Retry).await
}

pub async fn discard(
    State(state): State<AppState>,
    post: FormPost,
    Form(form): Form<WhichForm>,
) -> Response {
    act(&state, &post, &form, Settle::Discard).await
}
