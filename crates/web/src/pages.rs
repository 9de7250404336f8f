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
}

pub fn sign_in(form: &SignInForm<'_>) -> String {
    let alert = form
        .error
        .map(|e| format!("<div class=\"alert\" role=\"alert\">{}</div>", escape(e)))
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
    let body = format!(
        "<h1>Sign in</h1><p>Use your account to continue.</p>{notice}{buttons}{divider}{alert}{local}"
    );
    page("Sign in", &body)
}

fn local_form(form: &SignInForm<'_>) -> String {
    format!(
        "<form method=\"post\" action=\"/.portcullis/sign_in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
         <label for=\"login\">Username or email</label>\
         <input id=\"login\" name=\"login\" autocomplete=\"username\" required value=\"{login}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
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
