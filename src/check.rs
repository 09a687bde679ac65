//! `check`: verifies a whole store. Every blob is re-hashed, every named
//! image's manifest, config, layer blobs and unpacked layers are looked up
//! (for a manifest list: its index and each child image's)
//! (and every build cache record's layer blob and unpacked layer),
//! and every unpacked layer directory is compared with the inventory written
//! when it was unpacked. It reports; it never repairs.
//!
//! Lives above `store` and `layer` because it needs both: the store knows
//! where things are, the layer module knows what an unpacked tree must
//! look like.

use serde::Serialize;

use crate::layer::inventory::{self, Inventory};
use crate::oci::{ImageConfig, Manifest};
use crate::store::{Reached, Store, StoreError};

/// What `check` found. `problems` empty means the store is intact.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub blobs_checked: u64,
    pub blob_bytes_checked: u64,
    pub layers_checked: u64,
    pub images_checked: u64,
    /// Manifest lists checked (their child images are checked with them).
    pub lists_checked: u64,
    pub cache_records_checked: u64,
    pub problems: Vec<Problem>,
}

/// One thing wrong, with the object it concerns.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// What is affected: `blob sha256:…`, `layer sha256:…`, `image NAME`.
    pub object: String,
    pub problem: String,
}

impl CheckReport {
    fn problem(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            problem: problem.into(),
        });
    }
}

/// Checks the store; only errors that stop the check itself (an unreadable
/// directory listing) are returned as `Err`.
pub fn check(store: &Store) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();

    let (blobs, strays) = store.list_blobs()?;
    for stray in strays {
        report.problem(
            stray.display().to_string(),
            "file in blobs/sha256 whose name is not a digest",
        );
    }
    for digest in &blobs {
        match store.verify_blob(digest) {
            Ok(bytes) => report.blob_bytes_checked += bytes,
            Err(e) => report.problem(format!("blob {digest}"), error_chain(&e)),
        }
        report.blobs_checked += 1;
    }

    for record in store.list_images()? {
        if record.is_list() {
            report.lists_checked += 1;
        } else {
            report.images_checked += 1;
        }
        let kind = if record.is_list() {
            "manifest list"
        } else {
            "image"
        };
        let object = format!("{kind} {}", record.name);
        for reached in store.reachable(&record)? {
            let (descriptor, manifest) = match reached {
                Reached::Index { error: None, .. } => continue,
                Reached::Index {
                    error: Some(e),
                    descriptor,
                } => {
                    report.problem(
                        object.clone(),
                        format!("index {}: {}", descriptor.digest, error_chain(&e)),
                    );
                    continue;
                }
                Reached::Image {
                    descriptor,
                    manifest,
                } => (descriptor, manifest),
            };
            // A list names its children by digest; say which one is damaged.
            let what = if record.is_list() {
                let platform = descriptor
                    .platform
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                format!("image {}{platform}: ", descriptor.digest)
            } else {
                String::new()
            };
            match manifest {
                Ok(manifest) => check_image(store, &mut report, &object, &what, &manifest),
                Err(e) => report.problem(
                    object.clone(),
                    format!("{what}manifest: {}", error_chain(&e)),
                ),
            }
        }
    }

    for entry in store.list_cache()? {
        report.cache_records_checked += 1;
        let object = format!("cache record {}", entry.key);
        let Some(record) = entry.record else {
            report.problem(
                object,
                format!(
                    "`{}` is unreadable; `builder prune --all` drops the cache",
                    entry.path.display()
                ),
            );
            continue;
        };
        if !store.has_blob(&record.layer.digest) {
            report.problem(
                object.clone(),
                format!("layer blob {} is missing", record.layer.digest),
            );
        }
        if !store.has_layer(&record.diff_id) {
            report.problem(object, format!("layer {} is not unpacked", record.diff_id));
        }
    }

    for layer in store.list_layers()? {
        let object = format!("layer {}", layer.diff_id);
        if !layer.complete {
            report.problem(
                object,
                "incomplete (an interrupted write or removal); `builder prune` removes it",
            );
            continue;
        }
        report.layers_checked += 1;
        let expected: Inventory = match std::fs::read(layer.inventory_path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(inv) => inv,
            Err(e) => {
                report.problem(object, format!("inventory unreadable: {e}"));
                continue;
            }
        };
        match inventory::scan(&layer.diff_path()) {
            Ok(actual) => {
                for mismatch in inventory::compare(&expected, &actual) {
                    report.problem(object.clone(), mismatch.to_string());
                }
            }
            Err(e) => report.problem(object, format!("scan: {}", error_chain(&e))),
        }
    }
    Ok(report)
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Checks that an image manifest's config and layer blobs are stored and
/// its layers unpacked; `what` prefixes each problem (which child of a list).
fn check_image(
    store: &Store,
    report: &mut CheckReport,
    object: &str,
    what: &str,
    manifest: &Manifest,
) {
    for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if !store.has_blob(&desc.digest) {
            report.problem(object, format!("{what}blob {} is missing", desc.digest));
        }
    }
    let config = store
        .read_blob(&manifest.config.digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<ImageConfig>(&b).ok());
    let Some(config) = config else {
        report.problem(
            object,
            format!(
                "{what}config {} is missing or invalid",
                manifest.config.digest
            ),
        );
        return;
    };
    for diff_id in config.rootfs.diff_ids {
        if !store.has_layer(&diff_id) {
            report.problem(
                object,
                format!("{what}layer {diff_id} is not unpacked; pull the image again"),
            );
        }
    }
}
