//! `images`, `inspect`, `tag`, `rmi`, `prune`: reading and naming what the
//! store holds. Manifest lists are named like images and show up in each:
//! `images` lists them (kind `manifest list`, with their platforms),
//! `inspect` prints their index, `tag` and `rmi` name and unname them.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{find_image, normalise_name};
use crate::cli::args::{ImagesArgs, InspectArgs, PruneArgs, RmiArgs, TagArgs};
use crate::cli::progress::human_bytes;
use crate::oci::{Digest, ImageConfig, Manifest};
use crate::store::{ImageRecord, Store};

/// One row of `builder images`: an image, or a manifest list.
#[derive(Serialize)]
struct ImageSummary {
    /// The name; an unnamed image's is its ID (`sha256:…`, shown as
    /// `<none>` in the table).
    name: String,
    /// `image` or `manifest list`.
    kind: &'static str,
    #[serde(skip)]
    unnamed: bool,
    /// The image ID: the config digest, as docker and podman define it.
    /// A manifest list has no config: its ID is its index digest.
    id: Digest,
    /// The manifest (or index) digest, what a registry knows it by.
    digest: Digest,
    created: Option<String>,
    /// Bytes of the manifest, config and (compressed) layer blobs; for a
    /// list, of its index and every blob of its images, each counted once.
    size: u64,
    /// The image's platform (from its config); for a list, its images'.
    platforms: Vec<String>,
}

fn load(store: &Store, record: &ImageRecord) -> Result<(Vec<u8>, Manifest, ImageConfig)> {
    let (bytes, manifest) = store
        .manifest(&record.manifest.digest)
        .with_context(|| format!("read manifest of `{}`", record.name))?;
    let config_bytes = store
        .read_blob(&manifest.config.digest)
        .with_context(|| format!("read config of `{}`", record.name))?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).with_context(|| {
        format!(
            "parse config {} of `{}`",
            manifest.config.digest, record.name
        )
    })?;
    Ok((bytes, manifest, config))
}

fn summary(store: &Store, record: &ImageRecord) -> Result<ImageSummary> {
    if record.is_list() {
        return list_summary(store, record);
    }
    let (bytes, manifest, config) = load(store, record)?;
    let size = bytes.len() as u64
        + manifest.config.size
        + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let mut platform = format!("{}/{}", config.os, config.architecture);
    if let Some(variant) = &config.variant {
        platform = format!("{platform}/{variant}");
    }
    Ok(ImageSummary {
        name: record.name.clone(),
        kind: "image",
        unnamed: record.is_unnamed(),
        id: manifest.config.digest,
        digest: record.registry_digest(),
        created: config.created,
        size,
        platforms: vec![platform],
    })
}

fn list_summary(store: &Store, record: &ImageRecord) -> Result<ImageSummary> {
    let (bytes, index) = store
        .index(&record.manifest.digest)
        .with_context(|| format!("read manifest list `{}`", record.name))?;
    let mut blobs = std::collections::BTreeMap::new();
    for child in &index.manifests {
        blobs.insert(child.digest.clone(), child.size);
        if let Ok((_, manifest)) = store.manifest(&child.digest) {
            for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
                blobs.insert(desc.digest.clone(), desc.size);
            }
        }
    }
    Ok(ImageSummary {
        name: record.name.clone(),
        kind: "manifest list",
        unnamed: false,
        id: record.manifest.digest.clone(),
        digest: record.manifest.digest.clone(),
        created: None,
        size: bytes.len() as u64 + blobs.values().sum::<u64>(),
        platforms: index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect(),
    })
}

#[allow(clippy::print_stdout)]
pub fn images(store: &Store, args: ImagesArgs) -> Result<ExitCode> {
    let rows = store
        .list_images()?
        .iter()
        .map(|r| summary(store, r))
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if args.quiet {
        for row in &rows {
            println!("{}", row.id.short());
        }
    } else {
        println!(
            "{:<50} {:<14} {:<22} {:>10}  PLATFORM",
            "NAME", "IMAGE ID", "CREATED", "SIZE"
        );
        for row in &rows {
            let created = row.created.as_deref().unwrap_or("-");
            let created = created.get(..19).unwrap_or(created).replace('T', " ");
            let platforms = if row.kind == "image" {
                row.platforms.join(",")
            } else {
                format!("manifest list: {}", row.platforms.join(","))
            };
            println!(
                "{:<50} {:<14} {:<22} {:>10}  {platforms}",
                if row.unnamed { "<none>" } else { &row.name },
                row.id.short(),
                created,
                human_bytes(row.size)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
pub fn inspect(store: &Store, args: InspectArgs) -> Result<ExitCode> {
    let record = find_image(store, &args.image)?;
    let names: Vec<String> = store
        .list_images()?
        .into_iter()
        .filter(|r| r.manifest.digest == record.manifest.digest)
        .map(|r| r.name)
        .collect();
    if record.is_list() {
        // A list has no config; what identifies it is its index.
        let (bytes, _) = store.index(&record.manifest.digest)?;
        let index: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parse manifest list `{}`", record.name))?;
        let out = serde_json::json!({
            "name": record.name,
            "names": names,
            "kind": "manifest list",
            "digest": record.manifest.digest,
            "layoutDigest": record.manifest.digest,
            "mediaType": record.manifest.media_type,
            "index": index,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (_, manifest, config) = load(store, &record)?;
    let out = serde_json::json!({
        "kind": "image",
        "name": record.name,
        "names": names,
        "id": manifest.config.digest,
        "digest": record.registry_digest(),
        "layoutDigest": record.manifest.digest,
        "mediaType": record.manifest.media_type,
        "manifest": manifest,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn tag(store: &Store, args: TagArgs) -> Result<ExitCode> {
    let record = find_image(store, &args.source)?;
    for target in &args.targets {
        let name = normalise_name(target)?;
        store
            .set_image(&name, &record.manifest)
            .with_context(|| format!("tag `{}` as `{name}`", record.name))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
pub fn rmi(store: &Store, args: RmiArgs) -> Result<ExitCode> {
    for input in &args.images {
        // A name removes that name; an ID removes every name of the image.
        let by_name = crate::reference::ImageRef::parse(input)
            .ok()
            .and_then(|r| store.image(&r.to_string()).ok().flatten());
        let names: Vec<String> = match by_name {
            Some(record) => vec![record.name],
            None => {
                let record = find_image(store, input)?;
                store
                    .list_images()?
                    .into_iter()
                    .filter(|r| r.manifest.digest == record.manifest.digest)
                    .map(|r| r.name)
                    .collect()
            }
        };
        for name in names {
            if !store.remove_image(&name)? {
                bail!("image `{name}` is not in the store");
            }
            println!("Untagged: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
pub fn prune(store: &Store, args: PruneArgs) -> Result<ExitCode> {
    // Containers first (their mounts and cgroups too): prune holds the store
    // alone, so none of them is running.
    let containers = crate::container::remove_dead(store)?;
    let report = store.prune(args.all)?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["containers_removed"] = containers.into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "Removed {containers} containers, {} blobs ({}), {} layers, {} temp entries, {} cache records",
            report.blobs_removed,
            human_bytes(report.blob_bytes_removed),
            report.layers_removed,
            report.temp_entries_removed,
            report.cache_records_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
