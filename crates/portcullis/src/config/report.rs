//! Every problem of a configuration at once, each with where it is: `file:line:column` for the
//! file, the variable's name for the environment.
//!
//! serde stops at the first problem it meets, so extraction is repeated with each offending key
//! taken out of the file (or its variable left out), until nothing more is found or nothing more
//! can be taken out (a missing key cannot). Locations come from the file as written, found by the
//! key's path, so they stay right however many keys were taken out before.

use std::ops::Range;
use std::path::PathBuf;

use figment::error::{Error, Kind};
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use portcullis_core::config::Config;
use toml_edit::{DocumentMut, ImDocument, Item};

use super::{edit_distance, is_configuration};

/// More rounds than a file has problems in practice; a bound, so a key that cannot be taken out
/// never loops.
const MAX_ROUNDS: usize = 64;

/// The configuration file as read (after `${NAME}` expansion).
pub struct FileText {
    pub path: PathBuf,
    pub text: String,
}

/// The configuration from `file` and the `PORTCULLIS_*` environment, or every problem found.
pub fn extract(
    file: Option<&FileText>,
    keys: &'static [&'static str],
) -> Result<Config, Vec<String>> {
    let (mut editable, written) = match file {
        Some(file) => match (
            file.text.parse::<DocumentMut>(),
            ImDocument::parse(file.text.as_str()),
        ) {
            (Ok(editable), Ok(written)) => (Some(editable), Some(written)),
            (Err(e), _) | (_, Err(e)) => return Err(vec![syntax_error(file, &e)]),
        },
        None => (None, None),
    };
    let mut problems = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let figment = sources(file.zip(editable.as_ref()), keys, left_out.clone());
        let errors = match figment.extract::<Config>() {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => break,
            Err(errors) => errors,
        };
        let mut progressed = false;
        for error in errors {
            let from_file = error
                .metadata
                .as_ref()
                .is_some_and(|m| matches!(m.source, Some(Source::File(_))));
            if let (true, Some(file)) = (from_file, file) {
                let place = written
                    .as_ref()
                    .and_then(|doc| locate(doc.as_item(), &error.path, &file.text));
                let at = place.map_or_else(String::new, |(line, column)| {
                    format!("{}:{line}:{column}: ", file.path.display())
                });
                problems.push((place, format!("{at}{}", describe(&error))));
                progressed |= editable
                    .as_mut()
                    .is_some_and(|doc| take_out(doc.as_item_mut(), &error.path));
            } else if !error.path.is_empty() && !matches!(error.kind, Kind::MissingField(_)) {
                let key = error.path.join("__").to_ascii_lowercase();
                problems.push((None, environment_problem(&error, &key)));
                left_out.push(key);
                progressed = true;
            } else {
                problems.push((None, describe(&error)));
            }
        }
        if !progressed {
            break;
        }
    }
    Err(in_file_order(problems))
}

/// The file as it stands now (keys taken out so far) and the environment without the variables
/// left out so far.
fn sources(
    file: Option<(&FileText, &DocumentMut)>,
    keys: &'static [&'static str],
    left_out: Vec<String>,
) -> Figment {
    let mut figment = Figment::new();
    if let Some((file, doc)) = file {
        figment = figment.merge(Named {
            path: file.path.clone(),
            text: doc.to_string(),
        });
    }
    figment.merge(
        Env::prefixed("PORTCULLIS_")
            .filter(move |name| {
                is_configuration(name.as_str(), keys) && !under_any(name.as_str(), &left_out)
            })
            .split("__"),
    )
}

/// A problem of the environment, named by its variables: an unknown key's path ends at the key,
/// while the variable may name a level below it (`PORTCULLIS_SESION__IDLE_TIMEOUT`).
fn environment_problem(error: &Error, key: &str) -> String {
    let variables: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.strip_prefix("PORTCULLIS_")
                .is_some_and(|rest| under_any(rest, &[key.to_owned()]))
        })
        .collect();
    let what = describe(error);
    let what = what.split_once(": ").map_or(what.as_str(), |(_, w)| w);
    let named = if variables.is_empty() {
        format!("PORTCULLIS_{}", key.to_uppercase())
    } else {
        variables.join(", ")
    };
    format!("{named}: {what}")
}

/// The file's problems from top to bottom, then the environment's.
fn in_file_order(mut problems: Vec<(Option<(usize, usize)>, String)>) -> Vec<String> {
    problems.sort_by_key(|(place, _)| place.unwrap_or((usize::MAX, 0)));
    problems.into_iter().map(|(_, problem)| problem).collect()
}

/// Whether the variable (without its prefix) is, or is below, one of the keys (`__`-joined).
fn under_any(name: &str, keys: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    keys.iter().any(|key| {
        name == *key
            || name
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.starts_with("__"))
    })
}

/// The file's text as a figment provider that names the file (figment would say "TOML source
/// string").
struct Named {
    path: PathBuf,
    text: String,
}

