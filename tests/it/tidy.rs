//! The architecture rules of ARCHITECTURE.md, checked on the source text:
//! modules only use modules of lower layers, `unsafe` is allowed only in
//! `sys`, only `cli` prints, and every module starts with a `//!` doc.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which crate modules each top-level module may use (ARCHITECTURE.md's
/// code map). A module absent from this table fails the test: adding a
/// module means deciding its place.
const ALLOWED: &[(&str, &[&str])] = &[
    // Layer 0: leaves; `oci` is the vocabulary the others may share.
    ("sys", &[]),
    ("oci", &[]),
    ("reference", &["oci"]),
    ("progress", &["oci"]),
    ("containerfile", &["oci"]),
    // Layer 1.
    ("registry", &["reference", "oci", "progress"]),
    ("store", &["oci", "reference", "sys"]),
    ("layer", &["oci", "sys"]),
    ("mount", &["sys"]),
    ("runtime", &["mount", "sys", "oci"]),
    // Layer 2. `ingest` is the verified layer intake `pull` and `archive`
    // share (hash, unpack, commit), so it sits below them.
    ("ingest", &["store", "layer", "oci", "progress"]),
    (
        "pull",
        &[
            "registry",
            "ingest",
            "store",
            "layer",
            "oci",
            "reference",
            "progress",
        ],
    ),
    (
        "archive",
        &[
            "ingest",
            "store",
            "layer",
            "oci",
            "reference",
            "progress",
            "sys",
        ],
    ),
    // `push` re-encodes layers for `--compression`, so it uses `layer`.
    (
        "push",
        &[
            "registry",
            "store",
            "layer",
            "oci",
            "reference",
            "progress",
            "sys",
        ],
    ),
    ("check", &["store", "layer", "oci"]),
    ("rootfs", &["store", "mount", "oci"]),
    (
        "container",
        &[
            "store",
            "layer",
            "mount",
            "runtime",
            "rootfs",
            "oci",
            "sys",
            "reference",
        ],
    ),
    // Layer 3.
    (
        "build",
        &[
            "containerfile",
            "pull",
            "container",
            "rootfs",
            "store",
            "layer",
            "mount",
            "oci",
            "reference",
            "progress",
            "registry",
            "runtime",
            "sys",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `path` (or `path` itself).
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Top-level modules: name → files.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(src()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        out.insert(name, rust_files(&p));
    }
    out
}

/// The crate modules a file names: `crate::x`, and `crate::{x, y::z}`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
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
                            used.insert(std::mem::take(&mut item));
                        }
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start && (c.is_alphanumeric() || c == '_') {
                    item.push(c);
                } else if !item.is_empty() {
                    used.insert(std::mem::take(&mut item));
                    at_start = false;
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

#[test]
fn modules_use_only_lower_layers() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, files) in modules() {
        if module == "cli" {
            continue; // the top: may use everything
        }
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` has no place in the layer table of tests/it/tidy.rs"
            ));
            continue;
        };
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for used in crate_uses(&text) {
                if used != module && !may.contains(&used.as_str()) {
                    problems.push(format!(
                        "{}: `{module}` uses `crate::{used}`",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn unsafe_is_allowed_only_in_sys() {
    let sys = src().join("sys");
    let offenders: Vec<String> = rust_files(&src())
        .into_iter()
        .filter(|f| !f.starts_with(&sys))
        .filter(|f| {
            fs::read_to_string(f)
                .unwrap()
                .contains("allow(unsafe_code)")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "`unsafe` allowed outside src/sys: {offenders:?}"
    );
    // And every unsafe block in sys says why it is sound.
    for file in rust_files(&sys) {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap();
            if code.contains("unsafe {") || code.trim_start().starts_with("unsafe {") {
                let window = &lines[i.saturating_sub(8)..=i];
                assert!(
                    window.iter().any(|l| l.contains("SAFETY:")),
                    "{}:{}: unsafe block without a `// SAFETY:` comment",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn only_cli_prints() {
    let cli = src().join("cli");
    let mut offenders = Vec::new();
    // Test-only files (`tests.rs`) may print diagnostics.
    let is_test_file = |f: &Path| f.file_name().is_some_and(|n| n == "tests.rs");
    for file in rust_files(&src())
        .into_iter()
        .filter(|f| !f.starts_with(&cli) && !is_test_file(f))
    {
        let text = fs::read_to_string(&file).unwrap();
        // Test modules may print diagnostics.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap();
            if ["println!", "eprintln!", "print!(", "eprint!("]
                .iter()
                .any(|m| line.contains(m))
            {
                offenders.push(format!("{}:{}", file.display(), n + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "printing outside cli: {offenders:?}");
}

#[test]
fn every_module_file_starts_with_a_module_doc() {
    let mut missing = Vec::new();
    for file in rust_files(&src()) {
        let name = file.file_name().unwrap().to_string_lossy();
        // Module roots and top-level files carry the doc; a `tests.rs` or
        // an `error.rs` is described by its parent.
        let is_root = name == "mod.rs" || file.parent() == Some(src().as_path());
        if !is_root || name == "main.rs" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        if !text.trim_start().starts_with("//!") {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "module files without a `//!` doc: {missing:?}"
    );
}

#[test]
fn crate_uses_parses_both_forms() {
    let uses = crate_uses(
        "use crate::oci::{Digest, DiffId};\nuse crate::{layer, store::{Store, LockMode}};\nlet x = crate::pull::pull();",
    );
    assert_eq!(
        uses,
        ["layer", "oci", "pull", "store"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
