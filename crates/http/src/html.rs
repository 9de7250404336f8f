//! Server-rendered page chrome shared by every page Portcullis shows (sign-in, errors, setup).
//! No JavaScript and no build step; all dynamic text goes through [`escape`].

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Table rows, or one row that says the table is empty (`columns` wide), so an empty table is
/// never mistaken for one that failed to load.
pub fn rows_or(rows: String, columns: usize, empty: &str) -> String {
    if rows.is_empty() {
        format!(
            "<tr><td colspan=\"{columns}\" class=\"empty\">{}</td></tr>",
            escape(empty)
        )
    } else {
        rows
    }
}

const STYLE: &str = r#"
:root{--ink:#1c2430;--muted:#5b6676;--line:#d9dee5;--bg:#f4f6f9;--card:#fff;--accent:#2455c3;--accent-ink:#fff;--bad:#b42318;--bad-bg:#fef3f2;--bad-ink:#fff;--ok:#067647}
@media (prefers-color-scheme:dark){:root{--ink:#e6e9ee;--muted:#a3acb9;--line:#2e3744;--bg:#11161d;--card:#1a212b;--accent:#6d9bff;--accent-ink:#0b1220;--bad:#ff8a80;--bad-bg:#2a1715;--bad-ink:#1a0705;--ok:#5fd39a}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg);min-height:100vh;display:flex;flex-direction:column;align-items:center;justify-content:center;padding:24px}
.brand{display:flex;align-items:center;gap:10px;font-weight:650;letter-spacing:.2px;margin-bottom:18px;color:var(--ink)}
.brand svg{width:28px;height:28px}
main{width:100%;max-width:420px;background:var(--card);border:1px solid var(--line);border-radius:14px;padding:32px;box-shadow:0 1px 2px rgba(16,24,40,.06),0 8px 24px rgba(16,24,40,.06)}
main.wide{max-width:760px}
h1{font-size:1.35rem;margin:0 0 6px}
p{margin:0 0 16px;color:var(--muted)}
label{display:block;font-weight:600;font-size:.92rem;margin:16px 0 6px}
input{width:100%;font:inherit;padding:10px 12px;border:1px solid var(--line);border-radius:8px;background:var(--card);color:var(--ink)}
input:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
button{margin-top:22px;width:100%;font:inherit;font-weight:600;padding:11px 14px;border:0;border-radius:8px;background:var(--accent);color:var(--accent-ink);cursor:pointer}
button:hover,a.button:hover{filter:brightness(1.08)}
a.button{display:block;text-align:center;text-decoration:none;margin-top:14px;font-weight:600;padding:11px 14px;border-radius:8px;border:1px solid var(--line);color:var(--ink);background:var(--card)}
.divider{display:flex;align-items:center;gap:10px;margin:18px 0 0;font-size:.85rem}
.divider::before,.divider::after{content:"";flex:1;border-top:1px solid var(--line)}
.alert{border:1px solid var(--bad);background:var(--bad-bg);color:var(--bad);border-radius:8px;padding:10px 12px;margin:12px 0 0}
.hint{font-size:.9rem;color:var(--muted);margin-top:12px}
label.check{display:flex;gap:8px;align-items:center;font-weight:500}
label.check input{width:auto;margin:0}
.field-error{color:var(--bad);font-size:.9rem;font-weight:600;margin:6px 0 0}
input[aria-invalid=true]{border-color:var(--bad);border-width:2px}
.code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted)}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{text-align:left;padding:8px 6px;border-bottom:1px solid var(--line);vertical-align:top;word-break:break-all}
th{color:var(--muted);font-weight:600;width:38%}
footer{margin-top:18px;font-size:.82rem;color:var(--muted)}
a{color:var(--accent)}
body.app{display:block;padding:0}
.topbar{display:flex;align-items:center;gap:20px;padding:10px 24px;border-bottom:1px solid var(--line);background:var(--card);flex-wrap:wrap}
.topbar .brand{margin:0}
.topbar nav{display:flex;gap:4px}
.topbar nav a{color:var(--muted);text-decoration:none;font-weight:600;padding:6px 10px;border-radius:6px}
.topbar nav a[aria-current=page]{color:var(--ink);background:var(--bg)}
.topbar .who{margin-left:auto;color:var(--muted);font-size:.9rem}
.content{max-width:1100px;margin:24px auto;padding:0 24px;background:none;border:0;border-radius:0;box-shadow:none}
.content h1{margin-bottom:16px}
.content th{width:auto}
.content td,.content th{word-break:normal;overflow-wrap:break-word}
.content td.nowrap{white-space:nowrap}
.panel{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px;margin-bottom:20px}
.panel h2{font-size:1.05rem;margin:0 0 12px}
.panel{overflow-x:auto}
.ways{margin-top:16px}
td.empty{color:var(--muted);font-style:italic}
@media (max-width:600px){.panel table:has(thead){min-width:560px}.topbar{padding:10px 12px;gap:8px}.topbar nav{flex-wrap:wrap}.content{padding:0 12px}.panel{padding:14px}main{padding:20px}body{padding:12px}}
.row{display:flex;gap:12px;align-items:flex-end;flex-wrap:wrap}
.row>div{flex:1;min-width:150px}
.row label{margin-top:0}
.row button,td button{width:auto;margin-top:0;padding:9px 14px}
button.secondary{background:var(--card);color:var(--ink);border:1px solid var(--line)}
button.danger{background:var(--bad);color:var(--bad-ink)}
select{font:inherit;padding:9px 10px;border:1px solid var(--line);border-radius:8px;background:var(--card);color:var(--ink);width:100%}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:.8rem;border:1px solid var(--line);white-space:nowrap}
.badge.bad{color:var(--bad);border-color:var(--bad)}
.badge.ok{color:var(--ok);border-color:var(--ok)}
.badge.warn{color:#8a5a00;border-color:#8a5a00}
.pager{display:flex;justify-content:space-between;align-items:center;margin-top:14px;color:var(--muted);font-size:.9rem}
.notice{border:1px solid var(--ok);color:var(--ok);border-radius:8px;padding:10px 12px;margin-bottom:16px}
.secret{font:14px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);border:1px solid var(--line);padding:10px;border-radius:8px;word-break:break-all;color:var(--ink)}
td form{display:inline}
.muted{color:var(--muted)}
.qr svg{display:block;width:208px;height:208px;background:#fff;padding:8px;border-radius:8px}
ol.codes{columns:2;gap:24px;font-size:15px;color:var(--ink);padding-left:28px}
details summary{cursor:pointer;color:var(--accent);font-weight:600}
details form{margin-top:8px}
button.copy{width:auto;margin-top:10px;padding:7px 14px}
"#;

/// The one script Portcullis's pages run (copy buttons, passkey ceremonies), inlined at the end
/// of every page; the Content-Security-Policy allows exactly this text by its hash.
const PAGE_SCRIPT: &str = include_str!("../assets/pages.js");

/// The CSP source that allows the page script and no other script.
pub fn script_source() -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(PAGE_SCRIPT.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

const LOGO: &str = r#"<svg viewBox="0 0 32 32" aria-hidden="true"><rect x="3" y="4" width="26" height="24" rx="4" fill="none" stroke="currentColor" stroke-width="2.4"/><path d="M10 4v24M16 4v24M22 4v24M3 13h26M3 20h26" stroke="currentColor" stroke-width="2"/></svg>"#;

/// A button that copies the text of the element `target` (an id) to the clipboard; hidden on a
/// browser that runs no script.
pub fn copy_button(target: &str, what: &str) -> String {
    format!(
        "<button type=\"button\" class=\"secondary copy\" data-copy=\"{}\" aria-label=\"Copy {}\" hidden>Copy</button>",
        escape(target),
        escape(what)
    )
}

/// A complete page. `body` must already be escaped HTML.
pub fn page(title: &str, body: &str) -> String {
    page_with_width(title, body, false)
}

pub fn page_with_width(title: &str, body: &str, wide: bool) -> String {
    let class = if wide { " class=\"wide\"" } else { "" };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title} · Portcullis</title><style>{STYLE}</style></head>\
         <body><div class=\"brand\">{LOGO}<span>Portcullis</span></div>\
         <main{class}>{body}</main><footer>Protected by Portcullis</footer><script>{PAGE_SCRIPT}</script></body></html>",
        title = escape(title)
    )
}

/// A page of the signed-in application (admin UI, account): a top bar with navigation instead of
/// the centred card. `nav` is `(href, label, current)`; `who` names the signed-in user.
pub fn app_page(title: &str, nav: &[(&str, &str, bool)], who: &str, body: &str) -> String {
    let links: String = nav
        .iter()
        .map(|(href, label, current)| {
            let current = if *current {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!(
                "<a href=\"{}\"{current}>{}</a>",
                escape(href),
                escape(label)
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title} · Portcullis</title><style>{STYLE}</style></head>\
         <body class=\"app\"><header class=\"topbar\"><div class=\"brand\">{LOGO}<span>Portcullis</span></div>\
         <nav aria-label=\"Main\">{links}</nav><div class=\"who\">{who} · <a href=\"/.portcullis/sign_out\">Sign out</a></div></header>\
         <main class=\"content\">{body}</main><script>{PAGE_SCRIPT}</script></body></html>",
        title = escape(title),
        who = escape(who),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert!(page("<t>", "").contains("&lt;t&gt; · Portcullis"));
    }
}