impl Provider for Named {
    fn metadata(&self) -> Metadata {
        Metadata::from("configuration file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Toml::string(&self.text).data()
    }
}

/// One problem, in words: the key, what is wrong, and for an unknown key what it may have meant.
fn describe(error: &Error) -> String {
    let key = written_as(&error.path);
    let what = match &error.kind {
        Kind::UnknownField(found, expected) => {
            let near = expected
                .iter()
                .filter(|candidate| edit_distance(candidate, found) <= 2)
                .min_by_key(|candidate| edit_distance(candidate, found));
            match near {
                Some(near) => format!("unknown key; did you mean {near:?}?"),
                None => format!("unknown key; the keys here are {}", expected.join(", ")),
            }
        }
        Kind::MissingField(name) => {
            return if key.is_empty() {
                format!("{name}: missing (it is required)")
            } else {
                format!("{key}.{name}: missing (it is required)")
            };
        }
        Kind::InvalidType(found, expected) => format!("expected {expected}, found {found}"),
        Kind::InvalidValue(found, expected) => format!("expected {expected}, found {found}"),
        Kind::UnknownVariant(found, expected) => {
            format!("{found:?} is not one of {}", expected.join(", "))
        }
        Kind::InvalidLength(length, expected) => {
            format!("expected {expected}, found {length} items")
        }
        Kind::DuplicateField(name) => format!("{name} is given twice"),
        other => other.to_string(),
    };
    if key.is_empty() {
        what
    } else {
        format!("{key}: {what}")
    }
}

/// A key's path as validation writes it too: `apps[0].identity_headers.profile`.
fn written_as(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// `file:line:column: what` for a TOML syntax error.
fn syntax_error(file: &FileText, error: &toml_edit::TomlError) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(&file.text, span.start);
            format!("{}:{line}:{column}: {message}", file.path.display())
        }
        None => format!("{}: {message}", file.path.display()),
    }
}

/// Where the key at `path` is written (its key, or its value where it has no key of its own).
fn locate(root: &Item, path: &[String], text: &str) -> Option<(usize, usize)> {
    let mut node = root;
    let mut span: Option<Range<usize>> = node.span();
    for segment in path {
        if let Ok(index) = segment.parse::<usize>()
            && (node.is_array() || node.is_array_of_tables())
        {
            node = node.get(index)?;
            span = node.span().or(span);
        } else {
            let (key, item) = node.as_table_like()?.get_key_value(segment)?;
            span = key.span().or_else(|| item.span()).or(span);
            node = item;
        }
    }
    span.map(|span| line_and_column(text, span.start))
}

/// Takes the key at `path` out of the document; an element of a list takes the whole list (its
/// neighbours' positions must not move under later errors). False when there is nothing to take.
fn take_out(root: &mut Item, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut parents = parents;
    let mut last = last;
    while last.parse::<usize>().is_ok() {
        match parents.split_last() {
            Some((parent, rest)) => {
                last = parent;
                parents = rest;
            }
            None => return false,
        }
    }
    let mut node = root;
    for segment in parents {
        node = match segment.parse::<usize>() {
            Ok(index) if node.is_array() || node.is_array_of_tables() => {
                match node.get_mut(index) {
                    Some(child) => child,
                    None => return false,
                }
            }
            _ => match node.get_mut(segment.as_str()) {
                Some(child) => child,
                None => return false,
            },
        };
    }
    node.as_table_like_mut()
        .and_then(|table| table.remove(last))
        .is_some()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn problems(text: &str) -> Vec<String> {
        let file = FileText {
            path: Path::new("portcullis.toml").to_path_buf(),
            text: text.to_owned(),
        };
        extract(Some(&file), super::super::top_level_keys()).unwrap_err()
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let found = problems(
            "listen = \"127.0.0.1:4180\"\nlisen = \"x\"\n\n[session]\nidle_timeout = 5\n\n\
             [[apps]]\nname = \"chat\"\nupstream = \"http://127.0.0.1:8080\"\ncolour = \"blue\"\n\
             identity_headers = { profle = \"openwebui\" }\n",
        );
        assert_eq!(found.len(), 4, "{found:#?}");
        let has = |needle: &str| found.iter().any(|p| p.contains(needle));
        assert!(
            has("portcullis.toml:2:1: lisen: unknown key; did you mean \"listen\"?"),
            "{found:#?}"
        );
        assert!(
            has("portcullis.toml:5:1: session.idle_timeout: "),
            "{found:#?}"
        );
        assert!(
            has("portcullis.toml:10:1: apps[0].colour: unknown key; the keys here are name, "),
            "{found:#?}"
        );
        assert!(
            has(
                "portcullis.toml:11:22: apps[0].identity_headers.profle: unknown key; did you mean \"profile\"?"
            ),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .all(|p| !p.contains("source string") && !p.contains("``")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_place() {
        let found = problems("listen = \"127.0.0.1:4180\"\n[session\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("portcullis.toml:2:"), "{found:?}");
    }

    #[test]
    fn a_bad_list_element_takes_its_list_out_and_the_rest_is_still_checked() {
        let found = problems("trusted_proxies = [\"10.0.0.0/8\", 5]\nlisen = 1\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("portcullis.toml:1:")
                || found[1].starts_with("portcullis.toml:1:")
        );
    }
}
