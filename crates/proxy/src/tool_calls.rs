//! Tool calls to MCP apps: which tools a request calls, checked against the app's tool rules
//! and recorded in the audit trail.
//!
//! A client's JSON-RPC messages arrive as `POST` bodies (one message, or a batch from clients of
//! revision 2025-03-26). The body is read into memory up to [`MAX_INSPECTED`] bytes, parsed the
//! way the server will parse it (a JSON value: the last of duplicate keys wins, as in
//! JavaScript and Python), and forwarded unchanged. Responses are never buffered: SSE streams
//! back event by event. Where tool rules apply, a body that cannot be read as JSON-RPC is
//! refused rather than passed on unchecked.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use portcullis_auth::audit::{Audit, Entry};
use portcullis_auth::principal::Credential;
use portcullis_core::tools::ToolPolicy;
use portcullis_core::{Failure, FailureKind};
use serde_json::Value;

use crate::context::RequestContext;
use crate::phases::Stop;

/// The most of a request body read to find its tool calls.
pub const MAX_INSPECTED: usize = 4 << 20;
/// Arguments recorded in the audit trail are cut to this many characters.
const MAX_AUDITED_ARGUMENTS: usize = 1000;

/// One `tools/call` in a request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: Value,
    pub name: String,
    pub arguments: Option<String>,
}

/// A request's tool calls, and the refusal of the first one the rules deny.
#[derive(Debug, Default)]
pub struct Inspected {
    pub calls: Vec<ToolCall>,
    pub denied: Option<(Value, String)>,
}

/// Whether a request to an MCP app can carry tool calls worth reading.
pub fn carries_messages(method: &Method) -> bool {
    method == Method::POST
}

/// Reads the body of `req` (putting the same bytes back) and decides its tool calls for a
/// caller in `groups`.
pub async fn inspect(
    req: &mut Request<Body>,
    policy: &ToolPolicy,
    groups: &[String],
) -> Result<Inspected, Failure> {
    let enforcing = !policy.rules.is_empty();
    let body = std::mem::take(req.body_mut());
    let bytes = match Limited::new(body, MAX_INSPECTED).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(Failure::new(
                FailureKind::BadRequest,
                format!(
                    "This MCP request is larger than {} MiB, too large to check its tool calls.",
                    MAX_INSPECTED >> 20
                ),
            )
            .with_hint("send smaller messages"));
        }
        Err(_) => {
            return Err(Failure::bad_request(
                "the request body could not be read to its end",
            ));
        }
    };
    *req.body_mut() = Body::from(bytes.clone());
    let calls = match tool_calls(&bytes) {
        Some(calls) => calls,
        None if enforcing => {
            return Err(Failure::bad_request(
                "This MCP request is not JSON-RPC, so its tool calls cannot be checked.",
            )
            .with_hint("send JSON-RPC 2.0 messages as application/json"));
        }
        None => Vec::new(),
    };
    let calls: Vec<ToolCall> = calls
        .into_iter()
        .map(|mut call| {
            if !policy.audit_arguments {
                call.arguments = None;
            }
            call
        })
        .collect();
    let denied = calls.iter().find_map(|call| {
        policy
            .decide(groups, &call.name)
            .err()
            .map(|why| (call.id.clone(), why))
    });
    Ok(Inspected { calls, denied })
}

/// The `tools/call` messages in a body; `None` when it is not JSON-RPC at all.
fn tool_calls(body: &Bytes) -> Option<Vec<ToolCall>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let messages = match value {
        Value::Array(batch) => batch,
        single @ Value::Object(_) => vec![single],
        _ => return None,
    };
    let mut calls = Vec::new();
    for message in &messages {
        let object = message.as_object()?;
        if object.get("method").and_then(Value::as_str) != Some("tools/call") {
            continue;
        }
        let params = object.get("params");
        // A call without a name is the server's to refuse, but never an unchecked one.
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let arguments = params.and_then(|p| p.get("arguments")).map(|a| {
            let text = a.to_string();
            text.chars().take(MAX_AUDITED_ARGUMENTS).collect()
        });
        calls.push(ToolCall {
            id: object.get("id").cloned().unwrap_or(Value::Null),
            name,
            arguments,
        });
    }
    Some(calls)
}

