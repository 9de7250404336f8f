//! Every TOML snippet in docs/ is a complete, valid configuration: the docs cannot drift from the
//! code without this test failing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::path::Path;

#[path = "common/pki.rs"]
#[allow(dead_code)]
mod pki;

/// The certificate files the docs' snippets name under `/etc/portcullis/tls/`, made for real,
/// so that `check-config`'s reading of them is exercised too.
fn tls_files(dir: &Path) -> pki::Pki {
    let pki = pki::Pki::new("Docs CA");
    let server = pki.server("server", &["chat.example.com"]);
    let client = pki.client("client", "portcullis");
    for (from, to) in [
        (&server.cert, "fullchain.pem"),
        (&server.key, "privkey.pem"),
        (&pki.ca_file(), "company-ca.pem"),
        (&client.cert, "portcullis-client.pem"),
        (&client.key, "portcullis-client-key.pem"),
    ] {
        std::fs::copy(from, dir.join(to)).unwrap();
    }
    pki
}

fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Every `${NAME}` replaced by a placeholder value, as if the environment had set it.
fn with_placeholders(block: &str) -> String {
    let mut out = String::new();
    let mut rest = block;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&format!("placeholder-{}", &after[..end]));
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn every_toml_snippet_in_the_docs_is_valid() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let dir = tempfile::tempdir().unwrap();
    let _pki = tls_files(dir.path());
    let tls_dir = format!("{}/", dir.path().display());
    let mut checked = 0;
    let mut pages = Vec::new();
    let mut folders = vec![docs];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    for path in pages {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, block) in toml_blocks(&text).iter().enumerate() {
            let file = dir.path().join("snippet.toml");
            // `${NAME}` is read from the environment at load time; the docs show it for secrets.
            std::fs::write(
                &file,
                with_placeholders(block).replace("/etc/portcullis/tls/", &tls_dir),
            )
            .unwrap();
            let loaded = portcullis::config::load(Some(&file));
            assert!(
                loaded.is_ok(),
                "{} snippet #{i} is not valid: {}\n{block}",
                path.display(),
                loaded.err().unwrap()
            );
            let (config, _) = loaded.unwrap();
            // Loading validated it; compiling is the same pass and yields the parts that run.
            let compiled = config.compile();
            assert!(
                compiled.is_ok(),
                "{} snippet #{i}: {:?}",
                path.display(),
                compiled.err()
            );
            let _ = portcullis_proxy::RouteTable::build(&compiled.unwrap().routes, None);
            checked += 1;
        }
    }
    assert!(
        checked >= 6,
        "expected the docs to hold configuration snippets, found {checked}"
    );
}
