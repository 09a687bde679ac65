//! The store after real pulls matches store-layout.md: the documented tree
//! (parsed from the document itself, so the two cannot drift apart), the
//! file formats it describes, the overlay form of whiteouts, and the
//! "checking a store by hand" commands, which are run as written.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{TestEnv, process, serve_fixture, tree};

fn store_layout_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("store-layout.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The first fenced block of `lang` after the heading line `heading`.
fn fenced_block(doc: &str, heading: &str, lang: &str) -> String {
    let start = doc
        .lines()
        .position(|l| l.trim() == heading)
        .unwrap_or_else(|| panic!("store-layout.md has no heading {heading:?}"));
    let mut lines = doc
        .lines()
        .skip(start + 1)
        .skip_while(|l| l.trim() != format!("```{lang}"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no ```{lang} block under {heading:?}"));
    lines
        .take_while(|l| l.trim() != "```")
        .collect::<Vec<_>>()
        .join("\n")
}

/// One documented path, as components; `<…>` marks a variable part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pattern {
    components: Vec<String>,
    dir: bool,
}

impl Pattern {
    fn parse(path: &str) -> Pattern {
        Pattern {
            components: path
                .trim_end_matches('/')
                .split('/')
                .map(str::to_string)
                .collect(),
            dir: path.ends_with('/'),
        }
    }

    fn matches(&self, rel: &Path) -> bool {
        let comps: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        comps.len() == self.components.len()
            && self
                .components
                .iter()
                .zip(&comps)
                .all(|(p, c)| component_matches(p, c))
    }

    /// Whether some documented path lies strictly below this one.
    fn has_children(&self, all: &[Pattern]) -> bool {
        all.iter().any(|o| {
            o.components.len() > self.components.len()
                && o.components[..self.components.len()] == self.components[..]
        })
    }

    /// Transient: under `tmp/<…>` or an `incomplete` marker. Need not exist.
    fn transient(&self) -> bool {
        self.components.last().is_some_and(|c| c == "incomplete")
            || self
                .components
                .windows(2)
                .any(|w| w[0] == "tmp" && w[1].contains('<'))
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            self.components.join("/"),
            if self.dir { "/" } else { "" }
        )
    }
}

/// `txn-<random>` matches `txn-abc`; `<hex>` matches anything non-empty.
fn component_matches(pattern: &str, actual: &str) -> bool {
    match (pattern.find('<'), pattern.find('>')) {
        (Some(a), Some(b)) if a < b => {
            let (prefix, suffix) = (&pattern[..a], &pattern[b + 1..]);
            actual.len() > prefix.len() + suffix.len()
                && actual.starts_with(prefix)
                && actual.ends_with(suffix)
        }
        _ => pattern == actual,
    }
}

/// Parses the tree drawing under "## The tree" into path patterns relative
/// to ROOT, adding the parent directories that a multi-component line such
/// as `blobs/sha256/<hex>` implies and expanding `a/{b/,c}`.
fn documented_tree(doc: &str) -> Vec<Pattern> {
    let block = fenced_block(doc, "## The tree", "text");
    let mut lines = block.lines();
    let first = lines.next().expect("tree block is empty");
    assert!(
        first.trim_start().starts_with("ROOT/"),
        "tree block starts with ROOT/: {first:?}"
    );
    let mut stack: Vec<String> = vec![String::new()]; // parent path per depth
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for line in lines {
        let prefix_len = line
            .chars()
            .take_while(|c| "│├└─ \u{a0}".contains(*c))
            .count();
        let rest: String = line.chars().skip(prefix_len).collect();
        let Some(name) = rest.split_whitespace().next() else {
            continue;
        };
        let depth = prefix_len / 4;
        assert!(
            depth >= 1 && depth <= stack.len(),
            "cannot place {line:?} in the tree"
        );
        stack.truncate(depth);
        let parent = stack[depth - 1].clone();
        let expanded: Vec<String> = match (name.find('{'), name.find('}')) {
            (Some(a), Some(b)) => name[a + 1..b]
                .split(',')
                .map(|alt| format!("{}{alt}{}", &name[..a], &name[b + 1..]))
                .collect(),
            _ => vec![name.to_string()],
        };
        for n in &expanded {
            let full = format!("{parent}{n}");
            // Implied parents: `blobs/` and `blobs/sha256/` for `blobs/sha256/<hex>`.
            let mut acc = String::new();
            for part in full
                .trim_end_matches('/')
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .unwrap()
                .1
            {
                acc.push_str(part);
                acc.push('/');
                paths.insert(acc.clone());
            }
            paths.insert(full);
        }
        if expanded.len() == 1 && name.ends_with('/') {
            stack.push(format!("{parent}{name}"));
        }
    }
    paths.iter().map(|p| Pattern::parse(p)).collect()
}

/// Walks the store, descending only where the document lists children;
/// returns (path, matching pattern) pairs and the undocumented paths.
fn walk_store(root: &Path, patterns: &[Pattern]) -> (Vec<(PathBuf, Pattern)>, Vec<PathBuf>) {
    let mut found = Vec::new();
    let mut undocumented = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            let is_dir = entry.file_type().unwrap().is_dir();
            match patterns
                .iter()
                .find(|p| p.dir == is_dir && p.matches(&child))
            {
                Some(p) => {
                    if is_dir && p.has_children(patterns) {
                        todo.push(child.clone());
                    }
                    found.push((child, p.clone()));
                }
                None => undocumented.push(child),
            }
        }
    }
    found.sort();
    undocumented.sort();
    (found, undocumented)
}

