//! SCIM PATCH (RFC 7644 §3.5.2), applied to a resource's JSON before it is read back like a PUT
//! body. Attribute names are case-insensitive; `op`s may be capitalised (Entra); a path-less
//! operation carries an object of attributes (Okta's `{"active": false}`); a path may select
//! elements of a multi-valued attribute (`emails[type eq "work"].value`,
//! `members[value eq "…"]`); `remove` of `members` may list the values to remove (Entra).

use serde_json::{Map, Value};

use super::{ScimError, ScimResult};

#[derive(serde::Deserialize)]
pub struct PatchBody {
    #[serde(rename = "Operations", alias = "operations")]
    operations: Vec<Operation>,
}

#[derive(serde::Deserialize)]
struct Operation {
    op: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

enum Op {
    Add,
    Replace,
    Remove,
}

/// A path: an attribute, an optional `[attr eq "value"]` selector, an optional sub-attribute.
struct Path {
    attribute: String,
    selector: Option<(String, String)>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> ScimResult<Path> {
    let invalid = || ScimError::invalid("invalidPath", format!("{path:?} is not a supported path"));
    let (head, selector, tail) = match path.split_once('[') {
        Some((head, rest)) => {
            let (inside, tail) = rest.split_once(']').ok_or_else(invalid)?;
            let terms = super::filter::parse(inside).map_err(|_| invalid())?;
            let [term] = terms.as_slice() else {
                return Err(invalid());
            };
            (
                head,
                Some((term.attribute.clone(), term.value.clone())),
                tail.strip_prefix('.').map(str::to_owned),
            )
        }
        None => match path.split_once('.') {
            // A schema URN prefix (`urn:…:User:userName`) is not a sub-attribute.
            Some((head, sub)) if !head.contains(':') => (head, None, Some(sub.to_owned())),
            _ => (path.rsplit(':').next().unwrap_or(path), None, None),
        },
    };
    if head.is_empty() {
        return Err(invalid());
    }
    Ok(Path {
        attribute: head.to_owned(),
        selector,
        sub: tail,
    })
}

/// The existing key in `object` that matches `name` case-insensitively, else `name`.
fn key(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn matches(element: &Value, selector: &(String, String)) -> bool {
    element.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(&selector.0)
                && v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&selector.1))
        })
    })
}

/// Applies every operation to `resource`, in order.
pub fn apply(resource: &mut Value, body: PatchBody) -> ScimResult<()> {
    let Some(object) = resource.as_object_mut() else {
        return Err(ScimError::invalid(
            "invalidValue",
            "the resource is not an object",
        ));
    };
    for operation in body.operations {
        let op = match operation.op.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            other => {
                return Err(ScimError::invalid(
                    "invalidSyntax",
                    format!("{other:?} is not a PATCH operation (add, replace, remove)"),
                ));
            }
        };
        match (operation.path.as_deref(), op) {
            (None, Op::Remove) => {
                return Err(ScimError::invalid("noTarget", "remove needs a path"));
            }
            (None, _) => {
                let Some(Value::Object(values)) = operation.value else {
                    return Err(ScimError::invalid(
                        "invalidValue",
                        "an operation without a path needs an object of attributes",
                    ));
                };
                for (name, value) in values {
                    // Entra and Okta also send dotted names here (`name.givenName`).
                    let path = parse_path(&name)?;
                    set(object, &path, value, true)?;
                }
            }
            (Some(path), op) => {
                let path = parse_path(path)?;
                match op {
                    Op::Remove => remove(object, &path, operation.value),
                    Op::Add => set(object, &path, operation.value.unwrap_or(Value::Null), false)?,
                    Op::Replace => {
                        set(object, &path, operation.value.unwrap_or(Value::Null), true)?
                    }
                }
            }
        }
    }
    Ok(())
}

