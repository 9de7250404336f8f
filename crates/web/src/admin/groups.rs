//! Groups: every group with its size, and one group's members with where each membership comes
//! from. Hand-made memberships can be removed here; provider memberships follow the provider.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use portcullis_auth::directory::DirectoryError;
use portcullis_core::Failure;
use portcullis_http::html::{escape, rows_or};
use portcullis_http::respond;
use serde::Deserialize;

use super::{FormPost, Page, admin, admin_post, form_token, location};
use crate::csrf::CsrfForm;
use crate::pages::{Field, FieldError};
use crate::state::AppState;

fn group_href(name: &str) -> String {
    format!(
        "/.portcullis/admin/groups/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let me = match admin(&state, &method, &headers, "/.portcullis/admin/groups").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let done = match query.done.as_deref() {
        Some("deleted") => {
            "<div class=\"notice\" role=\"status\">Group deleted; its members' sessions carry their new groups.</div>"
        }
        _ => "",
    };
    render_list(&state, &me, done, "", None).await
}

/// The groups page; `typed` and `error` redisplay the create form after a refusal.
async fn render_list(
    state: &AppState,
    me: &portcullis_auth::ActiveSession,
    done: &str,
    typed: &str,
    error: Option<&FieldError>,
) -> Response {
    let csrf = form_token(state, me);
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
    let rows = rows_or(rows, 2, "No groups yet.");
    let name_field = Field {
        id: "group_name",
        label: "New group",
        attributes: "required autocomplete=\"off\"",
        value: typed,
        hint: None,
    }
    .render(error);
    let body = format!(
        "<h1>Groups</h1>{done}<p class=\"muted\">Local groups are made here or with the CLI; groups from an identity \
         provider are synced at every sign-in and token refresh.</p>\
         <div class=\"panel\"><form method=\"post\" action=\"/.portcullis/admin/groups\" class=\"row\">\
           <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><div>{name_field}</div>\
           <button type=\"submit\" class=\"secondary\">Create group</button></form></div>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Groups\"><table><thead><tr><th>Group</th><th>Members</th></tr></thead><tbody>{rows}</tbody></table></div>"
    );
    let page = Page {
        title: "Groups",
        section: "groups",
        who: &me.identity.username,
        admin: true,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page.render(status, &body)
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group_name: String,
}

pub async fn create(
    State(state): State<AppState>,
    post: FormPost,
    Form(form): Form<CreateForm>,
) -> Response {
    let (me, actor) = match admin_post(&state, &post, "/.portcullis/admin/groups", &form.csrf).await
    {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    match state.directory.create_group(&form.group_name, &actor).await {
        Ok(()) => location(StatusCode::SEE_OTHER, &group_href(form.group_name.trim())),
        Err(DirectoryError::Invalid(why)) => {
            let error = FieldError::new("group_name", why);
            render_list(&state, &me, "", &form.group_name, Some(&error)).await
        }
        Err(e) => super::directory_failure(e),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    post: FormPost,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let actor = match admin_post(&state, &post, &group_href(&name), &form.csrf).await {
        Ok((_, actor)) => actor,
        Err(refused) => return refused,
    };
    match state.directory.delete_group(&name, &actor).await {
        Ok(members) => {
            for member in members {
                state.apply_user_change(&member).await;
            }
            location(
                StatusCode::SEE_OTHER,
                "/.portcullis/admin/groups?done=deleted",
            )
        }
        Err(e) => super::directory_failure(e),
    }
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
    let rows = rows_or(rows, 4, "No members. Add people from their user page.");
    // Two steps without JavaScript: the button that deletes is inside a disclosure that says
    // what deleting does.
    let body = format!(
        "<p><a href=\"/.portcullis/admin/groups\">← All groups</a></p><h1>{group}</h1>\
         <div class=\"panel\" tabindex=\"0\" role=\"region\" aria-label=\"Members\"><table><thead><tr><th>Member</th><th>Name</th><th>Source</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>\
         <div class=\"panel\"><details><summary>Delete this group…</summary>\
           <p>Every membership of {group} ends, whatever its source (a provider that still sends the group adds it again at the next sign-in). \
           Apps that allow this group stop admitting its members.</p>\
           <form method=\"post\" action=\"{href}/delete\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
           <button type=\"submit\" class=\"danger\" style=\"width:auto\">Delete {group}</button></form></details></div>",
        group = escape(&name),
        href = escape(&group_href(&name)),
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
