//! `push`: an image in the store → a registry (a manifest list's name
//! pushes the list with its images, as `manifest push` does).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::{find_image, registry_client};
use crate::cli::args::{PushArgs, PushCompression, RecompressArgs};
use crate::oci::Compression;
use crate::push::{PushOptions, push as push_image};
use crate::reference::ImageRef;
use crate::store::Store;

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn push(store: &Store, args: PushArgs) -> Result<ExitCode> {
    let image = find_image(store, &args.image)?;
    let destination = destination(&image.name, &args.image, args.destination.as_deref())?;
    let options = options(args.jobs, &args.recompress)?;
    if image.is_list() {
        // A list's name means the list: push it with its images.
        return super::manifest::push_list(
            store,
            &image,
            &destination,
            &args.registry,
            &options,
            args.quiet,
            args.digestfile.as_deref(),
        );
    }
    let client = registry_client(&args.registry)?;
    let reporter = crate::cli::progress::reporter(args.quiet);
    let started = std::time::Instant::now();
    let pushed = push_image(
        &client,
        store,
        &image,
        &destination,
        &options,
        reporter.as_ref(),
    )?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, format!("{}\n", pushed.manifest.digest))
            .with_context(|| format!("write digest file `{}`", path.display()))?;
    }
    if !args.quiet {
        let mut counts = vec![
            format!("{} uploaded", pushed.uploaded),
            format!("{} mounted", pushed.mounted),
            format!("{} already present", pushed.present),
        ];
        if pushed.recompressed > 0 {
            counts.push(format!("{} recompressed", pushed.recompressed));
        }
        eprintln!(
            "Pushed {} to {} (blobs: {}) in {:.2}s",
            image.name,
            pushed.destination,
            counts.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    println!("{}", pushed.manifest.digest);
    Ok(ExitCode::SUCCESS)
}

/// Where to push `name` (asked for as `input`): `destination`, else the
/// name itself; never a digest.
pub(super) fn destination(name: &str, input: &str, destination: Option<&str>) -> Result<ImageRef> {
    let destination = match destination {
        Some(d) => ImageRef::parse(d)?,
        None => ImageRef::parse(name).with_context(|| {
            format!(
                "`{name}` is not a pushable name; give a destination (`builder push {input} REGISTRY/REPOSITORY:TAG`)"
            )
        })?,
    };
    if let Some(digest) = destination.digest() {
        bail!(
            "cannot push to `{destination}`: a destination names a tag, not a digest (`{digest}` is fixed by the content)"
        );
    }
    Ok(destination)
}

/// The push options; a level is checked against its compression before
/// anything is sent.
pub(super) fn options(jobs: usize, recompress: &RecompressArgs) -> Result<PushOptions> {
    let level = recompress.compression_level;
    let compression = recompress.compression.map(|c| match c {
        PushCompression::Gzip => Compression::Gzip,
        PushCompression::Zstd => Compression::Zstd,
    });
    if let (Some(c), Some(_)) = (compression, level) {
        crate::layer::compression::effective_level(c, level)
            .map_err(|e| anyhow::anyhow!("--compression-level: {e}"))?;
    }
    Ok(PushOptions {
        concurrency: jobs,
        compression,
        level,
    })
}
