//! Fixture images, made by independent tools (umoci, skopeo, GNU tar,
//! busybox-static) in `tests/fixtures/build.sh`, never by builder.
//!
//! [`ensure`] runs that script once per test process; the script caches its
//! output under `target/tmp/fixtures/v<N>-<script hash>/` and serialises
//! concurrent builders with a flock, so parallel tests and test processes
//! can all call it. A [`Fixture`] knows how to push itself (its skopeo source)
//! and which OCI layout and tag `umoci unpack` should read to produce the
//! root filesystem builder must reproduce.
//!
//! Facts about a fixture (digests, media types) are read here with plain
//! serde_json and sha2, not with builder's `oci` module, so a bug there cannot
//! hide in both sides of an assertion.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::process;

/// Every fixture, in a stable order.
pub const ALL: &[&str] = &[
    "busybox",
    "derived",
    "umoci-insert",
    "multilayer",
    "multiarch",
    "zstd",
    "uncompressed",
    "docker",
    "large",
];

/// The built fixtures.
pub struct Fixtures {
    /// `target/tmp/fixtures/v<N>-<hash>/`.
    pub dir: PathBuf,
    fixtures: Vec<Fixture>,
}

/// One fixture image.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: &'static str,
    /// What `skopeo copy` reads to push it: `oci:DIR:latest` or `dir:DIR`.
    pub source: String,
    /// The manifest (or, for `multiarch`, index) as skopeo pushes it with
    /// `--preserve-digests`: its bytes and digest are what a registry serves.
    pub manifest_bytes: Vec<u8>,
    /// One entry per platform the image has.
    pub platforms: Vec<PlatformImage>,
}

/// One platform's image of a fixture and where its reference rootfs comes from.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Digest of this platform's image manifest.
    pub manifest_digest: String,
    /// Digest of its config (the image ID).
    pub config_digest: String,
    /// Layer descriptors of the manifest: `(media type, digest, size)`.
    pub layers: Vec<(String, String, u64)>,
    /// The config's `rootfs.diff_ids`.
    pub diff_ids: Vec<String>,
    /// An OCI layout and tag `umoci unpack` can read whose root filesystem
    /// is this image's. It is the image itself except where umoci 0.4.7
    /// cannot read it (zstd layers, Docker schema2): then it is the image it
    /// was converted from, and [`Fixtures::ensure`] has checked that the two
    /// configs — and so the diff_ids — are byte-identical.
    pub unpack_layout: PathBuf,
    pub unpack_tag: String,
}

/// Builds (or finds cached) fixtures; panics with the script's output if that
/// fails.
pub fn ensure() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let cache = cache_dir();
        let mut cmd = Command::new(script_path());
        cmd.arg(&cache);
        let stdout = process::run_ok(cmd);
        let dir = PathBuf::from(stdout.trim());
        assert!(
            dir.join(".complete").is_file(),
            "fixtures script printed {dir:?}, which is not complete"
        );
        let fixtures = ALL.iter().map(|name| Fixture::load(&dir, name)).collect();
        Fixtures { dir, fixtures }
    })
}

/// `tests/fixtures/build.sh` in this checkout.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build.sh")
}

/// Where the script caches fixtures: `target/tmp/fixtures`.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures")
}

impl Fixtures {
    /// The fixture called `name` (one of [`ALL`]).
    pub fn get(&self, name: &str) -> &Fixture {
        self.fixtures
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fixture called `{name}`; have {ALL:?}"))
    }

    pub fn all(&self) -> &[Fixture] {
        &self.fixtures
    }
}

