//! The OCI/Docker documents builder reads and writes: descriptors, manifests,
//! indexes (manifest lists) and the parts of the image config that builder
//! interprets.
//!
//! Why not `oci-spec`'s types: a pulled manifest must be stored byte for byte
//! (its digest is the hash of those bytes), so builder never re-serialises a
//! document it did not create; it only needs to *read* a few fields out of
//! both OCI and Docker schema2 documents, which these lenient types do. Unknown
//! fields are kept in `extra` so that documents builder writes from a pulled
//! one (a config edited by `build`, say) lose nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DiffId, Digest, Platform};

/// A content descriptor (image-spec `descriptor.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: None,
            urls: None,
            artifact_type: None,
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest, OCI or Docker schema2 (the JSON shapes are the same).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index, OCI or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The image config fields builder interprets; everything else is carried in
/// `extra` untouched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<DiffId>,
}

/// One `history` entry of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime defaults an image carries (`config` of the image config).
/// Field names are the image-spec's (PascalCase).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Manifest {
    /// The OCI form of a Docker schema2 manifest: same config and layer
    /// blobs, OCI media types. Used to name a Docker image in the store's
    /// OCI layout, whose readers (skopeo 1.9) skip Docker-typed entries. The
    /// blobs are unchanged, so the image ID (config digest) is too.
    pub fn to_oci(&self) -> Manifest {
        use super::media_type as mt;
        let convert = |desc: &Descriptor, media_type: &str| Descriptor {
            media_type: media_type.to_string(),
            ..desc.clone()
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let media_type = match l.media_type.as_str() {
                    mt::DOCKER_LAYER_GZIP => mt::OCI_LAYER_GZIP,
                    mt::DOCKER_LAYER_FOREIGN_GZIP => mt::OCI_LAYER_NONDIST_GZIP,
                    mt::DOCKER_LAYER_TAR => mt::OCI_LAYER_TAR,
                    other => other,
                };
                convert(l, media_type)
            })
            .collect();
        Manifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.to_string()),
            config: convert(&self.config, mt::OCI_CONFIG),
            layers,
            annotations: self.annotations.clone(),
            extra: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_docker_schema2_manifest() {
        let json = r#"{
           "schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                      "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
                       "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"}]
        }"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.config.size, 7023);
    }

    #[test]
    fn docker_manifests_convert_to_oci_with_the_same_blobs() {
        let json = r#"{"schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                      "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2,
                       "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"}]}"#;
        let docker: Manifest = serde_json::from_str(json).unwrap();
        let oci = docker.to_oci();
        assert_eq!(
            oci.media_type.as_deref(),
            Some(super::super::media_type::OCI_MANIFEST)
        );
        assert_eq!(oci.config.media_type, super::super::media_type::OCI_CONFIG);
        assert_eq!(oci.config.digest, docker.config.digest);
        assert_eq!(
            oci.layers[0].media_type,
            super::super::media_type::OCI_LAYER_GZIP
        );
        assert_eq!(oci.layers[0].digest, docker.layers[0].digest);
    }

    #[test]
    fn rejects_a_manifest_with_a_hostile_digest() {
        let json = r#"{"schemaVersion": 2, "config": {"mediaType": "x", "size": 1,
                       "digest": "sha256:../../etc/passwd"}, "layers": []}"#;
        assert!(serde_json::from_str::<Manifest>(json).is_err());
    }

    #[test]
    fn config_keeps_unknown_fields() {
        let json = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                       "config":{"Env":["A=1"],"Healthcheck":{"Test":["NONE"]}},"container":"abc"}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.extra.get("container").unwrap(), "abc");
        let out = serde_json::to_value(&c).unwrap();
        assert_eq!(out["config"]["Healthcheck"]["Test"][0], "NONE");
    }
}
