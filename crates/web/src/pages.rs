//! The HTML of Portcullis's own forms. Every dynamic value is escaped.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use portcullis_http::html::{escape, page};

pub struct SignInForm<'a> {
    /// `(id, label)` of each identity provider, shown as buttons above the local form.
    pub providers: &'a [(String, String)],
    /// Whether the username/password form is offered.
    pub local: bool,
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub login: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
    /// No administrator exists yet: say where the setup link is.
    pub setup_pending: bool,
    /// A passwordless passkey ceremony, where passkeys work.
    pub passkey: Option<&'a portcullis_auth::factors::PasskeyCeremony>,
}

pub fn sign_in(form: &SignInForm<'_>) -> String {
    let alert = form
        .error
        .map(|e| {
            format!(
                "<div class=\"alert\" role=\"alert\" id=\"sign-in-error\">{}</div>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let notice = form
        .notice
        .map(|n| format!("<p>{}</p>", escape(n)))
        .unwrap_or_default();
    let rd = utf8_percent_encode(form.return_to, NON_ALPHANUMERIC).to_string();
    let buttons: String = form
        .providers
        .iter()
        .map(|(id, label)| {
            format!(
                "<a class=\"button\" href=\"/.portcullis/start/{}?rd={}\">Continue with {}</a>",
                escape(id),
                escape(&rd),
                escape(label)
            )
        })
        .collect();
    let divider = if !buttons.is_empty() && form.local {
        "<p class=\"divider\"><span>or</span></p>"
    } else {
        ""
    };
    let local = if form.local {
        local_form(form)
    } else {
        String::new()
    };
    let passkey = match (form.local, form.passkey) {
        (true, Some(ceremony)) => format!(
            "<p class=\"divider\"><span>or</span></p>{}",
            crate::factor_pages::passkey_form(
                crate::factor_pages::PASSKEY_SIGN_IN_PATH,
                &[("csrf", form.csrf), ("rd", form.return_to)],
                ceremony,
                "",
                "Sign in with a passkey",
            )
        ),
        _ => String::new(),
    };
    let setup = if form.setup_pending {
        "<div class=\"notice\" role=\"status\">Portcullis is not set up yet. The first administrator is created with the \
         one-time setup link that <span class=\"code\">portcullis serve</span> printed on its standard error when it started \
         (“No administrator exists yet. Open this one-time link…”); restarting prints a new one.</div>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Sign in</h1><p>Use your account to continue.</p>{setup}{notice}{buttons}{divider}{alert}{local}{passkey}"
    );
    page("Sign in", &body)
}

fn local_form(form: &SignInForm<'_>) -> String {
    // The field to type in next: after a refusal with the name kept, the password.
    let (login_focus, password_focus) = if form.error.is_some() && !form.login.is_empty() {
        ("", " autofocus aria-describedby=\"sign-in-error\"")
    } else {
        (" autofocus", "")
    };
    format!(
        "<form method=\"post\" action=\"/.portcullis/sign_in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
         <label for=\"login\">Username or email</label>\
         <input id=\"login\" name=\"login\" autocomplete=\"username\" required value=\"{login}\"{login_focus}>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{password_focus}>\
         <button type=\"submit\">Sign in</button></form>",
        csrf = escape(form.csrf),
        rd = escape(form.return_to),
        login = escape(form.login),
    )
}

pub struct SetupForm<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub error: Option<&'a str>,
}

pub fn setup(form: &SetupForm<'_>) -> String {
    let alert = form
        .error
        .map(|e| format!("<div class=\"alert\" role=\"alert\">{}</div>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Create the admin account</h1>\
         <p>This one-time link sets up the first administrator. It stops working once the account exists.</p>{alert}\
         <form method=\"post\" action=\"/.portcullis/setup\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{username}\">\
         <label for=\"display_name\">Display name</label>\
         <input id=\"display_name\" name=\"display_name\" autocomplete=\"name\" value=\"{display_name}\">\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" value=\"{email}\">\
         <label for=\"password\">Password (at least 8 characters)</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"8\">\
         <label for=\"confirm\">Repeat the password</label>\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required minlength=\"8\">\
         <button type=\"submit\">Create admin account</button></form>",
        csrf = escape(form.csrf),
        token = escape(form.token),
        username = escape(form.username),
        email = escape(form.email),
        display_name = escape(form.display_name),
    );
    page("Set up Portcullis", &body)
}

pub fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label)))
        .unwrap_or_default();
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>{link}", escape(title), escape(text)),
    )
}

