//! The module layers of `docs/architecture.md`, checked on the source:
//! the front door (`front`, `tokio`, and what sits on it) above two sibling
//! backends (`file`, `etcd`) that never name each other, above the shared
//! leaves. A module may use its own layer or lower ones, the two backends
//! never use each other, and the graph of the crate's top-level modules has
//! no cycle.
//!
//! The graph is read from `crate::<module>` paths in `src/` (comment lines
//! and unit-test modules left out) and from names the crate root
//! re-exports (`crate::LockOptions` is a use of `options`), as written in
//! `src/lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first. Every top-level module of the library is in one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "the front door and what sits on it",
        &["front", "tokio", "signals", "attention"],
    ),
    ("the backends", &["file", "etcd"]),
    (
        "the shared leaves",
        &[
            "guard",
            "hold_state",
            "paths",
            "backend",
            "options",
            "record",
            "registry",
            "error",
            "transcript",
            "watchdog",
            "identity",
            "time",
            "verdict",
            "fault",
            "sys",
        ],
    ),
];

/// Modules of one layer that must not use each other.
const SIBLINGS: &[&str] = &["file", "etcd"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Identifiers following `crate::` on the code lines of `text`.
fn crate_paths(text: &str) -> Vec<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = Vec::new();
    for line in code.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Names the crate root re-exports, and the module each comes from
/// (`pub use options::{LockOptions, ...}` maps `LockOptions` to `options`).
fn root_names() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut names = BTreeMap::new();
    let mut stmt = String::new();
    for line in lib.lines() {
        let l = line.trim();
        if stmt.is_empty() && !l.starts_with("pub use ") {
            continue;
        }
        stmt.push_str(l);
        stmt.push(' ');
        if !l.ends_with(';') {
            continue;
        }
        let body = stmt["pub use ".len()..].trim().trim_end_matches(';');
        let module = body.split("::").next().unwrap().trim().to_owned();
        let list = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => body[a + 1..b].to_owned(),
            _ => body.rsplit("::").next().unwrap().to_owned(),
        };
        for n in list.split(',') {
            let n = n.split(" as ").last().unwrap().trim();
            if !n.is_empty() {
                names.insert(n.to_owned(), module.clone());
            }
        }
        stmt.clear();
    }
    names
}

/// Top-level module -> the top-level modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let names = root_names();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if first == "bin" || first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        let used = g.entry(module.clone()).or_default();
        for p in crate_paths(&text) {
            let target = if is_module(&p) {
                p
            } else {
                match names.get(&p) {
                    Some(m) => m.clone(),
                    None => panic!(
                        "{}: crate::{p} is neither a module nor a name the crate root re-exports",
                        rel.display()
                    ),
                }
            };
            if target != module {
                used.insert(target);
            }
        }
    }
    g
}

/// Whether `name` is a top-level module of the library.
fn is_module(name: &str) -> bool {
    let root = src();
    root.join(format!("{name}.rs")).is_file() || root.join(name).join("mod.rs").is_file()
}

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, ms)| ms.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/architecture.rs (and docs/architecture.md)"))
}

