//! The crate's module hierarchy is one-way: reading the sources, no top-level module imports
//! one that imports it back (directly or through others), the mixer and the shards never
//! import each other (they share only `messages`), and the metrics registry imports no
//! thread's module. Test code (`#[cfg(test)] mod tests`) is left out: a test may reach up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Thread modules: each runs on threads of its own and talks to the others only through
/// `messages`.
const THREADS: [&str; 6] = ["acceptor", "bus", "mixer", "provider", "server", "shard"];

/// Top-level module -> the top-level modules its non-test code names as `crate::<module>`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let deps = graph.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// Every module `from` reaches through imports.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for dep in graph.get(&m).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn the_graph_is_read_from_the_sources() {
    let graph = import_graph();
    // Known edges: if these are missing the reader is broken, not the code clean.
    assert!(graph["shard"].contains("conn"), "{graph:?}");
    assert!(graph["mixer"].contains("messages"), "{graph:?}");
    assert!(graph.len() > 20, "{graph:?}");
}

#[test]
fn no_module_reaches_itself() {
    let graph = import_graph();
    let cycles: Vec<(String, Vec<String>)> = graph
        .keys()
        .filter_map(|m| {
            let back: Vec<String> = graph[m]
                .iter()
                .filter(|dep| reach(&graph, dep).contains(m))
                .cloned()
                .collect();
            (!back.is_empty()).then(|| (m.clone(), back))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "modules in an import cycle (module, the imports that lead back to it): {cycles:?}"
    );
}

#[test]
fn threads_meet_only_through_messages() {
    let graph = import_graph();
    for (a, b) in [("mixer", "shard"), ("shard", "mixer")] {
        assert!(!reach(&graph, a).contains(b), "{a} reaches {b}");
    }
    let metrics = reach(&graph, "metrics");
    for thread in THREADS {
        assert!(!metrics.contains(thread), "metrics reaches {thread}");
    }
    assert!(
        !reach(&graph, "conn").contains("shard"),
        "a connection reaches its shard's loop"
    );
}