fn set(
    object: &mut Map<String, Value>,
    path: &Path,
    value: Value,
    replace: bool,
) -> ScimResult<()> {
    let name = key(object, &path.attribute);
    match (&path.selector, &path.sub) {
        (None, None) => {
            // `add` to a multi-valued attribute appends (members, emails).
            match (object.get_mut(&name), value, replace) {
                (Some(Value::Array(existing)), Value::Array(new), false) => {
                    for item in new {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                }
                (_, value, _) => {
                    object.insert(name, value);
                }
            }
        }
        (None, Some(sub)) => {
            let entry = object
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                let sub_key = key(inner, sub);
                inner.insert(sub_key, value);
            }
        }
        (Some(selector), sub) => {
            let entry = object
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(elements) = entry else {
                return Err(ScimError::invalid(
                    "invalidPath",
                    "the path selects from a single value",
                ));
            };
            if !elements.iter().any(|e| matches(e, selector)) {
                let mut element = Map::new();
                element.insert(selector.0.clone(), Value::String(selector.1.clone()));
                elements.push(Value::Object(element));
            }
            for element in elements.iter_mut().filter(|e| matches(e, selector)) {
                if let Value::Object(inner) = element {
                    match (sub, &value) {
                        (Some(sub), _) => {
                            let sub_key = key(inner, sub);
                            inner.insert(sub_key, value.clone());
                        }
                        (None, Value::Object(fields)) => {
                            for (k, v) in fields {
                                inner.insert(k.clone(), v.clone());
                            }
                        }
                        (None, _) => {}
                    }
                }
            }
        }
    }
    Ok(())
}

fn remove(object: &mut Map<String, Value>, path: &Path, value: Option<Value>) {
    let name = key(object, &path.attribute);
    match (&path.selector, &path.sub, value) {
        (None, None, Some(Value::Array(gone))) => {
            // Entra: remove these members (by value) from the attribute.
            if let Some(Value::Array(elements)) = object.get_mut(&name) {
                let values: Vec<&str> = gone
                    .iter()
                    .filter_map(|g| g.get("value").and_then(Value::as_str))
                    .collect();
                elements.retain(|e| {
                    !e.get("value")
                        .and_then(Value::as_str)
                        .is_some_and(|v| values.contains(&v))
                });
            }
        }
        (None, None, _) => {
            object.remove(&name);
        }
        (None, Some(sub), _) => {
            if let Some(Value::Object(inner)) = object.get_mut(&name) {
                let sub_key = key(inner, sub);
                inner.remove(&sub_key);
            }
        }
        (Some(selector), sub, _) => {
            if let Some(Value::Array(elements)) = object.get_mut(&name) {
                match sub {
                    None => elements.retain(|e| !matches(e, selector)),
                    Some(sub) => {
                        for element in elements.iter_mut().filter(|e| matches(e, selector)) {
                            if let Value::Object(inner) = element {
                                let sub_key = key(inner, sub);
                                inner.remove(&sub_key);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(resource: Value, ops: Value) -> Value {
        let mut resource = resource;
        apply(
            &mut resource,
            serde_json::from_value(json!({ "Operations": ops })).unwrap(),
        )
        .unwrap();
        resource
    }

    use serde_json::json;

    #[test]
    fn entra_and_okta_dialects() {
        let user = json!({"userName": "a@x", "active": true, "emails": [{"type": "work", "value": "a@x"}]});
        // Entra: capitalised ops, filtered paths, "False".
        let out = patch(
            user.clone(),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@x"},
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "name.givenName", "value": "Bea"},
            ]),
        );
        assert_eq!(out["emails"][0]["value"], "b@x");
        assert_eq!(out["active"], "False");
        assert_eq!(out["name"]["givenName"], "Bea");
        // Okta: a path-less replace.
        let out = patch(user, json!([{"op": "replace", "value": {"active": false}}]));
        assert_eq!(out["active"], false);
    }

    #[test]
    fn members_are_added_and_removed_both_ways() {
        let group = json!({"displayName": "ops", "members": [{"value": "u1"}, {"value": "u2"}]});
        let out = patch(
            group,
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u3\"]"},
            ]),
        );
        assert_eq!(out["members"], json!([{"value": "u1"}]));
    }

    #[test]
    fn unknown_operations_and_paths_are_refused() {
        let mut resource = json!({});
        for ops in [
            json!([{"op": "merge", "path": "a"}]),
            json!([{"op": "remove"}]),
            json!([{"op": "add", "path": "a[b]"}]),
        ] {
            let body = serde_json::from_value(json!({ "Operations": ops })).unwrap();
            assert!(apply(&mut resource, body).is_err());
        }
    }
}
