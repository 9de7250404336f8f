//! The audit log, newest first, paged.

use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::Failure;
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use super::{Page, admin};
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    before: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Response {
    let me = match admin(&state, &method, &headers, "/.portcullis/admin/audit").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let events = match state.store.audit_page(query.before, PAGE_SIZE).await {
        Ok(events) => events,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    // The trail records user ids (stable across renames); show usernames.
    let mut names = std::collections::HashMap::new();
    for (_, e) in &events {
        if let Some(actor) = &e.actor
            && !names.contains_key(actor)
            && let Ok(Some(user)) = state.store.user_by_id(actor).await
        {
            names.insert(actor.clone(), user.username);
        }
    }
    let rows: String = events
        .iter()
        .map(|(_, e)| {
            let outcome = if e.outcome == "success" { "ok" } else { "bad" };
            format!(
                "<tr><td class=\"code nowrap\">{at}</td><td class=\"nowrap\">{action}</td><td><span class=\"badge {outcome}\">{outcome_text}</span></td>\
                 <td>{actor}</td><td>{subject}</td><td>{reason}</td><td class=\"code\">{ip}</td></tr>",
                at = e.at.utc(),
                action = escape(&e.action),
                outcome_text = escape(&e.outcome),
                actor = escape(e.actor.as_deref().map(|a| names.get(a).map_or(a, String::as_str)).unwrap_or("—")),
                subject = escape(e.subject.as_deref().unwrap_or("—")),
                reason = escape(e.reason.as_deref().unwrap_or("")),
                ip = escape(e.client_ip.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let next = (events.len() == PAGE_SIZE as usize)
        .then(|| {
            events
                .last()
                .map(|(id, _)| format!("<a href=\"?before={id}\">Older →</a>"))
        })
        .flatten()
        .unwrap_or_default();
    let newest = if query.before.is_some() {
        "<a href=\"/.portcullis/admin/audit\">← Newest</a>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Audit log</h1><p class=\"muted\">Every sign-in, sign-out and directory change, newest first. \
         <a href=\"/.portcullis/api/v1/audit.jsonl\">Export as JSON lines</a>.</p>\
         <div class=\"panel\"><table><thead><tr><th>Time (UTC)</th><th>Action</th><th>Outcome</th><th>Actor</th><th>Subject</th><th>Detail</th><th>From</th></tr></thead>\
         <tbody>{rows}</tbody></table><div class=\"pager\"><span>{newest}</span><span></span><span>{next}</span></div></div>"
    );
    Page {
        title: "Audit log",
        section: "audit",
        who: &me.identity.username,
        admin: true,
    }
    .render(StatusCode::OK, &body)
}
