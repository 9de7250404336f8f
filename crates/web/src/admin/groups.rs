//! Groups: every group with its size, and one group's members with where each membership comes
//! from. Hand-made memberships can be removed here; provider memberships follow the provider.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_core::Failure;
use portcullis_http::html::escape;
use portcullis_http::respond;
use serde::Deserialize;

use super::{FormPost, Page, admin, admin_post, form_token, location};
use crate::state::AppState;

fn group_href(name: &str) -> String {
    format!(
        "/.portcullis/admin/groups/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

pub async fn list(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let me = match admin(&state, &method, &headers, "/.portcullis/admin/groups").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let groups = match state.store.list_groups().await {
        Ok(groups) => groups,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let rows: String = groups
        .iter()
        .map(|g| {
            format!(
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td></tr>",
                escape(&group_href(&g.name)),
                escape(&g.name),
                g.members
            )
        })
        .collect();
    let body = format!(
        "<h1>Groups</h1><p class=\"muted\">Local groups are made here or with the CLI; groups from an identity \
         provider are synced at every sign-in and token refresh.</p>\
         <div class=\"panel\"><table><thead><tr><th>Group</th><th>Members</th></tr></thead><tbody>{rows}</tbody></table></div>"
    );
    let page = Page {
        title: "Groups",
        section: "groups",
        who: &me.identity.username,
        admin: true,
    };
    page.render(StatusCode::OK, &body)
}

pub async fn detail(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let me = match admin(&state, &method, &headers, &group_href(&name)).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let members = match state.store.group_members(&name).await {
        Ok(members) => members,
        Err(e) => return respond::failure(&Failure::from(e), true),
    };
    let csrf = form_token(&state, &me);
    let rows: String = members
        .iter()
        .map(|(user, source)| {
            let action = if source == "local" {
                format!(
                    "<form method=\"post\" action=\"/.portcullis/admin/users/{user}/groups/remove\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"group\" value=\"{group}\">\
                     <button type=\"submit\" class=\"secondary\" aria-label=\"Remove {user} from {group}\">Remove</button></form>",
                    user = escape(&user.username),
                    group = escape(&name),
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td><a href=\"/.portcullis/admin/users/{u}\">{u}</a></td><td>{n}</td><td><span class=\"badge\">{s}</span></td><td>{action}</td></tr>",
                u = escape(&user.username),
                n = escape(user.display_name.as_deref().unwrap_or("")),
                s = escape(source),
            )
        })
        .collect();
    let body = format!(
        "<p><a href=\"/.portcullis/admin/groups\">← All groups</a></p><h1>{}</h1>\
         <div class=\"panel\"><table><thead><tr><th>Member</th><th>Name</th><th>Source</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>",
        escape(&name)
    );
    let page = Page {
        title: &name,
        section: "groups",
        who: &me.identity.username,
        admin: true,
    };
    page.render(StatusCode::OK, &body)
}

#[derive(Deserialize, Default)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
}

pub async fn remove(
    State(state): State<AppState>,
    post: FormPost,
    Path(username): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let actor = match admin_post(&state, &post, &group_href(&form.group), &form.csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    if let Err(e) = state
        .directory
        .remove_from_group(&username, &form.group, &actor)
        .await
    {
        return respond::failure(&Failure::bad_request(e.to_string()), true);
    }
    if let Ok(user) = state.directory.user(&username).await {
        state.apply_user_change(&user.id).await;
    }
    location(StatusCode::SEE_OTHER, &group_href(&form.group))
}
