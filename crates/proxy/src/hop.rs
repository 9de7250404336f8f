//! Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, so a proxy removes
//! them, together with every header that `Connection` names, before forwarding a message.
//!
//! The same [`DropList`] removes the headers a client must never send an app (identity,
//! assertion, forwarding claims), in every spelling an app might fold into the real name.

use std::collections::HashSet;

use http::header::{self, HeaderMap, HeaderName};

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Non-standard but widely sent hop-by-hop headers, and `HTTP2-Settings`, which belongs to an
/// `h2c` upgrade (RFC 7540 §3.2.1) that Portcullis never performs.
const LEGACY_HOP_BY_HOP: &[&str] = &["keep-alive", "proxy-connection", "http2-settings"];

/// The protocol a request asks to switch to (`Connection: upgrade` + `Upgrade: x`), if any.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<http::HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Header names to remove from a message, built once per app so the per-request work is one
/// pass over the headers instead of a hashed removal per name.
///
/// Every header name of every message is looked up here, so the sets hash with foldhash rather
/// than SipHash: they are fixed at start-up, and a client choosing the names it looks up cannot
/// make them slower.
///
/// Names are also compared **folded**: many servers treat `_`, `.` and `-` alike (CGI and WSGI
/// turn `X_Forwarded_Email` into `HTTP_X_FORWARDED_EMAIL`, as nginx with `underscores_in_headers`
/// and several frameworks do), so a client's `X_Forwarded_Email` or `X.Forwarded.Email` is
/// removed like `X-Forwarded-Email`. Only names containing `_` or `.` need the folded look-up.
#[derive(Clone, Debug)]
pub struct DropList {
    exact: HashSet<HeaderName, foldhash::fast::RandomState>,
    folded: HashSet<String, foldhash::fast::RandomState>,
}

/// A header name with `_` and `.` read as `-` (names are already lower case).
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .collect()
}

impl DropList {
    /// Just the hop-by-hop headers: what every forwarded message loses.
    pub fn hop_by_hop() -> Self {
        let list = DropList {
            exact: HashSet::default(),
            folded: HashSet::default(),
        };
        list.with(HOP_BY_HOP.iter().cloned())
            .with(LEGACY_HOP_BY_HOP.iter().map(|n| HeaderName::from_static(n)))
    }

    pub fn with(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        for name in names {
            self.folded.insert(fold(name.as_str()));
            self.exact.insert(name);
        }
        self
    }

    /// Whether a header of this name (in any spelling that folds to a listed one) is removed.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.exact.contains(name)
            || (name.as_str().contains(['_', '.']) && self.folded.contains(&fold(name.as_str())))
    }

    /// Removes every listed header and every header that `Connection` names, whatever their case
    /// or count. `TE: trailers` is the one hop-by-hop value a proxy may pass on, so it is kept.
    ///
    /// Works in place: one look at each distinct name, and a removal only for the (usually no)
    /// names that must go, so a clean message costs no allocation.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let named = connection_named(headers);
        let te_trailers = headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.contains(name) || named.contains(name))
            .cloned()
            .collect();
        for name in doomed {
            // `remove` takes every value of the name.
            headers.remove(name);
        }
        if te_trailers {
            headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
        }
    }
}

fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_go_too() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.append("x-kept", "1".parse().unwrap());
        h.append("x-kept", "2".parse().unwrap());
        DropList::hop_by_hop().apply(&mut h);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get_all("x-kept").iter().collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn listed_headers_go_in_any_case_and_count() {
        let list = DropList::hop_by_hop().with([HeaderName::from_static("x-forwarded-user")]);
        let mut h = HeaderMap::new();
        h.append("X-Forwarded-User", "a".parse().unwrap());
        h.append("x-forwarded-user", "b".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        list.apply(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn aliases_that_fold_to_a_listed_name_go_too() {
        let list = DropList::hop_by_hop().with([HeaderName::from_static("x-forwarded-email")]);
        let mut h = HeaderMap::new();
        for alias in [
            "X_Forwarded_Email",
            "x.forwarded.email",
            "X-Forwarded_Email",
            "x_forwarded.email",
        ] {
            h.append(
                HeaderName::from_bytes(alias.as_bytes()).unwrap(),
                "root@evil.example".parse().unwrap(),
            );
        }
        h.append("x_forwarded_emails", "kept".parse().unwrap());
        h.append("x-request_id", "kept".parse().unwrap());
        list.apply(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x_forwarded_emails"));
        assert!(h.contains_key("x-request_id"));
    }

    #[test]
    fn kept_headers_keep_every_value_in_order() {
        let mut h = HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.append("keep-alive", "timeout=5".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.append("x-b", "3".parse().unwrap());
        DropList::hop_by_hop().apply(&mut h);
        // The order of different names carries no meaning (RFC 9110 §5.3); that of one name's
        // values does.
        assert_eq!(h.len(), 3);
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.get("x-b").unwrap(), "3");
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(requested_upgrade(&h).is_none());
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert_eq!(requested_upgrade(&h).unwrap(), "websocket");
    }
}
