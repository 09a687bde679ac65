//! Manifests: fetching one by tag or digest with the right `Accept` list,
//! checking its digest, and resolving an index (manifest list) to the
//! manifest of one platform.
//!
//! A fetched manifest is kept as the exact bytes the registry sent: its
//! digest is the sha256 of those bytes, so they must be stored unchanged.
//! When fetched by digest, the bytes must hash to that digest; a
//! `Docker-Content-Digest` header that disagrees with the bytes is an error
//! too (a registry or proxy serving something other than it claims).
//!
//! Media type: the document's own `mediaType` when it has one (it is covered
//! by the digest, the `Content-Type` header is not), else `Content-Type`,
//! else the document's shape (`manifests` → index, `config` → manifest), for
//! old OCI documents without `mediaType` served as plain JSON.

use ureq::http::{Method, header};

use super::auth::pull_scope;
use super::client::{Call, CallBody, Client, read_limited, status_error};
use super::error::RegistryError;
use crate::oci::media_type::MANIFEST_ACCEPT;
use crate::oci::{Descriptor, Digest, Index, Manifest, MediaType, Platform};
use crate::reference::ImageRef;

/// The largest manifest accepted: distribution refuses to store bigger ones,
/// so anything larger is not a manifest, and it is held in memory.
pub const MANIFEST_SIZE_MAX: u64 = 4 * 1024 * 1024;

/// A manifest or index as fetched: exact bytes, media type, digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: MediaType,
    pub digest: Digest,
}

impl FetchedManifest {
    /// A descriptor pointing at this document.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.as_str(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

/// An image reference resolved to one image manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The index the reference named, when it named one.
    pub index: Option<FetchedManifest>,
    /// The image manifest (the platform's entry of the index, or the
    /// document the reference named).
    pub manifest: FetchedManifest,
    pub parsed: Manifest,
    /// The platform of the chosen index entry; `None` when the reference
    /// named a manifest directly.
    pub platform: Option<Platform>,
}

impl Client {
    /// Fetches the manifest or index `r` names (`GET /v2/REPO/manifests/REF`).
    pub fn fetch_manifest(&self, r: &ImageRef) -> Result<FetchedManifest, RegistryError> {
        let reference = r.reference_for_manifest();
        let what = format!("fetch manifest `{reference}` of `{}`", r.name());
        let call = Call {
            method: Method::GET,
            registry: r.registry(),
            repository: Some(r.repository()),
            scope: Some(pull_scope(r.repository())),
            path: format!("/v2/{}/manifests/{reference}", r.repository()),
            headers: vec![(header::ACCEPT, MANIFEST_ACCEPT.to_string())],
            body: CallBody::None,
            retry: true,
            what: &what,
        };
        let resp = self.execute(&call)?;
        if !resp.status().is_success() {
            return Err(status_error(&what, resp));
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(resp, MANIFEST_SIZE_MAX, &what)?;
        let digest = Digest::of_bytes(&bytes);
        if let Some(expected) = r.digest()
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: expected.clone(),
                actual: digest,
            });
        }
        if let Some(header) = content_digest
            && let Ok(claimed) = Digest::parse(header.trim())
            && claimed != digest
        {
            return Err(RegistryError::ContentDigestMismatch {
                what,
                header,
                actual: digest,
            });
        }
        let media_type =
            detect_media_type(content_type.as_deref(), &bytes).map_err(|media_type| {
                RegistryError::UnsupportedMediaType {
                    what: what.clone(),
                    media_type,
                }
            })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Resolves `r` to one image manifest: if it names an index, the entry
    /// for `platform` is chosen and fetched by digest.
    pub fn resolve(&self, r: &ImageRef, platform: &Platform) -> Result<Resolved, RegistryError> {
        let top = self.fetch_manifest(r)?;
        if !top.media_type.is_index() {
            let parsed = parse_manifest(&top, r)?;
            return Ok(Resolved {
                index: None,
                manifest: top,
                parsed,
                platform: None,
            });
        }
        let index: Index = serde_json::from_slice(&top.bytes).map_err(|source| {
            RegistryError::InvalidManifest {
                what: format!("read index `{}` of `{}`", top.digest, r.name()),
                source,
            }
        })?;
        let entry = select_platform(&index, platform, &r.to_string())?;
        let child_ref = r.with_digest(entry.digest.clone());
        let child = self.fetch_manifest(&child_ref)?;
        if child.media_type.is_index() {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!(
                    "resolve `{r}` for {platform}: the index entry `{}` is itself an index (nested indexes are not supported)",
                    entry.digest
                ),
                media_type: child.media_type.as_str().to_string(),
            });
        }
        let parsed = parse_manifest(&child, &child_ref)?;
        Ok(Resolved {
            index: Some(top),
            manifest: child,
            parsed,
            platform: entry.platform.clone(),
        })
    }
}