impl Fixture {
    fn load(dir: &Path, name: &'static str) -> Fixture {
        let layout = dir.join(name);
        match name {
            "docker" => {
                // A skopeo `dir:` copy of multilayer converted to schema2.
                let manifest_bytes = read(&layout.join("manifest.json"));
                let manifest: Value = json(&manifest_bytes);
                let reference = Self::load(dir, "multilayer");
                let base = &reference.platforms[0];
                let image = platform_image(
                    "linux/amd64",
                    &manifest_bytes,
                    &read(&layout.join(hex_of(&manifest["config"]["digest"]))),
                    base.unpack_layout.clone(),
                    base.unpack_tag.clone(),
                );
                assert_eq!(
                    image.diff_ids, base.diff_ids,
                    "docker fixture must have multilayer's diff_ids"
                );
                Fixture {
                    name,
                    source: format!("dir:{}", layout.display()),
                    manifest_bytes,
                    platforms: vec![image],
                }
            }
            _ => {
                let (manifest_bytes, top) = layout_manifest(&layout, "latest");
                let platforms = if top["mediaType"] == "application/vnd.oci.image.index.v1+json" {
                    top["manifests"]
                        .as_array()
                        .expect("index has manifests")
                        .iter()
                        .map(|m| {
                            let p = &m["platform"];
                            let mut platform = format!(
                                "{}/{}",
                                p["os"].as_str().unwrap(),
                                p["architecture"].as_str().unwrap()
                            );
                            if let Some(v) = p["variant"].as_str() {
                                platform = format!("{platform}/{v}");
                            }
                            let bytes = read(&blob(&layout, &m["digest"]));
                            let config = read(&blob(&layout, &json(&bytes)["config"]["digest"]));
                            // The script tags each platform's manifest by arch.
                            let tag = p["architecture"].as_str().unwrap().to_string();
                            platform_image(&platform, &bytes, &config, layout.clone(), tag)
                        })
                        .collect()
                } else {
                    let config = read(&blob(&layout, &top["config"]["digest"]));
                    let (unpack_layout, unpack_tag) = match name {
                        // umoci 0.4.7 cannot read zstd layers; zstd is busybox recompressed.
                        "zstd" => (dir.join("busybox"), "latest".to_string()),
                        _ => (layout.clone(), "latest".to_string()),
                    };
                    let image = platform_image(
                        "linux/amd64",
                        &manifest_bytes,
                        &config,
                        unpack_layout,
                        "latest".into(),
                    );
                    let image = PlatformImage {
                        unpack_tag,
                        ..image
                    };
                    if name == "zstd" {
                        let base = Self::load(dir, "busybox");
                        assert_eq!(
                            image.config_digest, base.platforms[0].config_digest,
                            "zstd fixture must share busybox's config"
                        );
                    }
                    vec![image]
                };
                Fixture {
                    name,
                    source: format!("oci:{}:latest", layout.display()),
                    manifest_bytes,
                    platforms,
                }
            }
        }
    }

    /// Digest of what a registry serves for the tag (manifest or index).
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest_bytes)
    }

    /// Whether the tag names an image index.
    pub fn is_index(&self) -> bool {
        self.platforms.len() > 1
    }

    /// The single platform image (panics for an index).
    pub fn image(&self) -> &PlatformImage {
        assert_eq!(
            self.platforms.len(),
            1,
            "fixture {} has several platforms",
            self.name
        );
        &self.platforms[0]
    }

    /// The image for `platform` (`os/arch[/variant]`).
    pub fn platform(&self, platform: &str) -> &PlatformImage {
        self.platforms
            .iter()
            .find(|p| p.platform == platform || p.platform.starts_with(&format!("{platform}/")))
            .unwrap_or_else(|| panic!("fixture {} has no platform {platform}", self.name))
    }
}

impl PlatformImage {
    /// `umoci unpack`s the reference image into `bundle` (which must not
    /// exist) and returns its `rootfs/`.
    pub fn umoci_unpack(&self, bundle: &Path) -> PathBuf {
        let mut cmd = Command::new("umoci");
        cmd.arg("unpack")
            .arg("--image")
            .arg(format!(
                "{}:{}",
                self.unpack_layout.display(),
                self.unpack_tag
            ))
            .arg(bundle);
        process::run_ok(cmd);
        bundle.join("rootfs")
    }
}

fn platform_image(
    platform: &str,
    manifest_bytes: &[u8],
    config_bytes: &[u8],
    unpack_layout: PathBuf,
    unpack_tag: String,
) -> PlatformImage {
    let manifest: Value = json(manifest_bytes);
    let config: Value = json(config_bytes);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        config_digest,
        sha256_digest(config_bytes),
        "config blob hashes to its digest"
    );
    PlatformImage {
        platform: platform.to_string(),
        manifest_digest: sha256_digest(manifest_bytes),
        config_digest,
        layers: manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["mediaType"].as_str().unwrap().to_string(),
                    l["digest"].as_str().unwrap().to_string(),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect(),
        diff_ids: config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect(),
        unpack_layout,
        unpack_tag,
    }
}

/// The bytes and parsed JSON of the manifest (or index) tagged `tag`.
fn layout_manifest(layout: &Path, tag: &str) -> (Vec<u8>, Value) {
    let index: Value = json(&read(&layout.join("index.json")));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{} has no tag {tag}", layout.display()));
    let bytes = read(&blob(layout, &desc["digest"]));
    let value = json(&bytes);
    (bytes, value)
}

fn blob(layout: &Path, digest: &Value) -> PathBuf {
    layout.join("blobs/sha256").join(hex_of(digest))
}

