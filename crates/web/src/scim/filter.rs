//! The SCIM filters identity providers send: `attribute eq "value"`, joined by `and`
//! (RFC 7644 §3.4.2.2). Anything else is refused with `invalidFilter`, never ignored: a filter
//! that is silently dropped would match every user.

/// One `attribute eq "value"` comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equals {
    /// Lower-cased attribute path, e.g. `username`, `externalid`, `emails.value`.
    pub attribute: String,
    pub value: String,
}

pub fn parse(filter: &str) -> Result<Vec<Equals>, String> {
    let mut terms = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (attribute, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{filter:?} is not `attribute eq \"value\"`"))?;
        let after = after.trim_start();
        let (op, after) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{filter:?} is not `attribute eq \"value\"`"))?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!("only the eq operator is supported, not {op:?}"));
        }
        let after = after.trim_start();
        let (value, after) = quoted(after)
            .ok_or_else(|| format!("the value in {filter:?} must be a quoted string"))?;
        terms.push(Equals {
            attribute: attribute.to_ascii_lowercase(),
            value,
        });
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(terms);
        }
        let (joiner, next) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("unexpected {after:?} in the filter"))?;
        if !joiner.eq_ignore_ascii_case("and") {
            return Err(format!("only `and` may join comparisons, not {joiner:?}"));
        }
        rest = next.trim_start();
    }
}

/// A JSON string literal at the start of `text`, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_and_and_are_understood() {
        assert_eq!(
            parse(r#"userName eq "alice@example.com""#).unwrap(),
            vec![Equals {
                attribute: "username".into(),
                value: "alice@example.com".into()
            }]
        );
        let both = parse(r#"externalId EQ "a\"b" and emails.value eq "x@y""#).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].value, "a\"b");
        for bad in [
            r#"userName co "a""#,
            r#"userName eq a"#,
            r#"userName eq "a" or id eq "b""#,
            "",
            r#"userName eq "a"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
