//! The API-key form and the "shown once" panel, shared by the account page and the admin pages.

use std::time::Duration;

use portcullis_http::html::escape;
use serde::Deserialize;

/// A posted "create key" form.
#[derive(Deserialize, Default)]
pub struct KeyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    /// Comma-separated app names; empty: every app.
    #[serde(default)]
    pub apps: String,
    /// Whole days; empty: never expires.
    #[serde(default)]
    pub expires_days: String,
}

impl KeyForm {
    pub fn apps(&self) -> Vec<String> {
        self.apps
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn lifetime(&self) -> Result<Option<Duration>, String> {
        match self.expires_days.trim() {
            "" => Ok(None),
            days => match days.parse::<u64>() {
                Ok(days) if days > 0 => Ok(Some(Duration::from_secs(days.saturating_mul(86_400)))),
                _ => Err("expiry must be a whole number of days".to_owned()),
            },
        }
    }
}

/// The form that posts a [`KeyForm`] to `action`.
pub fn create_form(action: &str, csrf: &str, placeholder: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"row\" style=\"margin-top:14px\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div><label for=\"key-name\">Key name</label><input id=\"key-name\" name=\"name\" required placeholder=\"{placeholder}\"></div>\
         <div><label for=\"key-apps\">Apps (comma-separated, empty: all)</label><input id=\"key-apps\" name=\"apps\"></div>\
         <div><label for=\"key-days\">Expires in days (empty: never)</label><input id=\"key-days\" name=\"expires_days\" inputmode=\"numeric\"></div>\
         <button type=\"submit\">Create key</button></form>\
         <p class=\"hint\">A key reaches the apps it names (empty: every app its owner may use). Portcullis's own API accepts only keys that name \
         <span class=\"code\">portcullis-api</span>, with their owner's role.</p>",
        action = escape(action),
        csrf = escape(csrf),
        placeholder = escape(placeholder),
    )
}

/// The panel that shows a just-created key, the only time it is ever shown.
pub fn shown_once(secret: Option<&str>) -> String {
    secret
        .map(|k| {
            format!(
                "<div class=\"panel\"><h2>New API key</h2><p>Copy it now: it will not be shown again.</p>\
                 <div class=\"secret\" id=\"new-key\">{}</div>{}</div>",
                escape(k),
                portcullis_http::html::copy_button("new-key", "the new key")
            )
        })
        .unwrap_or_default()
}
