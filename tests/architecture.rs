//! The module graph: no new import circles between files, and no new imports from a lower layer
//! into a higher one. Parses the `crate::` and `super::` paths of every file under `src/` (test
//! modules excluded), resolves each to the file that defines it, and finds strongly connected
//! components. There are none (issue 13 removed the last); any new one fails. The lists below stay
//! for a deliberate exception, which must then be explained where it is added.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Import circles present when this test was written, each as its sorted member modules.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// Layers from the bottom; a module may import its own layer and those below.
/// The client sits right above the protocol: it must not need the broker or the store.
const LAYERS: &[&[&str]] = &[
    &["rt"],
    &["protocol", "filter", "security"],
    &["client"],
    &["store", "config"],
    &["net"],
    &["broker", "nameserver", "metrics", "controller"],
    &["shard", "replication", "admin", "bench", "tune", "crate"],
];

/// Upward imports present when this test was written: (importing module, imported top-level module).
const KNOWN_UPWARD: &[(&str, &str)] = &[];

fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            // Files compiled only for tests (`testkit.rs`, `tests.rs`, `tests_*.rs`) may reach anywhere.
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test")) {
                continue;
            }
            let rel = path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap();
            let mut name = rel.with_extension("").to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "lib" || name == "main" {
                name = "crate".into();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            // Comments name modules without importing them.
            let code: String =
                code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            out.insert(name, code);
        }
    }
    out
}

/// The module a `crate::…` or `super::…` path refers to, from module `from`.
fn resolve(from: &str, path: &str, mods: &BTreeMap<String, String>) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from == "crate" { vec![] } else { from.split("::").collect() };
    match parts.first() {
        Some(&"crate") => {
            base.clear();
            parts.remove(0);
        }
        Some(&"super") => {
            while parts.first() == Some(&"super") {
                base.pop();
                parts.remove(0);
            }
        }
        _ => return None,
    }
    (1..=parts.len()).rev().map(|i| [&base[..], &parts[..i]].concat().join("::")).find(|m| mods.contains_key(m))
}

fn graph(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in mods {
        let bytes = code.as_bytes();
        for start in code.match_indices("crate::").map(|(i, _)| i).chain(code.match_indices("super::").map(|(i, _)| i))
        {
            if start > 0
                && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':')
            {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            let path = code[start..end].trim_end_matches(':');
            if let Some(t) = resolve(m, path, mods)
                && &t != m
                && !m.starts_with(&format!("{t}::"))
                && !t.starts_with(&format!("{m}::"))
            {
                g.entry(m.clone()).or_default().insert(t);
            }
        }
    }
    g
}

/// Strongly connected components with more than one member (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>, nodes: &[String]) -> BTreeSet<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: BTreeSet<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        let i = t.index.len();
        t.index.insert(v.into(), i);
        t.low.insert(v.into(), i);
        t.stack.push(v.into());
        t.on.insert(v.into());
        for w in t.g.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.insert(comp);
            }
        }
    }
    let mut t =
        T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: BTreeSet::new() };
    for n in nodes {
        if !t.index.contains_key(n) {
            visit(&mut t, n);
        }
    }
    t.out
}

fn layer(m: &str) -> usize {
    let top = m.split("::").next().unwrap_or(m);
    LAYERS.iter().position(|l| l.contains(&top)).unwrap_or(LAYERS.len())
}

#[test]
fn no_new_import_circles_between_files() {
    let mods = modules();
    let g = graph(&mods);
    let nodes: Vec<String> = mods.keys().cloned().collect();
    let found = circles(&g, &nodes);
    let known: BTreeSet<Vec<String>> =
        KNOWN_CIRCLES.iter().map(|c| c.iter().map(|s| s.to_string()).collect()).collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(new.is_empty(), "new import circles between files: {new:?}");
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(gone.is_empty(), "circles removed, take them off KNOWN_CIRCLES: {gone:?}");
}

#[test]
fn no_new_imports_from_a_lower_layer_into_a_higher_one() {
    let mods = modules();
    let mut found = BTreeSet::new();
    for (from, tos) in graph(&mods) {
        for to in tos.iter().filter(|to| layer(to) > layer(&from)) {
            found.insert((from.clone(), to.split("::").next().unwrap_or(to).to_string()));
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_UPWARD.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(new.is_empty(), "new imports from a lower layer into a higher one: {new:?}");
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(gone.is_empty(), "upward imports removed, take them off KNOWN_UPWARD: {gone:?}");
}

/// The runtime seam (issue 13): only `rt` and the store's I/O module name the runtime crate; everything
/// else spawns, sleeps, binds and builds executors through `crate::rt`.
#[test]
fn only_the_runtime_seam_names_glommio() {
    let allowed = ["rt", "store::io"];
    let offenders: Vec<String> = modules()
        .into_iter()
        .filter(|(name, _)| !allowed.contains(&name.as_str()))
        .filter(|(_, code)| code.contains("glommio::") || code.contains("use glommio"))
        .map(|(name, _)| name)
        .collect();
    assert!(offenders.is_empty(), "modules naming glommio outside the rt seam: {offenders:?}");
}