fn hex_of(digest: &Value) -> String {
    digest
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
        .to_string()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("fixture JSON parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::Registry;

    /// Entry names of a layer blob, listed by GNU tar (`-a` picks the
    /// decompressor from the media type we pass via a suffix-less `-I`).
    fn tar_names(blob: &Path, media_type: &str) -> Vec<String> {
        let mut cmd = Command::new("tar");
        match media_type {
            t if t.ends_with("gzip") => {
                cmd.arg("-z");
            }
            t if t.ends_with("zstd") => {
                cmd.arg("--zstd");
            }
            _ => {}
        }
        cmd.arg("-tf").arg(blob);
        process::run_ok(cmd).lines().map(str::to_string).collect()
    }

    fn layer_blob(f: &Fixture, digest: &str) -> PathBuf {
        let dir = ensure().dir.join(f.name);
        match f.name {
            "docker" => dir.join(digest.strip_prefix("sha256:").unwrap()),
            _ => dir
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        }
    }

    #[test]
    fn fixtures_have_the_features_they_claim() {
        let fx = ensure();

        let ml = fx.get("multilayer").image();
        assert_eq!(ml.layers.len(), 3);
        let names: Vec<String> = ml
            .layers
            .iter()
            .flat_map(|(t, d, _)| tar_names(&layer_blob(fx.get("multilayer"), d), t))
            .collect();
        for needle in [
            "data/.wh.remove-me",
            "data/.wh.remove-dir",
            "opt/app/.wh..wh..opq",
            "opt/keep/.wh..wh..opq",
            "var/cache",
            "data/hl-b",
            "dev/testnull",
        ] {
            assert!(
                names.iter().any(|n| n == needle),
                "multilayer lacks {needle}"
            );
        }
        assert!(
            names.iter().any(|n| n.len() > 100),
            "multilayer has no long path"
        );

        for (name, media_type) in [
            ("busybox", "application/vnd.oci.image.layer.v1.tar+gzip"),
            ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
            ("uncompressed", "application/vnd.oci.image.layer.v1.tar"),
            (
                "docker",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        ] {
            for (t, _, _) in &fx.get(name).image().layers {
                assert_eq!(t, media_type, "{name} layer media type");
            }
        }
        assert_eq!(
            json(&fx.get("docker").manifest_bytes)["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );

        let ma = fx.get("multiarch");
        assert!(ma.is_index());
        let platforms: Vec<&str> = ma.platforms.iter().map(|p| p.platform.as_str()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert_ne!(
            ma.platform("linux/amd64").diff_ids,
            ma.platform("linux/arm64").diff_ids
        );

        // derived shares busybox's base layer blob.
        let bb = fx.get("busybox").image();
        let derived = fx.get("derived").image();
        assert_eq!(derived.layers[0], bb.layers[0]);
        assert_eq!(derived.layers.len(), 2);

        let large = fx.get("large").image();
        let compressed: u64 = large.layers.iter().map(|l| l.2).sum();
        assert!(
            compressed > 100_000_000,
            "large is only {compressed} bytes compressed"
        );
        let files: usize = large
            .layers
            .iter()
            .map(|(t, d, _)| tar_names(&layer_blob(fx.get("large"), d), t).len())
            .sum();
        assert!(files > 25_000, "large has only {files} entries");
    }

    #[test]
    fn oci_fixtures_pass_oci_image_tool() {
        let fx = ensure();
        // oci-image-tool 1.0.0-rc1 predates zstd layers (image-spec 1.1), and
        // `docker` is not an OCI layout.
        for f in fx
            .all()
            .iter()
            .filter(|f| !["zstd", "docker"].contains(&f.name))
        {
            let mut cmd = Command::new("oci-image-tool");
            cmd.args(["validate", "--type", "image"])
                .arg(fx.dir.join(f.name));
            process::run_ok(cmd);
        }
    }

    #[test]
    fn fixtures_push_with_their_digests() {
        let fx = ensure();
        let reg = Registry::shared();
        for f in fx.all() {
            let repo = format!("fixture/{}", f.name);
            reg.push_fixture(f, &format!("{repo}:latest"));
            assert_eq!(
                reg.manifest_digest(&repo, "latest"),
                f.digest(),
                "{} tag digest",
                f.name
            );
            for p in &f.platforms {
                assert_eq!(
                    reg.manifest_digest(&repo, &p.manifest_digest),
                    p.manifest_digest,
                    "{} {} manifest",
                    f.name,
                    p.platform
                );
            }
        }
    }
}
