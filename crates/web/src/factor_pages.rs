//! The HTML of second factors: the code step of a sign-in or step-up, setting up an
//! authenticator app, recovery codes shown once, and the account page's panel. Every dynamic
//! value is escaped.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use portcullis_auth::factors::{FactorSummary, PasskeyCeremony, RECOVERY_CODES};
use portcullis_http::html::{copy_button, escape, page, rows_or};
use portcullis_store::FactorKind;

use crate::pages::{Field, FieldError};

/// Where the code step posts.
pub const FACTOR_PATH: &str = "/.portcullis/sign_in/factor";
/// Where an authenticator app is set up.
pub const ENROL_PATH: &str = "/.portcullis/account/factors/totp";

/// The code form of a sign-in (with its sealed pending step) or of a step-up (without).
pub struct CodeForm<'a> {
    pub csrf: &'a str,
    /// The sealed pending sign-in; empty for a step-up of the current session.
    pub pending: &'a str,
    pub return_to: &'a str,
    pub error: Option<&'a FieldError>,
    /// Why the code is asked (a step-up names the app's need).
    pub intro: &'a str,
    /// A passkey ceremony, when the account has a passkey.
    pub passkey: Option<&'a PasskeyCeremony>,
}

/// A form that runs a passkey ceremony when submitted: the page script fills in `credential`
/// and posts it with `challenge`.
pub fn passkey_form(
    action: &str,
    hidden_fields: &[(&str, &str)],
    ceremony: &PasskeyCeremony,
    before_button: &str,
    button: &str,
) -> String {
    let fields: String = hidden_fields
        .iter()
        .map(|(name, value)| hidden(name, value))
        .collect();
    format!(
        "<form method=\"post\" action=\"{action}\" data-passkey=\"{options}\" class=\"passkey\">{fields}{challenge}\
         <input type=\"hidden\" name=\"credential\" value=\"\">{before_button}\
         <button type=\"submit\" class=\"secondary\">{button}</button>\
         <p class=\"field-error passkey-error\" role=\"alert\" hidden></p></form>",
        action = escape(action),
        options = escape(&ceremony.options),
        challenge = hidden("challenge", &ceremony.sealed),
        button = escape(button),
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

fn code_field(error: Option<&FieldError>, label: &str, focus: bool) -> String {
    let focus = if focus && error.is_none() {
        " autofocus"
    } else {
        ""
    };
    let attributes = format!(
        "inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"16\" spellcheck=\"false\"{focus}"
    );
    Field {
        id: "code",
        label,
        attributes: &attributes,
        value: "",
        hint: Some("code-hint"),
    }
    .render(error)
}

pub fn code_page(form: &CodeForm<'_>) -> String {
    let passkey = form
        .passkey
        .map(|ceremony| {
            let fields = [
                ("csrf", form.csrf),
                ("pending", form.pending),
                ("rd", form.return_to),
            ];
            format!(
                "<p class=\"divider\"><span>or</span></p>{}",
                passkey_form(FACTOR_PATH, &fields, ceremony, "", "Use a passkey")
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Two-step verification</h1><p>{intro}</p>\
         <form method=\"post\" action=\"{FACTOR_PATH}\">{csrf}{pending}{rd}{code}\
         <p class=\"hint\" id=\"code-hint\">The six digits your authenticator app shows now, or one of your recovery codes (each works once).</p>\
         <button type=\"submit\">Verify</button></form>{passkey}\
         <p class=\"hint\">Lost your phone and your recovery codes? An administrator can reset your second factors.</p>\
         <p><a href=\"/.portcullis/sign_out\">Cancel and sign out</a></p>",
        intro = escape(form.intro),
        csrf = hidden("csrf", form.csrf),
        pending = hidden("pending", form.pending),
        rd = hidden("rd", form.return_to),
        code = code_field(form.error, "Code", true),
    );
    page("Two-step verification", &body)
}

/// A step-up for someone who has no factor yet: set one up, then carry on.
pub fn enrol_needed_page(return_to: &str) -> String {
    let rd = utf8_percent_encode(return_to, NON_ALPHANUMERIC).to_string();
    let body = format!(
        "<h1>A second factor is needed</h1>\
         <p>This page needs a second factor besides your sign-in, and your account has none yet. Set up an authenticator app \
         (such as Google Authenticator, Microsoft Authenticator, 1Password or Aegis); it takes a minute, and you carry on right after.</p>\
         <p><a class=\"button\" href=\"{ENROL_PATH}?rd={rd}\">Set up an authenticator app</a></p>\
         <p><a href=\"/.portcullis/sign_out\">Cancel and sign out</a></p>",
        rd = escape(&rd),
    );
    page("A second factor is needed", &body)
}

/// What the set-up page shows: the QR code, the secret to type by hand, and the form.
pub struct EnrolView<'a> {
    pub csrf: &'a str,
    pub sealed: &'a str,
    pub secret: &'a str,
    /// The QR code of the `otpauth://` link, as SVG markup.
    pub qr_svg: &'a str,
    pub label: &'a str,
    pub return_to: &'a str,
    pub error: Option<&'a FieldError>,
}

pub fn enrol_body(view: &EnrolView<'_>) -> String {
    // The secret in groups of four, as apps that take it typed show it.
    let grouped: String = view
        .secret
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let label = Field {
        id: "label",
        label: "Name it (to tell your devices apart)",
        attributes: "maxlength=\"64\" autocomplete=\"off\"",
        value: view.label,
        hint: None,
    }
    .render(view.error);
    format!(
        "<h1>Set up an authenticator app</h1>\
         <div class=\"panel\"><h2>1. Scan this code with the app</h2>\
           <div class=\"qr\" role=\"img\" aria-label=\"QR code of the authenticator app's setup link\">{qr}</div>\
           <p class=\"muted\">Cannot scan? Choose “enter a setup key” in the app and type this key (time-based):</p>\
           <p class=\"code\" id=\"totp-secret\">{grouped}</p></div>\
         <div class=\"panel\"><h2>2. Type the code the app shows</h2>\
           <form method=\"post\" action=\"{ENROL_PATH}\">{csrf}{sealed}{rd}{label}{code}\
           <p class=\"hint\" id=\"code-hint\">Six digits; a new one every 30 seconds.</p>\
           <button type=\"submit\">Turn on</button></form></div>",
        qr = view.qr_svg,
        grouped = escape(&grouped),
        csrf = hidden("csrf", view.csrf),
        sealed = hidden("sealed", view.sealed),
        rd = hidden("rd", view.return_to),
        code = code_field(view.error, "Code from the app", false),
    )
}

/// Recovery codes, the only time they are shown.
pub fn recovery_codes_body(heading: &str, codes: &[String], continue_to: &str) -> String {
    let items: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", escape(c)))
        .collect();
    format!(
        "<h1>{heading}</h1>\
         <div class=\"panel\" id=\"recovery-codes\"><h2>Your recovery codes</h2>\
         <p>If you lose your phone, each of these codes signs you in once instead of the app. Keep them somewhere safe \
         (a password manager, or printed). <strong>They are shown only now.</strong></p>\
         <ol class=\"codes code\" id=\"recovery-code-list\">{items}</ol>{copy}</div>\
         <p><a class=\"button\" href=\"{continue_to}\">Continue</a></p>",
        heading = escape(heading),
        continue_to = escape(continue_to),
        copy = copy_button("recovery-code-list", "the recovery codes"),
    )
}

/// The account page's panel: the factors, each removable with a current code, the recovery
/// codes left, and the way to add an app.
pub fn account_panel(
    summary: &FactorSummary,
    csrf: &str,
    error: Option<&FieldError>,
    (passkey, recent): (Option<&PasskeyCeremony>, bool),
) -> String {
    let rows: String = summary
        .factors
        .iter()
        .map(|f| {
            let id = escape(&f.id);
            // Within minutes of proving a second factor, that proof is the re-authentication.
            let confirm = if recent {
                String::new()
            } else {
                format!(
                    "<label for=\"remove-code-{id}\">Confirm with a current code or a recovery code</label>\
                     <input id=\"remove-code-{id}\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"16\">"
                )
            };
            format!(
                "<tr><td>{label}</td><td>{kind}</td><td>{added} UTC</td><td>{used}</td><td>\
                 <details><summary>Remove…</summary>\
                 <form method=\"post\" action=\"/.portcullis/account/factors/{id}/remove\">{csrf}{confirm}\
                 <button type=\"submit\" class=\"danger\">Remove {label}</button></form></details></td></tr>",
                kind = kind_name(f.kind),
                label = escape(&f.label),
                added = f.created_at.utc(),
                used = f
                    .last_used_at
                    .map(|t| format!("{} UTC", t.utc()))
                    .unwrap_or_else(|| "never".to_owned()),
                csrf = hidden("csrf", csrf),
            )
        })
        .collect();
    let alert = error
        .map(|e| {
            format!(
                "<div class=\"alert\" role=\"alert\" id=\"factor-error\">{}</div>",
                escape(&e.message)
            )
        })
        .unwrap_or_default();
    let recovery = if summary.factors.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">Recovery codes left: {left} of {RECOVERY_CODES}.</p>\
             <details><summary>New recovery codes…</summary>\
             <form method=\"post\" action=\"/.portcullis/account/recovery-codes\">{csrf}\
             <label for=\"renew-code\">Confirm with a current code (the old recovery codes stop working)</label>\
             <input id=\"renew-code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"16\">\
             <button type=\"submit\" class=\"secondary\">Make new codes</button></form></details>",
            left = summary.recovery_codes_left,
            csrf = hidden("csrf", csrf),
        )
    };
    format!(
        "<div class=\"panel\" id=\"factors-panel\" tabindex=\"0\" role=\"region\" aria-label=\"Second factors\"><h2>Second factors</h2>{alert}\
         <p class=\"muted\">An authenticator app's code or a passkey, asked after your password and wherever an app needs a second factor. \
         A passkey also signs you in without a password.</p>\
         <table><thead><tr><th>Name</th><th>Kind</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         {recovery}<p><a class=\"button secondary\" href=\"{ENROL_PATH}\">Set up an authenticator app</a></p>{passkey}</div>",
        rows = rows_or(rows, 5, "No second factor yet."),
        passkey = passkey
            .map(|ceremony| {
                let name = "<label for=\"passkey-label\">Passkey name</label>\
                            <input id=\"passkey-label\" name=\"label\" maxlength=\"64\" autocomplete=\"off\" placeholder=\"Laptop\">";
                passkey_form(PASSKEY_PATH, &[("csrf", csrf)], ceremony, name, "Add a passkey")
            })
            .unwrap_or_default(),
    )
}

/// Where a passwordless sign-in with a passkey is posted.
pub const PASSKEY_SIGN_IN_PATH: &str = "/.portcullis/sign_in/passkey";

/// Where a new passkey is posted.
pub const PASSKEY_PATH: &str = "/.portcullis/account/passkeys";

pub fn kind_name(kind: FactorKind) -> &'static str {
    match kind {
        FactorKind::Totp => "Authenticator app",
        FactorKind::Passkey => "Passkey",
    }
}
