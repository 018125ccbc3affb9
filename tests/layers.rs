//! The layering ARCHITECTURE.md states, checked on the workspace itself:
//! - every dependency between workspace crates is an allowed edge (down the layers, never up or
//!   sideways; heads never see the backbone or each other);
//! - the host-only crates have no candle anywhere in their resolved dependency tree;
//! - inside each crate, no two top-level modules import each other (directly or round a cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the workspace crates it may depend on (normal and dev
/// dependencies). Keep in step with ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("pvt-types", &[]),
    ("pvt-vis", &["pvt-types"]),
    ("pvt-det-ops", &["pvt-types"]),
    ("pvt-eval", &["pvt-types", "pvt-vis"]),
    ("pvt-data", &["pvt-types", "pvt-vis", "pvt-eval"]),
    ("pvt-nn", &["pvt-types"]),
    ("pvt-backbone", &["pvt-nn", "pvt-types"]),
    ("pvt-fpn", &["pvt-nn", "pvt-types"]),
    ("pvt-retinanet", &["pvt-nn", "pvt-types", "pvt-det-ops"]),
    ("pvt-mask-rcnn", &["pvt-nn", "pvt-types", "pvt-det-ops"]),
    ("pvt-semantic-fpn", &["pvt-nn", "pvt-types"]),
    (
        "pvt-zoo",
        &[
            "pvt-backbone",
            "pvt-fpn",
            "pvt-retinanet",
            "pvt-mask-rcnn",
            "pvt-semantic-fpn",
            "pvt-nn",
            "pvt-det-ops",
            "pvt-eval",
            "pvt-types",
        ],
    ),
    (
        "pvt-train",
        &[
            "pvt-zoo",
            "pvt-backbone",
            "pvt-fpn",
            "pvt-retinanet",
            "pvt-mask-rcnn",
            "pvt-semantic-fpn",
            "pvt-nn",
            "pvt-det-ops",
            "pvt-eval",
            "pvt-data",
            "pvt-vis",
            "pvt-types",
        ],
    ),
    (
        "pvt-cli",
        &[
            "pvt-train",
            "pvt-zoo",
            "pvt-backbone",
            "pvt-nn",
            "pvt-eval",
            "pvt-data",
            "pvt-vis",
            "pvt-types",
        ],
    ),
    (
        "pvt-workspace-tests",
        &[
            "pvt-zoo",
            "pvt-backbone",
            "pvt-retinanet",
            "pvt-mask-rcnn",
            "pvt-nn",
            "pvt-det-ops",
            "pvt-types",
        ],
    ),
];

/// Crates that must build without a tensor library.
const HOST_ONLY: &[&str] = &[
    "pvt-types",
    "pvt-vis",
    "pvt-det-ops",
    "pvt-eval",
    "pvt-data",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The host's target triple (`rustc -vV`), so that `cargo metadata` resolves (and needs) only
/// this platform's packages.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn crate_dependencies_follow_the_layers() {
    let m = metadata();
    let members: BTreeSet<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let packages: Vec<&Value> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .collect();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut wrong = Vec::new();
    for p in &packages {
        let name = p["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            wrong.push(format!(
                "{name} is not in the table of tests/layers.rs (add its layer)"
            ));
            continue;
        };
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if names.contains(dep) && !ok.contains(&dep) {
                wrong.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layering of ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
    // every row of the table is a real crate, so that the table cannot go stale
    for name in allowed.keys() {
        assert!(
            names.contains(name),
            "tests/layers.rs lists {name}, which is gone"
        );
    }
}

#[test]
fn host_only_crates_have_no_candle() {
    let m = metadata();
    let by_id: BTreeMap<&str, &Value> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let name_of: BTreeMap<&str, &str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    for krate in HOST_ONLY {
        let (start, _) = name_of
            .iter()
            .find(|(_, n)| *n == krate)
            .unwrap_or_else(|| panic!("{krate} is a workspace crate"));
        // normal (not dev or build) dependencies, transitively
        let mut todo = vec![*start];
        let mut seen = BTreeSet::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            let name = name_of[id];
            assert!(
                !name.starts_with("candle"),
                "{krate} depends on {name} (host-only crates must build without candle)"
            );
            for d in by_id[id]["deps"].as_array().unwrap() {
                let normal = d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null());
                if normal {
                    todo.push(d["pkg"].as_str().unwrap());
                }
            }
        }
    }
}

/// The top-level modules of a crate's `src` and the `crate::` modules each one names in code
/// (comments and `#[cfg(test)]` parts left out).
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let top = first.to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let refs = out.entry(top.clone()).or_default();
            for line in code.lines() {
                let line = line.split("//").next().unwrap_or("");
                let mut rest = line;
                while let Some(i) = rest.find("crate::") {
                    rest = &rest[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // `crate::{a, b}` groups name several modules
                    if name.is_empty() && rest.starts_with('{') {
                        let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
                        for part in group.split(',') {
                            let m: String = part
                                .trim()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            if !m.is_empty() && m != top {
                                refs.insert(m);
                            }
                        }
                    } else if !name.is_empty() && name != top {
                        refs.insert(name);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn no_module_import_cycles() {
    let mut crates = vec![];
    for group in ["crates", "heads"] {
        for e in std::fs::read_dir(root().join(group)).unwrap() {
            crates.push(e.unwrap().path());
        }
    }
    crates.push(root().join("eval"));
    let mut cycles = Vec::new();
    for c in crates {
        let src = c.join("src");
        if !src.is_dir() {
            continue;
        }
        let imports = module_imports(&src);
        // edges between top-level modules only (other names are items re-exported by lib.rs)
        let edges: BTreeMap<&str, Vec<&str>> = imports
            .iter()
            .map(|(m, refs)| {
                let to = refs
                    .iter()
                    .map(String::as_str)
                    .filter(|r| imports.contains_key(*r))
                    .collect();
                (m.as_str(), to)
            })
            .collect();
        // a cycle exists iff some module reaches itself
        for &start in edges.keys() {
            let mut todo: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
            let mut seen = BTreeSet::new();
            while let Some((m, path)) = todo.pop() {
                for &n in &edges[m] {
                    if n == start {
                        let mut p = path.clone();
                        p.push(start);
                        cycles.push(format!("{}: {}", c.display(), p.join(" -> ")));
                    } else if seen.insert(n) {
                        let mut p = path.clone();
                        p.push(n);
                        todo.push((n, p));
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(
        cycles.is_empty(),
        "modules that import each other:\n{}",
        cycles.join("\n")
    );
}