/// A form that chooses a new password: after a reset link, at a sign-in that must change it,
/// or on the account page (which also asks for the current one).
pub struct NewPasswordForm<'a> {
    pub action: &'a str,
    /// Hidden fields carried through (CSRF, the link's token, the pending sign-in).
    pub hidden: &'a [(&'a str, &'a str)],
    /// Ask for the current password too.
    pub ask_current: bool,
    pub min_length: usize,
    /// What was wrong with the last attempt; the field it names gets the focus.
    pub error: Option<&'a FieldError>,
    pub button: &'a str,
}

/// An error of one form field, shown next to it.
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// One labelled input; with an error of its own it is marked invalid, described by the error
/// and focused (so a screen reader announces what to fix first). `hint` is the id of text that
/// describes it too.
pub struct Field<'a> {
    pub id: &'static str,
    pub label: &'a str,
    /// Further attributes (`type`, `autocomplete`, `required`…).
    pub attributes: &'a str,
    pub value: &'a str,
    pub hint: Option<&'a str>,
}

impl Field<'_> {
    pub fn render(&self, error: Option<&FieldError>) -> String {
        let own = error.filter(|e| e.field == self.id);
        let id = self.id;
        let mut described: Vec<String> = self.hint.map(str::to_owned).into_iter().collect();
        let mut extra = String::new();
        let mut message = String::new();
        if let Some(e) = own {
            described.push(format!("{id}-error"));
            extra.push_str(" aria-invalid=\"true\" autofocus");
            message = format!(
                "<p class=\"field-error\" id=\"{id}-error\">{}</p>",
                escape(&e.message)
            );
        }
        if !described.is_empty() {
            extra.push_str(&format!(" aria-describedby=\"{}\"", described.join(" ")));
        }
        format!(
            "<label for=\"{id}\">{label}</label>\
             <input id=\"{id}\" name=\"{id}\" {attributes} value=\"{value}\"{extra}>{message}",
            label = escape(self.label),
            attributes = self.attributes,
            value = escape(self.value),
        )
    }
}

pub fn new_password_fields(form: &NewPasswordForm<'_>) -> String {
    let hidden: String = form
        .hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let error = form.error;
    // With no error the first field takes the focus; with one, the field it names does.
    let focus = if error.is_none() { " autofocus" } else { "" };
    let current = if form.ask_current {
        let attributes =
            format!("type=\"password\" autocomplete=\"current-password\" required{focus}");
        Field {
            id: "current_password",
            label: "Current password",
            attributes: &attributes,
            value: "",
            hint: None,
        }
        .render(error)
    } else {
        String::new()
    };
    let min = form.min_length;
    let new_focus = if form.ask_current { "" } else { focus };
    let new_attributes = format!(
        "type=\"password\" autocomplete=\"new-password\" required minlength=\"{min}\"{new_focus}"
    );
    let confirm_attributes =
        format!("type=\"password\" autocomplete=\"new-password\" required minlength=\"{min}\"");
    let new = Field {
        id: "password",
        label: "New password",
        attributes: &new_attributes,
        value: "",
        hint: Some("password-hint"),
    };
    let confirm = Field {
        id: "confirm",
        label: "Repeat the new password",
        attributes: &confirm_attributes,
        value: "",
        hint: None,
    };
    format!(
        "<form method=\"post\" action=\"{action}\">{hidden}{current}{new}\
         <p class=\"hint\" id=\"password-hint\">At least {min} characters. Long phrases are good; very common passwords are refused.</p>\
         {confirm}<button type=\"submit\">{button}</button></form>",
        action = escape(form.action),
        new = new.render(error),
        confirm = confirm.render(error),
        button = escape(form.button),
    )
}

/// A page of its own with the form (reset link, must-change at sign-in).
pub fn new_password_page(title: &str, intro: &str, form: &NewPasswordForm<'_>) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p>{}",
            escape(title),
            escape(intro),
            new_password_fields(form)
        ),
    )
}
