//! The shape of `src/`, checked: no two files import each other, and no file is over 500 lines.
//!
//! A pair of files that `use` each other is one concept split in two, or two concepts tangled: neither
//! can be read, tested or moved without the other. The check reads every `.rs` file under `src/`,
//! resolves each `use crate::…`, `use super::…`, `use self::…` and relative `use child::…` (grouped
//! trees `use a::{b, c::{d}}` included) to the file that defines the module the path lands in, and
//! lists every pair that points both ways. An item re-exported by a folder's `mod.rs` counts as
//! `mod.rs`, as the compiler sees it. `use super::*` inside an inline `mod tests { … }` is the file
//! itself, not its parent. Paths to other crates are ignored. `src/main.rs` is the binary, a crate of
//! its own, so only its length is checked.
//!
//! It needs no parser crate: comments and literals are dropped, the rest is cut into identifiers and
//! punctuation, and only `mod NAME {` blocks and `use` trees are read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The longest a file in `src/` may be: past it a file holds more than one concept (the largest today
/// are `tunnel/session/mod.rs` and `tunnel/wire/mod.rs`, just under it).
const MAX_LINES: usize = 500;

/// A module path below the crate root, e.g. `["tunnel", "client", "keeper"]`.
type ModPath = Vec<String>;

/// One `.rs` file: its path relative to the crate (`src/…`) and its text.
struct Source {
    path: String,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| Source {
            path: p.strip_prefix(root).expect("under the crate").to_string_lossy().replace('\\', "/"),
            text: std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines: `src/lib.rs` is the root, `src/a/mod.rs` and `src/a.rs` are `a`,
/// `src/a/b.rs` is `a::b`. `None` for the binary's `src/main.rs`.
fn module_of(path: &str) -> Option<ModPath> {
    let rel = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    if rel == "main" {
        return None;
    }
    if rel == "lib" {
        return Some(Vec::new());
    }
    let mut segments: ModPath = rel.split('/').map(str::to_owned).collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    Some(segments)
}

/// The identifiers and punctuation of Rust source, without comments, strings and character literals
/// (a `use` in a doc example or a string is not an import). `::` is one token.
fn tokens(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i);
        } else if ch == '\'' {
            // A character literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if prefix && (at(i) == '"' || (at(i) == '#' && (at(i + 1) == '"' || at(i + 1) == '#'))) {
                i = skip_raw_string(&c, i);
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(&c, i);
            } else if word == "b" && at(i) == '\'' {
                i += if at(i + 1) == '\\' { 4 } else { 3 };
                while i < c.len() && c[i - 1] != '\'' {
                    i += 1;
                }
            } else if word == "r" && at(i) == '#' {
                // A raw identifier (r#type): the name without its prefix.
                i += 1;
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(c[start..i].iter().collect());
            } else {
                out.push(word);
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push("::".to_owned());
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
            i += 1;
        }
    }
    out
}

