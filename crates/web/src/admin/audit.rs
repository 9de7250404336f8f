//! The audit log, newest first, paged.

use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::{Failure, Timestamp};
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use portcullis_store::AuditFilter;
use serde::{Deserialize, Serialize};

use super::{Page, admin};
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize, Default, Serialize, Clone)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    action: String,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    since: String,
    /// `YYYY-MM-DD`, to the end of that day (UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    until: String,
}

/// The filter for a username (by or about them), an action and a time range; an unknown
/// username is a 404 that names it, rather than an empty list that looks like no activity.
pub(crate) async fn audit_filter(
    state: &AppState,
    before: Option<i64>,
    user: Option<&str>,
    action: Option<&str>,
    (since, until): (Option<Timestamp>, Option<Timestamp>),
) -> Result<AuditFilter, Failure> {
    let wanted = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let user = match wanted(user) {
        Some(name) => {
            let user = state.directory.user(&name).await.map_err(Failure::from)?;
            Some((user.id, user.username))
        }
        None => None,
    };
    Ok(AuditFilter {
        before,
        action: wanted(action),
        user,
        since,
        until,
    })
}

/// A date field of the filter form: empty is no bound, anything else must be a date.
fn date(field: &str, value: &str, end_of_day: bool) -> Result<Option<Timestamp>, Failure> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let day = Timestamp::from_date(value).ok_or_else(|| {
        Failure::bad_request(format!("{field}: {value:?} is not a date like 2026-12-01"))
    })?;
    Ok(Some(if end_of_day {
        day.plus(std::time::Duration::from_secs(86_400))
    } else {
        day
    }))
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
    let range = match (
        date("since", &query.since, false),
        date("until", &query.until, true),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(f), _) | (_, Err(f)) => return respond::failure(&f, true),
    };
    let filter = match audit_filter(
        &state,
        query.before,
        Some(&query.user),
        Some(&query.action),
        range,
    )
    .await
    {
        Ok(filter) => filter,
        Err(f) => return respond::failure(&f, true),
    };
    let events = match state.store.audit_page(&filter, PAGE_SIZE).await {
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
            events.last().map(|(id, _)| {
                let older = AuditQuery {
                    before: Some(*id),
                    ..query.clone()
                };
                let href = serde_urlencoded::to_string(&older).unwrap_or_default();
                format!("<a href=\"?{}\">Older →</a>", escape(&href))
            })
        })
        .flatten()
        .unwrap_or_default();
    let newest = if query.before.is_some() {
        "<a href=\"/.portcullis/admin/audit\">← Newest</a>"
    } else {
        ""
    };
    let rows = rows_or(rows, 7, "No entries match.");
    let field = |id, label, kind, value: &str| {
        format!(
            "<div><label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" type=\"{kind}\" value=\"{}\"></div>",
            escape(value)
        )
    };
    let filters = format!(
        "<div class=\"panel\"><form method=\"get\" action=\"/.portcullis/admin/audit\" class=\"row\" role=\"search\">{}{}{}{}\
         <button type=\"submit\" class=\"secondary\">Filter</button></form></div>",
        field("user", "User", "text", &query.user),
        field("action", "Action", "text", &query.action),
        field("since", "From (UTC)", "date", &query.since),
        field("until", "To (UTC)", "date", &query.until),
    );
    let body = format!(
        "<h1>Audit log</h1><p class=\"muted\">Every sign-in, sign-out and directory change, newest first. \
         <a href=\"/.portcullis/api/v1/audit.jsonl\">Export as JSON lines</a>.</p>{filters}\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Audit entries\"><table><thead><tr><th>Time (UTC)</th><th>Action</th><th>Outcome</th><th>Actor</th><th>Subject</th><th>Detail</th><th>From</th></tr></thead>\
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