#[test]
fn each_module_uses_only_its_own_layer_or_lower_ones() {
    let g = graph();
    let mut wrong = Vec::new();
    for (m, used) in &g {
        for u in used {
            if layer_of(u) < layer_of(m) {
                wrong.push(format!(
                    "`{m}` ({}) uses `{u}` ({})",
                    LAYERS[layer_of(m)].0,
                    LAYERS[layer_of(u)].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}\n\ngraph: {g:#?}", wrong.join("\n"));
}

#[test]
fn the_backends_never_name_each_other() {
    let g = graph();
    for a in SIBLINGS {
        for b in SIBLINGS {
            if a != b {
                assert!(
                    !g.get(*a).is_some_and(|u| u.contains(*b)),
                    "`{a}` uses `{b}`: {:?}",
                    g.get(*a)
                );
            }
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search; a back edge is a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for u in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(u, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("a module cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The checker itself: it sees a use through a root re-export and skips
/// comments and unit tests.
#[test]
fn the_reader_finds_uses_through_the_root_and_skips_comments() {
    let text = "use crate::error::Error;\n// crate::etcd in a comment\nfn f(_: crate::LockOptions) {}\n#[cfg(test)]\nmod tests { use crate::file; }\n";
    assert_eq!(crate_paths(text), vec!["error", "LockOptions"]);
    assert_eq!(
        root_names().get("LockOptions").map(String::as_str),
        Some("options")
    );
    assert_eq!(
        root_names().get("acquire").map(String::as_str),
        Some("front")
    );
}

/// The command line (`cli/`, the package `session-lock-cli`) is built on
/// the library's public API alone: the library's manifest has no CLI
/// feature or CLI dependency (CI's `cargo tree` step checks the resolved
/// tree too), the CLI's manifest depends on the library without its test
/// hooks, and no source of the CLI names the test hooks (`__private`,
/// `session_lock::fault`) or includes a file from outside `cli/` (the one
/// way around the compiler's privacy rules). The tests in `cli/tests` may
/// use the hooks: they are the library's tests too. Runs in this
/// repository only (a packaged library has no `cli/`).
#[test]
fn the_command_line_uses_the_public_api_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("cli/Cargo.toml").exists() || !root.join(".git").exists(),
        "this repository has lost its cli/ package"
    );
    if !root.join("cli/Cargo.toml").exists() {
        return;
    }
    let lib_manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    // The lines of the sections a library user compiles: `[dependencies]`
    // and `[target.'cfg(..)'.dependencies]`, not the dev-dependencies.
    let mut section = "";
    let mut normal = Vec::new();
    let mut features = Vec::new();
    for line in lib_manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
            assert!(
                !section.starts_with("[dependencies.") && !section.contains(".dependencies."),
                "the reader does not know dependency tables: {section}"
            );
        } else if line.starts_with('#') || line.is_empty() {
        } else if section == "[dependencies]"
            || (section.starts_with("[target.") && section.ends_with(".dependencies]"))
        {
            normal.push(line);
        } else if section == "[features]" {
            features.push(line);
        }
    }
    let name = |l: &str| {
        l.split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        normal.iter().any(|l| name(l) == "serde"),
        "the reader finds the library's dependencies"
    );
    for dep in [
        "clap",
        "clap_complete",
        "clap_mangen",
        "tracing-subscriber",
        "signal-hook",
    ] {
        assert!(
            !normal.iter().any(|l| name(l) == dep),
            "the library's Cargo.toml makes the CLI's {dep} a dependency of the library"
        );
    }
    assert!(
        features.iter().any(|l| name(l) == "fault-injection"),
        "the reader finds the library's features"
    );
    for feature in ["cli", "test-helpers"] {
        assert!(
            !features.iter().any(|l| name(l) == feature),
            "the library's Cargo.toml has a `{feature}` feature"
        );
    }
    let cli_manifest = std::fs::read_to_string(root.join("cli/Cargo.toml")).unwrap();
    let lib_dep = cli_manifest
        .lines()
        .find(|l| name(l) == "session-lock")
        .expect("cli/Cargo.toml depends on session-lock");
    assert!(
        !lib_dep.contains("fault-injection"),
        "the CLI's normal dependency switches the test hooks on: {lib_dep}"
    );
    let mut files = Vec::new();
    rust_files(&root.join("cli/src"), &mut files);
    assert!(files.len() > 5, "cli/src has the command line's sources");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            // `#[path = "..."]` or `include!("...")`: where does it lead?
            let outside = (code.starts_with("#[path") || code.contains("include!("))
                && code.split('"').nth(1).is_none_or(|rel| {
                    let target = f.parent().unwrap().join(rel);
                    !std::fs::canonicalize(&target)
                        .is_ok_and(|t| t.starts_with(root.join("cli").canonicalize().unwrap()))
                });
            if code.contains("__private") || code.contains("session_lock::fault") || outside {
                found.push(format!("{}:{}: {}", f.display(), n + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the command line goes around the public API:\n{}",
        found.join("\n")
    );
}