/// Past a `"…"` string starting at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    i += 1;
    while i < c.len() && c[i] != '"' {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Past a raw string whose `#`s or opening quote start at `i`.
fn skip_raw_string(c: &[char], mut i: usize) -> usize {
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1;
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// What one file declares: its inline modules and its `use` paths, each with the module it is
/// written in.
#[derive(Default)]
struct Scan {
    inline_modules: Vec<ModPath>,
    uses: Vec<(ModPath, Vec<String>)>,
}

fn scan(module: &ModPath, toks: &[String]) -> Scan {
    let mut scan = Scan::default();
    // One entry per open brace: the inline module it opens, if it does.
    let mut braces: Vec<Option<String>> = Vec::new();
    let current = |braces: &[Option<String>]| -> ModPath {
        module.iter().cloned().chain(braces.iter().flatten().cloned()).collect()
    };
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        match toks[i].as_str() {
            "mod" if toks.get(i + 2).is_some_and(|t| t == "{") => {
                pending_mod = Some(toks[i + 1].clone());
                let mut path = current(&braces);
                path.push(toks[i + 1].clone());
                scan.inline_modules.push(path);
                i += 2;
            }
            "{" => {
                braces.push(pending_mod.take());
                i += 1;
            }
            "}" => {
                braces.pop();
                i += 1;
            }
            "use" => {
                let mut paths = Vec::new();
                i += 1;
                use_tree(toks, &mut i, Vec::new(), &mut paths);
                while i < toks.len() && toks[i] != ";" {
                    i += 1;
                }
                let here = current(&braces);
                scan.uses.extend(paths.into_iter().map(|p| (here.clone(), p)));
            }
            word if is_word(word) && toks.get(i + 1).is_some_and(|t| t == "::") => {
                // A qualified path in code (`super::health::health_loop(…)`, `crate::net::Target`)
                // depends on its file as much as a `use` does. Paths of other crates fall out in
                // `resolve`.
                let mut path = vec![word.to_owned()];
                i += 1;
                while toks.get(i).is_some_and(|t| t == "::") && toks.get(i + 1).is_some_and(|t| is_word(t)) {
                    path.push(toks[i + 1].clone());
                    i += 2;
                }
                scan.uses.push((current(&braces), path));
            }
            "::" => {
                // `::name::…` is another crate's path; skip it whole so `name` is not read as a start.
                i += 1;
                while toks.get(i).is_some_and(|t| is_word(t) || t == "::") {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    scan
}

fn is_word(t: &str) -> bool {
    t.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// Reads one use tree at `i` (`a::b`, `a::b as c`, `a::*`, `a::{b, c::{d, self}}`), adding every
/// path it names to `out`. A leading `::` is kept as a segment so the path reads as another crate's.
fn use_tree(toks: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(t) = toks.get(*i) {
        match t.as_str() {
            "::" => {
                if path.is_empty() {
                    path.push("::".to_owned());
                }
                *i += 1;
            }
            "{" => {
                *i += 1;
                while toks.get(*i).is_some_and(|t| t != "}") {
                    use_tree(toks, i, path.clone(), out);
                    if toks.get(*i).is_some_and(|t| t == ",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                out.push(path);
                return;
            }
            word if is_word(word) => {
                path.push(word.to_owned());
                *i += 1;
                if toks.get(*i).is_some_and(|t| t == "as") {
                    *i += 2;
                }
                if toks.get(*i).is_none_or(|t| t != "::") {
                    out.push(path);
                    return;
                }
            }
            // Anything else (`$crate` in a macro, a stray token): not a path this check can follow.
            _ => return,
        }
    }
}

/// The file a `use` path written in module `from` lands in, or `None` for another crate's path.
fn resolve(from: &ModPath, path: &[String], modules: &HashMap<ModPath, String>) -> Option<String> {
    let first = path.first()?;
    let (mut base, mut i) = match first.as_str() {
        "crate" => (Vec::new(), 1),
        "self" => (from.clone(), 1),
        "super" => {
            let mut base = from.clone();
            let mut i = 0;
            while path.get(i).is_some_and(|s| s == "super") {
                base.pop()?;
                i += 1;
            }
            (base, i)
        }
        name => {
            let mut child = from.clone();
            child.push(name.to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
            (from.clone(), 0)
        }
    };
    while let Some(segment) = path.get(i) {
        if segment == "self" {
            i += 1;
            continue;
        }
        let mut next = base.clone();
        next.push(segment.clone());
        if !modules.contains_key(&next) {
            break;
        }
        base = next;
        i += 1;
    }
    modules.get(&base).cloned()
}

/// Every file → the files it imports, each with the first path that does it.
type Imports = BTreeMap<String, BTreeMap<String, String>>;

fn imports(sources: &[Source]) -> Imports {
    let mut modules: HashMap<ModPath, String> = HashMap::new();
    let mut scans = Vec::new();
    for source in sources {
        let Some(module) = module_of(&source.path) else { continue };
        modules.insert(module.clone(), source.path.clone());
        let scan = scan(&module, &tokens(&source.text));
        scans.push((source.path.clone(), scan));
    }
    for (path, scan) in &scans {
        for inline in &scan.inline_modules {
            modules.entry(inline.clone()).or_insert_with(|| path.clone());
        }
    }
    let mut imports = Imports::new();
    for (path, scan) in &scans {
        let targets = imports.entry(path.clone()).or_default();
        for (from, used) in &scan.uses {
            match resolve(from, used, &modules) {
                Some(target) if &target != path => {
                    let shown: Vec<&str> = used
                        .iter()
                        .enumerate()
                        .filter(|(i, s)| *i == 0 || *s != "self")
                        .map(|(_, s)| s.as_str())
                        .collect();
                    targets.entry(target).or_insert_with(|| shown.join("::"));
                }
                _ => {}
            }
        }
    }
    imports
}

/// Every pair of files that import each other, described with the path each side uses.
fn mutual_pairs(imports: &Imports) -> Vec<String> {
    let mut pairs = Vec::new();
    for (a, targets) in imports {
        for (b, a_uses) in targets {
            if a >= b {
                continue;
            }
            if let Some(b_uses) = imports.get(b).and_then(|t| t.get(a)) {
                pairs.push(format!("{a} <-> {b}   ({a} names {a_uses}; {b} names {b_uses})"));
            }
        }
    }
    pairs
}

#[test]
fn no_two_files_in_src_import_each_other() {
    let sources = sources();
    assert!(sources.iter().any(|s| s.path == "src/lib.rs"), "src/ was read");
    let imports = imports(&sources);
    let edges: usize = imports.values().map(BTreeMap::len).sum();
    assert!(edges > 100, "only {edges} imports between files were found: the reader is broken");
    let pairs = mutual_pairs(&imports);
    assert!(
        pairs.is_empty(),
        "{} pairs of files in src/ import each other; give each dependency one direction \
         (move what both need into a file of its own):\n  {}",
        pairs.len(),
        pairs.join("\n  ")
    );
}

#[test]
fn no_file_in_src_is_over_500_lines() {
    let long: Vec<String> = sources()
        .iter()
        .map(|s| (s.path.clone(), s.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(p, n)| format!("{p}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "files in src/ over {MAX_LINES} lines; split each by concept:\n  {}",
        long.join("\n  ")
    );
}

/// The reader itself, on a made-up tree: these are what make the two checks above mean something.
fn tree(files: &[(&str, &str)]) -> Imports {
    let sources: Vec<Source> =
        files.iter().map(|(p, t)| Source { path: (*p).to_owned(), text: (*t).to_owned() }).collect();
    imports(&sources)
}

#[test]
fn the_reader_finds_a_pair_through_grouped_crate_and_super_paths() {
    let imports = tree(&[
        ("src/lib.rs", "pub mod a;"),
        ("src/a/mod.rs", "mod one; mod two;"),
        ("src/a/one.rs", "use crate::{x::Y, a::{two::{Other, self}}};"),
        ("src/a/two.rs", "pub(crate) use super::super::a::one as first;"),
    ]);
    let pairs = mutual_pairs(&imports);
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert!(pairs[0].starts_with("src/a/one.rs <-> src/a/two.rs"), "{pairs:?}");
}

#[test]
fn the_reader_takes_mod_rs_re_exports_as_mod_rs_and_ignores_other_crates() {
    let imports = tree(&[
        ("src/lib.rs", "pub mod a;"),
        ("src/a/mod.rs", "mod one; mod two; pub use two::Other;"),
        ("src/a/one.rs", "use super::Other; use std::io; use ::tokio::net;"),
        ("src/a/two.rs", "pub struct Other;"),
    ]);
    let one = &imports["src/a/one.rs"];
    assert_eq!(one.keys().collect::<Vec<_>>(), ["src/a/mod.rs"], "{one:?}");
    assert!(mutual_pairs(&imports).is_empty());
}

#[test]
fn the_reader_skips_comments_strings_and_inline_test_modules() {
    let imports = tree(&[
        ("src/lib.rs", "pub mod a;"),
        ("src/a/mod.rs", "mod one; mod two; use two::X;"),
        (
            "src/a/one.rs",
            "// use super::X;\n/* use super::X; /* nested */ use super::X; */\n\
             const S: &str = \"use super::X;\"; const R: &str = r#\"use super::X;\"#;\n\
             const C: char = '{'; fn f<'a>(_: &'a str) {}\n\
             #[cfg(test)] mod tests { use super::*; }",
        ),
        ("src/a/two.rs", "pub struct X; mod inner { use super::super::one; }"),
    ]);
    assert!(imports["src/a/one.rs"].is_empty(), "{:?}", imports["src/a/one.rs"]);
    assert_eq!(imports["src/a/two.rs"].keys().collect::<Vec<_>>(), ["src/a/one.rs"]);
}
