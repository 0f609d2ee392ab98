//! The library's layers as `src/lib.rs` documents them: each module on a floor, and every
//! `crate::` path in a module's code names a module on a lower floor. A path to a higher
//! floor (or to the same floor) is a dependency that can close a circle, so it fails here
//! naming the file, the path and both floors. Comments and doc links do not count, nor
//! do unit tests (`#[cfg(test)]` to the end of a file), which may build whole models.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::root;

/// The floors listed in `lib.rs`'s `## Layers` text block: module -> floor.
fn floors() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let section = lib
        .split("//! ## Layers")
        .nth(1)
        .expect("src/lib.rs has a `## Layers` section");
    let block = section
        .split("//! ```text")
        .nth(1)
        .and_then(|b| b.split("//! ```").next())
        .expect("the Layers section has a ```text block");
    let mut floors = BTreeMap::new();
    for line in block.lines() {
        // `N  modules...  description`: columns are two or more spaces apart.
        let line = line.trim_start_matches("//!").trim();
        let Some((floor, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(floor) = floor.parse::<usize>() else {
            continue;
        };
        let modules = rest.trim_start().split("  ").next().unwrap_or("");
        for word in modules.split_whitespace() {
            assert!(
                floors.insert(word.to_string(), floor).is_none(),
                "{word} is listed twice"
            );
        }
    }
    floors
}

/// The modules `lib.rs` declares (`pub mod x;`, `mod x;`).
fn declared_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// The names `lib.rs` re-exports (`pub use engine::{ClipEngine, ...};`) -> their module.
fn root_exports() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let mut exports = BTreeMap::new();
    for item in lib.split("pub use ").skip(1) {
        let item = item.split(';').next().unwrap();
        let module = item.split("::").next().unwrap().trim().to_string();
        for name in item.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if name.chars().next().is_some_and(|c| c.is_uppercase()) {
                exports.insert(name.to_string(), module.clone());
            }
        }
    }
    exports
}

/// The code of a file without comments (line and block) and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if rest.starts_with('"') {
            // Skip string literals (they may hold `//` or `crate::` as text).
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            rest = &rest[(i + 1).min(rest.len())..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The top-level modules a piece of code names with `crate::` paths, including each
/// first-level name of a `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        // `$crate::` in macros and identifiers ending in `crate` are not crate paths.
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !item.is_empty() {
                            names.push(std::mem::take(&mut item));
                        }
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                        continue;
                    }
                    if !item.is_empty() {
                        names.push(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if !item.is_empty() {
                names.push(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_has_a_floor() {
    let floors = floors();
    let declared = declared_modules();
    for module in &declared {
        assert!(
            floors.contains_key(module),
            "src/lib.rs declares `{module}` but its Layers list gives it no floor"
        );
    }
    for module in floors.keys() {
        assert!(
            declared.contains(module),
            "the Layers list names `{module}`, which src/lib.rs does not declare"
        );
    }
}

#[test]
fn no_module_uses_one_above_or_beside_it() {
    let floors = floors();
    let exports = root_exports();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.trim_end_matches(".rs");
        // The binaries and the crate root stand above every floor.
        if matches!(module, "main" | "cli" | "bin" | "lib") {
            continue;
        }
        let floor = floors[module];
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&code(&text)) {
            if used == module || used.is_empty() {
                continue;
            }
            // A type re-exported at the crate root (`crate::Error`) counts as its module.
            let used = exports.get(&used).cloned().unwrap_or(used);
            if used == module {
                continue;
            }
            let Some(&used_floor) = floors.get(&used) else {
                wrong.push(format!(
                    "{}: crate::{used} is not a module with a floor",
                    rel.display()
                ));
                continue;
            };
            checked += 1;
            if used_floor >= floor {
                wrong.push(format!(
                    "src/{}: uses crate::{used} (floor {used_floor}) from {module} (floor {floor})",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: is the parser broken?"
    );
    assert!(wrong.is_empty(), "layer violations:\n{}", wrong.join("\n"));
}

/// The checker itself: paths in groups, comments and strings, and a violation it must see.
#[test]
fn the_path_reader_sees_groups_and_skips_comments() {
    let text = "use crate::{a::X, b, c::{d, e}};\n// crate::f\nlet s = \"crate::g\";\n\
                /* crate::h */ crate::i::j();\n$crate::k\n";
    assert_eq!(crate_paths(&code(text)), ["a", "b", "c", "i"]);
    assert_eq!(
        crate_paths(&code("x\n#[cfg(test)]\nuse crate::z;")),
        Vec::<String>::new()
    );
}
