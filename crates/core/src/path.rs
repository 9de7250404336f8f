//! Canonical request paths.
//!
//! Route and skip-auth matching happen on the canonical path, and the same canonical path is what
//! the upstream receives, so the gateway and the app can never disagree about which resource was
//! asked for (the classic `/public/../admin` and `/public/..;/admin` bypasses).
//!
//! Rules (RFC 3986 §6.2.2 plus what path-parameter-aware servers such as Tomcat do):
//! - percent-escapes of unreserved characters are decoded (`%2e` → `.`), other escapes are kept
//!   with upper-case hex;
//! - an encoded slash or backslash (`%2F`, `%5C`), a raw backslash, control characters and `#` are
//!   refused: upstreams disagree about what they mean;
//! - empty segments (`//`) collapse, `.` segments vanish, `..` removes the previous segment, and a
//!   segment whose part before `;` is a dot segment counts as one (its parameters are dropped);
//! - `..` above the root is refused.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadEscape,
    Forbidden(char),
    EncodedSeparator,
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => write!(f, "the request path must start with '/'"),
            PathError::BadEscape => write!(f, "the request path has a malformed percent-escape"),
            PathError::Forbidden(c) => {
                write!(f, "the request path contains a forbidden character {c:?}")
            }
            PathError::EncodedSeparator => {
                write!(f, "the request path contains an encoded '/' or '\\'")
            }
            PathError::AboveRoot => write!(f, "the request path climbs above '/' with '..'"),
        }
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters and normalises the rest; rejects ambiguous input.
fn normalise_escapes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let decoded = hi * 16 + lo;
            if decoded == b'/' || decoded == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            if decoded < 0x20 || decoded == 0x7f {
                return Err(PathError::Forbidden(char::from(decoded)));
            }
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        if b < 0x20 || b == 0x7f || b == b'\\' || b == b'#' {
            return Err(PathError::Forbidden(char::from(b)));
        }
        // Non-ASCII bytes cannot appear in a valid request target; hyper has already rejected
        // them, but keep this function total by escaping whatever arrives.
        if b >= 0x80 {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
        i += 1;
    }
    Ok(out)
}

/// The dot-segment a segment acts as, ignoring `;parameters`.
fn dot_kind(segment: &str) -> Option<&'static str> {
    match segment.split(';').next() {
        Some(".") => Some("."),
        Some("..") => Some(".."),
        _ => None,
    }
}

/// Returns the canonical form of a request path (without query). See the module docs.
pub fn canonicalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Most paths are already canonical (and the server canonicalises before the gateway does
    // again): one scan proves it without rebuilding the string.
    if is_plain(raw) {
        return Ok(raw.to_owned());
    }
    let escaped = normalise_escapes(raw)?;
    let ends_with_slash = escaped.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut last_was_dot = false;
    for segment in escaped.split('/').filter(|s| !s.is_empty()) {
        last_was_dot = true;
        match dot_kind(segment) {
            Some(".") => {}
            Some(_) => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            None => {
                segments.push(segment);
                last_was_dot = false;
            }
        }
    }
    let mut out = String::with_capacity(escaped.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || ((ends_with_slash || last_was_dot) && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

/// True when a path has nothing to normalise: only unreserved characters and `/`, `;`, `=`, `,`,
/// `:`, `@`, `+`, `!`, no escapes, no empty segment, and no segment that starts with a dot.
fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        let allowed =
            is_unreserved(b) || matches!(b, b'/' | b';' | b'=' | b',' | b':' | b'@' | b'+' | b'!');
        let after_slash = i > 0 && bytes[i - 1] == b'/';
        allowed && !(after_slash && (b == b'/' || b == b'.'))
    })
}

/// True when `path` is `prefix` itself or lies below it on a segment boundary.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match canonicalize(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    #[test]
    fn plain_paths_are_unchanged() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/a/b"), "/a/b");
        assert_eq!(ok("/a/b/"), "/a/b/");
        assert_eq!(ok("/api/v1/chat%20x"), "/api/v1/chat%20x");
    }

    #[test]
    fn traversal_is_resolved_before_matching() {
        assert_eq!(ok("/public/../admin"), "/admin");
        assert_eq!(ok("/public/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/public/%2E%2e/admin"), "/admin");
        assert_eq!(ok("/public/..;/admin"), "/admin");
        assert_eq!(ok("/public/.;x=1/admin"), "/public/admin");
        assert_eq!(ok("//public//x"), "/public/x");
        assert_eq!(ok("/a/./b/."), "/a/b/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/.."), "/");
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_rules() {
        for raw in [
            "/",
            "/a/b",
            "/a/b/",
            "/a;b=c/d",
            "/.well/x",
            "/a/.b",
            "/a//b",
            "/a/./b",
            "/a/..",
            "/a%2e",
            "/~u/v-w_x",
        ] {
            let full = canonicalize(raw).unwrap_or_default();
            assert_eq!(
                canonicalize(&full),
                Ok(full.clone()),
                "canonical form of {raw} is stable"
            );
            if is_plain(raw) {
                assert_eq!(full, raw, "{raw} is plain, so it must already be canonical");
            }
        }
        assert!(is_plain("/api/v1/chat;x=1"));
        assert!(
            !is_plain("/a//b") && !is_plain("/a/./b") && !is_plain("/.x") && !is_plain("/a%20")
        );
    }

    #[test]
    fn escapes_are_normalised() {
        assert_eq!(ok("/%7euser"), "/~user");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(canonicalize("/../x"), Err(PathError::AboveRoot));
        assert_eq!(
            canonicalize("/a/%2e%2e/%2e%2e/x"),
            Err(PathError::AboveRoot)
        );
        assert_eq!(
            canonicalize("/public%2f..%2fadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            canonicalize("/public%5cadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(canonicalize("/a\\b"), Err(PathError::Forbidden('\\')));
        assert_eq!(
            canonicalize("/public/x#/../admin"),
            Err(PathError::Forbidden('#'))
        );
        assert_eq!(canonicalize("/a%00"), Err(PathError::Forbidden('\0')));
        assert_eq!(canonicalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(canonicalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(canonicalize("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn prefixes_respect_segment_boundaries() {
        assert!(has_prefix("/app", "/app"));
        assert!(has_prefix("/app/x", "/app/"));
        assert!(has_prefix("/app/x", "/app"));
        assert!(!has_prefix("/application", "/app"));
        assert!(has_prefix("/anything", "/"));
    }
}
