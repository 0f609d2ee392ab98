//! The source layout listed in `docs/architecture.md` is the tree's: every module folder
//! (a folder with a `mod.rs`) and every other `.rs` file under `src/`, sorted by path, each
//! with the first line of its `//!` doc (` …` marks a line that goes on). The listing is the
//! block between `<!-- layout:begin -->` and `<!-- layout:end -->`; on a mismatch the test
//! fails printing the expected block, and `UPDATE_LAYOUT=1 cargo test --test tests layout`
//! writes it in place.

use crate::common::root;
use std::path::Path;

const DOC: &str = "docs/architecture.md";
const BEGIN: &str = "<!-- layout:begin -->";
const END: &str = "<!-- layout:end -->";

/// The first non-empty line of a file's `//!` doc, with ` …` when it does not end a sentence
/// or open a list (it is cut mid-sentence); empty when the file has no `//!` doc.
fn summary(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let Some(line) = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .map(str::trim)
        .find(|l| !l.is_empty())
    else {
        return String::new();
    };
    if line.ends_with('.') || line.ends_with(':') {
        line.to_string()
    } else {
        format!("{line} …")
    }
}

/// (path relative to the repository root with forward slashes, summary) for every module
/// folder (`src/x/`, summarised by its `mod.rs`) and every other `.rs` file under `dir`.
fn walk(dir: &Path, rel: &str, entries: &mut Vec<(String, String)>) {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    children.sort();
    for path in children {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let rel = format!("{rel}/{name}");
        if path.is_dir() {
            let module = path.join("mod.rs");
            if module.is_file() {
                entries.push((format!("{rel}/"), summary(&module)));
            }
            walk(&path, &rel, entries);
        } else if name.ends_with(".rs") && name != "mod.rs" {
            entries.push((rel, summary(&path)));
        }
    }
}

/// The listing as it belongs between the markers (a `text` code block).
fn expected_block() -> String {
    let mut entries = Vec::new();
    walk(&root().join("src"), "src", &mut entries);
    entries.sort();
    let width = entries
        .iter()
        .map(|(p, _)| p.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut block = String::from("```text\n");
    for (path, summary) in &entries {
        let line = format!("{path:<width$}{summary}");
        block.push_str(line.trim_end());
        block.push('\n');
    }
    block.push_str("```\n");
    block
}

#[test]
fn the_layout_in_docs_architecture_is_the_tree() {
    let doc_path = root().join(DOC);
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let begin = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{DOC} has no `{BEGIN}` line"))
        + BEGIN.len();
    let end = begin
        + doc[begin..]
            .find(END)
            .unwrap_or_else(|| panic!("{DOC} has no `{END}` line after `{BEGIN}`"));
    let current = doc[begin..end].trim_start_matches('\n');
    let expected = expected_block();
    if current == expected {
        return;
    }
    if std::env::var_os("UPDATE_LAYOUT").is_some_and(|v| v == "1") {
        let updated = format!("{}\n{expected}{}", &doc[..begin], &doc[end..]);
        std::fs::write(&doc_path, updated).unwrap_or_else(|e| panic!("{DOC}: {e}"));
        eprintln!("{DOC}: layout block rewritten from the tree");
        return;
    }
    panic!(
        "the layout in {DOC} is not the tree's; rerun with UPDATE_LAYOUT=1 to rewrite it, \
         or put this between `{BEGIN}` and `{END}`:\n\n{expected}"
    );
}