/// The tree drawing parses, and lists the paths the store's own code and
/// this file rely on.
#[test]
fn store_layout_md_tree_parses() {
    let patterns = documented_tree(&store_layout_md());
    let listed: BTreeSet<String> = patterns.iter().map(|p| p.to_string()).collect();
    for must in [
        "oci/",
        "oci/oci-layout",
        "oci/index.json",
        "oci/blobs/",
        "oci/blobs/sha256/",
        "oci/blobs/sha256/<hex>",
        "version",
        "tmp/",
        "layers/",
    ] {
        assert!(
            listed.contains(must),
            "store-layout.md's tree lacks {must}; it lists {listed:#?}"
        );
    }
    assert!(
        patterns.iter().any(|p| p.transient()),
        "nothing in the tree is marked transient: {listed:#?}"
    );
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// After pulling two images and mounting one, every path in the store is
/// one store-layout.md documents, every documented (non-transient) path
/// exists, and the files hold what the document says.
#[test]
fn store_tree_matches_store_layout_md() {
    let doc = store_layout_md();
    let patterns = documented_tree(&doc);
    for must in ["oci/oci-layout", "oci/index.json", "oci/blobs/sha256/<hex>"] {
        assert!(
            patterns.iter().any(|p| p.to_string() == must),
            "the tree does not list {must}: {patterns:#?}"
        );
    }

    let env = TestEnv::new();
    let (busybox, bb) = serve_fixture("busybox");
    let (multilayer, ml) = serve_fixture("multilayer");
    env.pull_plain(&busybox, &[]);
    env.pull_plain(&multilayer, &[]);
    let mounted = env.mount(&busybox);
    // A kept container, run by runc so that its runtime state dir exists too.
    env.builder(&[
        "run",
        "--name",
        "kept",
        "--runtime",
        "runc",
        &busybox,
        "true",
    ])
    .success();
    // A build, so that the build cache exists too.
    let ctx = env.scratch("ctx");
    std::fs::write(ctx.join("f"), "x").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {busybox}\nCOPY f /f\nRUN echo built > /g\n"),
    )
    .unwrap();
    env.builder(&["build", "-q", "-t", "built", ctx.to_str().unwrap()])
        .success();

    let (found, undocumented) = walk_store(&env.root, &patterns);
    assert!(
        undocumented.is_empty(),
        "paths in the store that store-layout.md does not document: {undocumented:#?}"
    );
    let missing: Vec<String> = patterns
        .iter()
        .filter(|p| !p.transient())
        .filter(|p| !found.iter().any(|(_, q)| q == *p))
        .map(|p| p.to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "documented paths missing after pull + mount: {missing:?}"
    );

    // oci-layout and index.json: an OCI layout naming images by full reference.
    let layout = read_json(&env.root.join("oci/oci-layout"));
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index = read_json(&env.root.join("oci/index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let entries = index["manifests"].as_array().unwrap();
    for (reference, fixture) in [(&busybox, bb), (&multilayer, ml)] {
        let entry = entries
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == **reference)
            .unwrap_or_else(|| panic!("index.json does not name {reference}: {index:#}"));
        assert_eq!(entry["digest"], *fixture.digest(), "{reference}");
        assert_eq!(entry["size"], fixture.manifest_bytes.len(), "{reference}");
        assert_eq!(
            entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{reference}"
        );
    }

    // Blobs: named by their sha256, read-only, and every blob of both images.
    let blob_dir = env.root.join("oci/blobs/sha256");
    for entry in fs::read_dir(&blob_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let digest = crate::support::fixtures::sha256_digest(&fs::read(&path).unwrap());
        assert_eq!(
            digest,
            format!("sha256:{name}"),
            "blob {name} does not hash to its name"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "blob {name} mode {mode:o}");
    }
    for fixture in [bb, ml] {
        let image = fixture.image();
        for d in std::iter::once(&image.config_digest).chain(image.layers.iter().map(|l| &l.1)) {
            assert!(
                blob_dir.join(d.strip_prefix("sha256:").unwrap()).is_file(),
                "blob {d} missing"
            );
        }
    }

    // Beside oci/: version, one layer dir per diffID with an inventory, no
    // leftovers in tmp/.
    let builder = env.root.clone();
    assert_eq!(
        fs::read_to_string(builder.join("version")).unwrap().trim(),
        "1"
    );
    let layer_dirs: BTreeSet<String> = fs::read_dir(builder.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let built = env.builder(&["inspect", "built"]).success().json();
    let built_layers: Vec<String> = built["config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        built_layers.len(),
        3,
        "busybox + COPY + RUN: {built_layers:?}"
    );
    let diff_ids: BTreeSet<String> = [bb, ml]
        .iter()
        .flat_map(|f| f.image().diff_ids.iter())
        .chain(&built_layers)
        .map(|d| d.strip_prefix("sha256:").unwrap().to_string())
        .collect();
    assert_eq!(
        layer_dirs, diff_ids,
        "layers/ holds one directory per diffID"
    );
    for hex in &layer_dirs {
        let dir = builder.join("layers").join(hex);
        assert!(dir.join("diff").is_dir());
        assert!(
            !dir.join("incomplete").exists(),
            "layer {hex} is still marked incomplete"
        );
        read_json(&dir.join("inventory.json"));
    }
    assert_eq!(
        fs::read_dir(builder.join("tmp")).unwrap().count(),
        0,
        "tmp/ not empty after pulls"
    );

    // mounts/<manifest-hex>/: a record and the mountpoint in use.
    let mount_dir = builder
        .join("mounts")
        .join(bb.digest().strip_prefix("sha256:").unwrap());
    assert_eq!(
        mounted,
        mount_dir.join("merged"),
        "`builder mount` prints the documented mountpoint"
    );
    let record = read_json(&mount_dir.join("record.json"));
    for key in ["name", "manifest", "layers"] {
        assert!(
            record.get(key).is_some(),
            "record.json lacks `{key}`: {record:#}"
        );
    }
    env.umount(&busybox, &mounted);

    // containers/<id>/: the record names the container, its image and
    // layers (live for prune); config.json is an OCI runtime spec whose
    // root is the container's own mountpoint.
    let ids: Vec<_> = fs::read_dir(builder.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let record = read_json(&ids[0].join("container.json"));
    assert_eq!(record["name"], "kept");
    assert_eq!(record["state"]["status"], "exited");
    assert_eq!(
        record["layers"].as_array().unwrap().len(),
        bb.image().diff_ids.len()
    );
    let spec = read_json(&ids[0].join("config.json"));
    assert_eq!(
        spec["root"]["path"].as_str().unwrap(),
        ids[0].join("merged").to_str().unwrap()
    );
    env.builder(&["rm", "kept"]).success();
}

/// Whiteouts are stored in overlayfs form, as the document's table says:
/// `.wh.NAME` → a 0:0 character device NAME, `.wh..wh..opq` → the
/// `trusted.overlay.opaque=y` xattr; no `.wh.` file survives in any `diff/`.
#[test]
fn layers_hold_whiteouts_in_overlay_form() {
    let env = TestEnv::new();
    let (reference, ml) = serve_fixture("multilayer");
    env.pull_plain(&reference, &[]);
    let layer = |i: usize| {
        env.root
            .join("layers")
            .join(ml.image().diff_ids[i].strip_prefix("sha256:").unwrap())
            .join("diff")
    };
    let second = layer(1);
    for name in ["data/remove-me", "data/remove-dir"] {
        let meta =
            fs::symlink_metadata(second.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            meta.file_type().is_char_device(),
            "{name} is not a whiteout device"
        );
        assert_eq!(meta.rdev(), 0, "{name} is not device 0:0");
    }
    let opaque = tree::xattrs_raw(&second.join("opt/app"));
    assert_eq!(
        opaque.get("trusted.overlay.opaque").map(Vec::as_slice),
        Some(&b"y"[..]),
        "opt/app: {opaque:?}"
    );
    let third = layer(2);
    let opaque = tree::xattrs_raw(&third.join("opt/keep"));
    assert_eq!(
        opaque.get("trusted.overlay.opaque").map(Vec::as_slice),
        Some(&b"y"[..]),
        "opt/keep: {opaque:?}"
    );
    // The layer below must not be marked opaque.
    assert!(!tree::xattrs_raw(&layer(0).join("opt/app")).contains_key("trusted.overlay.opaque"));
    for i in 0..ml.image().diff_ids.len() {
        for entry in walkdir::WalkDir::new(layer(i)) {
            let entry = entry.unwrap();
            assert!(
                !entry.file_name().to_string_lossy().starts_with(".wh."),
                "{} kept its OCI whiteout name",
                entry.path().display()
            );
        }
    }
}

/// The "Checking a store by hand" commands of store-layout.md, run as
/// written (with ROOT pointed at a real store and `builder` on PATH).
#[test]
fn store_layout_md_check_commands_run() {
    let doc = store_layout_md();
    let script = fenced_block(&doc, "## Checking a store by hand", "sh");
    let env = TestEnv::new();
    let (reference, _) = serve_fixture("busybox");
    env.pull_plain(&reference, &[]);
    let script: String = script
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ROOT=") {
                format!("ROOT={}", env.root.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bin_dir = TestEnv::bin().parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("BUILDER_NO_PROGRESS", "1");
    process::run_ok(cmd);
}
