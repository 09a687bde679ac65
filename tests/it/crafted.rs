//! Images no well-behaved tool writes but registries serve anyway: made
//! here by editing a fixture's manifest and config by hand, then pushed
//! with skopeo (which keeps the bytes as they are).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::fixtures::{self, sha256_digest};
use crate::support::{Registry, TestEnv};

/// Writes `bytes` as a blob of `layout`; returns its digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    fs::write(
        layout.join("blobs/sha256").join(&digest["sha256:".len()..]),
        bytes,
    )
    .unwrap();
    digest
}

/// A copy of the `derived` fixture's layout (busybox + one layer) whose
/// manifest lists `layers` (indexes into the original's layers) and whose
/// config lists `diff_ids` (indexes into the original's diff_ids).
fn craft(env: &TestEnv, name: &str, layers: &[usize], diff_ids: &[usize]) -> PathBuf {
    let fixture = fixtures::ensure().get("derived");
    let src = fixtures::ensure().dir.join("derived");
    let layout = env.scratch(name);
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for entry in fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(
            entry.path(),
            layout.join("blobs/sha256").join(entry.file_name()),
        )
        .unwrap();
    }
    fs::copy(src.join("oci-layout"), layout.join("oci-layout")).unwrap();
    let image = fixture.image();
    let read = |d: &str| -> Value {
        serde_json::from_slice(
            &fs::read(src.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap(),
        )
        .unwrap()
    };
    let mut manifest = read(&image.manifest_digest);
    let mut config = read(&image.config_digest);
    let orig_layers = manifest["layers"].as_array().unwrap().clone();
    let orig_diffs = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
    manifest["layers"] = Value::Array(layers.iter().map(|&i| orig_layers[i].clone()).collect());
    config["rootfs"]["diff_ids"] =
        Value::Array(diff_ids.iter().map(|&i| orig_diffs[i].clone()).collect());
    if let Some(history) = config.get_mut("history") {
        *history = json!([]);
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(put_blob(&layout, &config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_blob(&layout, &manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    layout
}

/// An image listing a layer twice (as Docker's repeated empty layer does)
/// pulls, checks clean, and mounts: the kernel would refuse the same
/// lowerdir twice, so each layer is mounted once, at its topmost place.
#[test]
fn an_image_repeating_a_layer_pulls_and_mounts() {
    let env = TestEnv::new();
    let layout = craft(&env, "repeated", &[0, 1, 0], &[0, 1, 0]);
    let registry = Registry::shared();
    registry.push_oci(&layout, "latest", "crafted/repeated:latest");
    let reference = registry.reference("crafted/repeated:latest");
    env.pull_plain(&reference, &[]);
    env.assert_check_clean();
    let mounted = env.mount(&reference);
    // busybox's shell is there, and so is the derived layer's file.
    assert!(mounted.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_to_string(mounted.join("etc/derived")).unwrap(),
        "derived from busybox\n"
    );
    env.umount(&reference, &mounted);
}

/// One blob must mean one diffID: otherwise the second diffID would be
/// named without ever being verified.
#[test]
fn a_blob_listed_with_two_diff_ids_is_refused() {
    let env = TestEnv::new();
    let layout = craft(&env, "two-diffids", &[0, 0], &[0, 1]);
    let registry = Registry::shared();
    registry.push_oci(&layout, "latest", "crafted/two-diffids:latest");
    let reference = registry.reference("crafted/two-diffids:latest");
    env.builder(&["pull", "--tls-verify=false", &reference])
        .failure()
        .stderr_has("listed twice with different diffIDs");
    let images = env.builder(&["images", "--json"]).success().json();
    assert_eq!(images.as_array().unwrap().len(), 0, "nothing was named");
}