/// The phase: for a signed-in `POST` to an MCP app, reads its tool calls, records each in the
/// audit trail (off the request path) and stops the request when the app's tool rules refuse
/// one.
pub async fn check(
    ctx: &RequestContext,
    req: &mut Request<Body>,
    audit: &Audit,
) -> Result<(), Stop> {
    let (Some(app), Some(principal)) = (&ctx.app, &ctx.principal) else {
        return Ok(());
    };
    let Some(mcp) = &app.mcp else {
        return Ok(());
    };
    if !carries_messages(&ctx.method) {
        return Ok(());
    }
    let inspected = inspect(req, &mcp.tools, &principal.identity.groups).await?;
    let allowed = inspected.denied.is_none();
    let client = match &principal.credential {
        Credential::Grant(grant) => format!("client {}", grant.client_name),
        Credential::Key(key) => format!("key {}", key.name),
        _ => "another credential".to_owned(),
    };
    for call in inspected.calls {
        let mut reason = format!("tool {} via {client}", call.name);
        if let Some(arguments) = &call.arguments {
            reason.push_str(&format!(" with {arguments}"));
        }
        let (audit, actor, app) = (audit.clone(), principal.actor_id(), app.name.clone());
        let client_ip = Some(ctx.client.client_ip.to_string());
        tokio::spawn(async move {
            audit
                .record(Entry {
                    action: "mcp_tool_call",
                    success: allowed,
                    actor: Some(&actor),
                    subject: Some(&app),
                    reason: Some(&reason),
                    client_ip,
                })
                .await;
        });
    }
    match inspected.denied {
        Some((id, why)) => Err(Stop::ToolRefused { id, why }),
        None => Ok(()),
    }
}

/// The answer to a refused tool call: a JSON-RPC error for its id, which MCP clients show as
/// that call's failure (the session goes on).
pub fn refusal(id: &Value, why: &str) -> Response<Body> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": -32001, "message": format!("Portcullis refused this tool call: {why}.") },
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::tools::ToolRule;

    fn request(body: &str) -> Request<Body> {
        Request::post("/mcp")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn tool_calls_are_found_decided_and_the_body_goes_on_unchanged() {
        let policy = ToolPolicy {
            rules: vec![ToolRule {
                allow: vec!["echo".into()],
                ..ToolRule::default()
            }],
            audit_arguments: true,
        };
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
        let mut req = request(body);
        let inspected = inspect(&mut req, &policy, &[]).await.unwrap();
        assert_eq!(inspected.calls.len(), 1);
        assert_eq!(inspected.calls[0].name, "echo");
        assert_eq!(
            inspected.calls[0].arguments.as_deref(),
            Some(r#"{"message":"hi"}"#)
        );
        assert!(inspected.denied.is_none());
        let forwarded = std::mem::take(req.body_mut())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(forwarded, body.as_bytes());

        // A batch with one denied call; a duplicate name key is judged by its last value, as
        // the server reads it.
        let mut req = request(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","name":"rm_rf"}}]"#,
        );
        let inspected = inspect(&mut req, &policy, &[]).await.unwrap();
        assert_eq!(inspected.denied.map(|(id, _)| id), Some(Value::from(2)));

        // Not JSON: refused where rules apply, passed on where only auditing.
        let mut req = request("\u{feff}{\"method\":\"tools/call\"}");
        assert!(inspect(&mut req, &policy, &[]).await.is_err());
        let mut req = request("not json");
        let audit_only = ToolPolicy::default();
        assert!(
            inspect(&mut req, &audit_only, &[])
                .await
                .unwrap()
                .calls
                .is_empty()
        );

        // Too large to check.
        let mut req = request(&" ".repeat(MAX_INSPECTED + 1));
        assert!(inspect(&mut req, &audit_only, &[]).await.is_err());
    }
}