fn parse_manifest(m: &FetchedManifest, r: &ImageRef) -> Result<Manifest, RegistryError> {
    serde_json::from_slice(&m.bytes).map_err(|source| RegistryError::InvalidManifest {
        what: format!("read manifest `{}` of `{}`", m.digest, r.name()),
        source,
    })
}

/// The first entry of `index` whose platform `want` accepts (see
/// [`Platform::matches`]); the index's order is the publisher's preference.
/// When none does, the error lists the platforms the index offers.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, RegistryError> {
    if let Some(d) = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
    {
        return Ok(d);
    }
    let mut available: Vec<String> = Vec::new();
    for p in index.manifests.iter().filter_map(|d| d.platform.as_ref()) {
        // Attestation manifests (BuildKit) carry `unknown/unknown`.
        if p.os == "unknown" {
            continue;
        }
        let s = p.to_string();
        if !available.contains(&s) {
            available.push(s);
        }
    }
    Err(RegistryError::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: want.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

/// The media type of a fetched document (see the module doc for the order),
/// or the unsupported type found.
fn detect_media_type(content_type: Option<&str>, bytes: &[u8]) -> Result<MediaType, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let peek: Option<Peek> = serde_json::from_slice(bytes).ok();
    if let Some(doc_type) = peek.as_ref().and_then(|p| p.media_type.as_deref()) {
        return MediaType::parse(doc_type).ok_or_else(|| doc_type.to_string());
    }
    if let Some(t) = content_type.and_then(MediaType::parse) {
        return Ok(t);
    }
    match peek {
        Some(p) if p.schema_version == Some(1) => {
            Err("application/vnd.docker.distribution.manifest.v1+json".to_string())
        }
        Some(p) if p.manifests.is_some() => Ok(MediaType::OciIndex),
        Some(p) if p.config.is_some() => Ok(MediaType::OciManifest),
        _ => Err(content_type.unwrap_or("(none)").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[&str]) -> Index {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parts: Vec<&str> = p.split('/').collect();
                let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                if let Some(v) = parts.get(2) {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": crate::oci::media_type::OCI_MANIFEST,
                    "digest": format!("sha256:{:064x}", i),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn selects_the_platform_entry() {
        let idx = index(&[
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "unknown/unknown",
        ]);
        let pick = |p: &str| {
            select_platform(&idx, &Platform::parse(p).unwrap(), "r")
                .map(|d| d.digest.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), format!("sha256:{:064x}", 0));
        assert_eq!(pick("linux/arm64").unwrap(), format!("sha256:{:064x}", 1));
        assert_eq!(pick("linux/aarch64").unwrap(), format!("sha256:{:064x}", 1));
        assert_eq!(
            pick("linux/arm64/v8").unwrap(),
            format!("sha256:{:064x}", 1)
        );
        assert_eq!(pick("linux/arm/v7").unwrap(), format!("sha256:{:064x}", 2));
        assert_eq!(
            pick("linux/s390x").unwrap_err(),
            "no manifest for platform linux/s390x in `r`; available: linux/amd64, linux/arm64/v8, linux/arm/v7"
        );
        assert!(pick("linux/arm/v6").is_err());
        assert!(pick("windows/amd64").is_err());

        let empty = index(&[]);
        let err = select_platform(&empty, &Platform::host(), "x").unwrap_err();
        assert!(err.to_string().ends_with("available: none"), "{err}");
    }

    #[test]
    fn media_type_detection() {
        use crate::oci::media_type::*;
        let with_type =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[]}}"#);
        // The document's own type wins over a disagreeing header.
        assert_eq!(
            detect_media_type(Some(OCI_MANIFEST), with_type.as_bytes()),
            Ok(MediaType::DockerManifestList)
        );
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            detect_media_type(Some(OCI_INDEX), bare_index),
            Ok(MediaType::OciIndex)
        );
        assert_eq!(
            detect_media_type(Some("application/json"), bare_index),
            Ok(MediaType::OciIndex)
        );
        let bare_manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            detect_media_type(None, bare_manifest),
            Ok(MediaType::OciManifest)
        );
        assert_eq!(
            detect_media_type(Some(DOCKER_MANIFEST), bare_manifest),
            Ok(MediaType::DockerManifest)
        );
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(
            detect_media_type(Some("application/json"), schema1)
                .unwrap_err()
                .contains("v1")
        );
        let err = detect_media_type(None, br#"{"mediaType":"application/vnd.foo"}"#).unwrap_err();
        assert_eq!(err, "application/vnd.foo");
        assert_eq!(
            detect_media_type(Some("text/html"), b"<html>").unwrap_err(),
            "text/html"
        );
    }
}
