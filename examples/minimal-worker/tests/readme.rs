//! The README's "Using the library" quotes this example and the workspace's build settings,
//! and its tenants section the demo's tenant config: the quotes must stay exactly what the
//! files say.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The fenced blocks of `markdown` right after a `<!-- {kind}: FILE -->` line, as
/// `(FILE, block)`.
fn quoted_blocks(markdown: &str, kind: &str) -> Vec<(String, String)> {
    let marker = format!("<!-- {kind}: ");
    let mut lines = markdown.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let Some(file) = line
            .strip_prefix(marker.as_str())
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "a fence after {line:?}, not {fence:?}"
        );
        let mut block = String::new();
        for body in lines.by_ref() {
            if body == "```" {
                break;
            }
            block.push_str(body);
            block.push('\n');
        }
        found.push((file.to_owned(), block));
    }
    found
}

#[test]
fn the_readme_quotes_the_example_exactly() {
    let readme = read("README.md");
    let quotes = quoted_blocks(&readme, "quote");
    assert_eq!(quotes.len(), 1, "one quoted example in the README");
    let (file, quote) = &quotes[0];
    assert_eq!(file, "examples/minimal-worker/src/main.rs");
    let source = read(file);
    let between = source
        .split_once("// README: begin\n")
        .and_then(|(_, rest)| rest.split_once("// README: end\n"))
        .map(|(quoted, _)| quoted)
        .expect("the example marks what the README quotes");
    assert_eq!(
        quote, between,
        "README.md and {file} differ: copy the file's block over"
    );
    assert!(quote.contains("openrtc::telemetry::init()"), "{quote}");
}

#[test]
fn the_readme_build_settings_are_the_workspace_s() {
    let readme = read("README.md");
    let settings = quoted_blocks(&readme, "setting");
    let files: Vec<&str> = settings.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(files, [".cargo/config.toml", "Cargo.toml"]);
    for (file, block) in &settings {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        let wanted: Vec<&str> = block.lines().collect();
        assert!(
            lines
                .windows(wanted.len())
                .any(|window| window == wanted.as_slice()),
            "{file} does not hold the README's lines:\n{block}"
        );
    }
}

#[test]
fn the_readme_s_excerpts_are_lines_of_their_files() {
    let readme = read("README.md");
    let excerpts = quoted_blocks(&readme, "excerpt");
    let files: Vec<&str> = excerpts.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(files, ["examples/demo/tenants.toml"]);
    for (file, block) in &excerpts {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        let wanted: Vec<&str> = block.lines().collect();
        assert!(wanted.len() > 10, "a real excerpt of {file}");
        assert!(
            lines
                .windows(wanted.len())
                .any(|window| window == wanted.as_slice()),
            "{file} does not hold the README's lines in a row:\n{block}"
        );
    }
}
