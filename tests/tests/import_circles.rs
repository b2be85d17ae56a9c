//! No import circle inside a crate: a module never imports, directly or around a circle, from a module that
//! imports it (issue 25). A newcomer can then read any module knowing that what it uses does not use it back.
//!
//! The graph is drawn from the sources, per crate: a module is a file (`a/b.rs` or `a/b/mod.rs` is `a::b`); an
//! edge is a `crate::`, `super::` or `self::` path in its code (comments and test modules left out) resolved to
//! the longest module it names. Edges between a module and its own ancestors or descendants are not counted:
//! a parent declares and re-exports its children, which is the module tree, not an import between rooms.
//!
//! The engine's last circle ran through `error` (the commands' error named the failover's) and `check`'s
//! `Finding` (which `delta`, `snapshot` and `workspace` report); both now sit with their users, below them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate (`["failover", "activate"]`); the crate root is empty.
type Module = Vec<String>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every production `.rs` file under `dir` with its module path (test-only files left out).
fn modules(dir: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            let last = parts.last().map(String::as_str).unwrap_or("");
            if last == "tests" || last.ends_with("_tests") {
                continue;
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The code of a file without its comments and without an inline `mod tests` at its end.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The paths a module's code names: `crate::a::b`, `super::x`, and each item of a `{...}` group after them.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(start) {
            let at = from + pos;
            from = at + start.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            let mut end = at;
            while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == b':') {
                end += 1;
            }
            let path = code[at..end].trim_end_matches(':').to_owned();
            if end < bytes.len() && bytes[end] == b'{' {
                let close = matching_brace(code, end);
                expand_group(&path, &code[end + 1..close], &mut out);
            }
            out.push(path);
        }
    }
    out
}

/// The index of the `}` closing the `{` at `open` (the end of the text if none).
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The paths of a use group's items (`a::{b, c::{d}}, e` after `prefix`), nested groups included.
fn expand_group(prefix: &str, group: &str, out: &mut Vec<String>) {
    let (mut depth, mut start) = (0, 0);
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        match item.find("::{") {
            Some(at) => {
                let inner = &item[at + 2..];
                let close = matching_brace(inner, 0);
                let sub = format!("{prefix}::{}", &item[..at]);
                out.push(sub.clone());
                expand_group(&sub, &inner[1..close], out);
            }
            None => out.push(format!("{prefix}::{}", item.split(" as ").next().unwrap_or(item).trim())),
        }
    }
}

/// The module a path leads to from `current`, if it names one of this crate's modules.
fn resolve(current: &Module, path: &str, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut parts = path.split("::").peekable();
    let mut base: Module = match parts.peek().copied() {
        Some("crate") => Vec::new(),
        Some("super") | Some("self") => current.clone(),
        _ => return None,
    };
    if parts.peek() == Some(&"crate") {
        parts.next();
    }
    while let Some(&p) = parts.peek() {
        match p {
            "super" => {
                base.pop();
            }
            "self" => {}
            _ => break,
        }
        parts.next();
    }
    base.extend(parts.map(str::to_owned));
    (0..=base.len()).rev().map(|n| base[..n].to_vec()).find(|m| known.contains_key(m))
}

/// The import graph of one crate's `src`.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(src);
    let mut edges = BTreeMap::new();
    for (module, path) in &known {
        let mut to = BTreeSet::new();
        for p in named_paths(&code_of(path)) {
            let Some(target) = resolve(module, &p, &known) else { continue };
            let related = target.starts_with(module) || module.starts_with(&target);
            if !related {
                to.insert(target);
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// The circles of a graph (strongly connected components of more than one module), each sorted.
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<String>> {
    // Kosaraju: finishing order on the graph, then components on the reversed graph.
    fn visit(v: &Module, e: &BTreeMap<Module, BTreeSet<Module>>, seen: &mut BTreeSet<Module>, out: &mut Vec<Module>) {
        if !seen.insert(v.clone()) {
            return;
        }
        for w in e.get(v).into_iter().flatten() {
            visit(w, e, seen, out);
        }
        out.push(v.clone());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for v in edges.keys() {
        visit(v, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<Module, BTreeSet<Module>> = edges.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
    for (v, ws) in edges {
        for w in ws {
            reversed.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for v in order.iter().rev() {
        let mut component = Vec::new();
        visit(v, &reversed, &mut seen, &mut component);
        if component.len() > 1 {
            out.push(component.iter().map(|m| m.join("::")).collect());
        }
    }
    out
}

/// Every workspace crate's `src` directory.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let root = repo_root();
    let mut out = Vec::new();
    for group in ["shared", "functions"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            let dir = entry.unwrap().path();
            if dir.join("src").is_dir() {
                out.push((dir.file_name().unwrap().to_string_lossy().into_owned(), dir.join("src")));
            }
        }
    }
    out.push(("cli".into(), root.join("cli/src")));
    out.push(("tests".into(), root.join("tests/src")));
    out
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut found = Vec::new();
    for (name, src) in crate_sources() {
        for circle in circles(&graph(&src)) {
            found.push(format!("{name}: {}", circle.into_iter().collect::<Vec<_>>().join(", ")));
        }
    }
    assert!(found.is_empty(), "import circles (each module reaches the others and is reached by them):\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_circle_and_the_module_tree_is_not_one() {
    let dir = std::env::temp_dir().join(format!("import-circles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub mod d;\npub use a::X;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "pub mod c;\nuse crate::b::Y; // crate::b in a comment only\npub struct X;\n").unwrap();
    std::fs::write(dir.join("a/c.rs"), "use super::X;\n").unwrap();
    std::fs::write(dir.join("b.rs"), "use crate::{a::{c, X}, d};\npub struct Y;\n").unwrap();
    std::fs::write(dir.join("d.rs"), "use crate::b::Y;\n").unwrap();
    let found = circles(&graph(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    let expected: BTreeSet<String> = ["a".to_owned(), "b".to_owned(), "d".to_owned()].into();
    assert_eq!(found, vec![expected], "a, b and d (named after a nested group) import each other; lib/a and a/a::c are the tree");
}

#[test]
fn no_production_module_imports_its_parent_wholesale() {
    // `use super::*` hides where a name lives and turns every import of the parent into one of the child's;
    // test modules may (they test their parent).
    let mut found = Vec::new();
    for (name, src) in crate_sources() {
        for (module, path) in modules(&src) {
            if code_of(&path).lines().any(|l| l.trim_end() == "use super::*;") {
                found.push(format!("{name}: {} ({})", module.join("::"), path.display()));
            }
        }
    }
    assert!(found.is_empty(), "glob imports of the parent in production modules:\n{}", found.join("\n"));
}
