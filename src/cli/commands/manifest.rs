//! `manifest create|add|inspect|push|rm`: manifest lists, the OCI image
//! indexes that name one image per platform. A list is named in the store
//! like an image (see `store::lists` for how it is kept); these commands
//! are its only writers.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::{find_image, normalise_name, registry_client};
use crate::cli::args::{
    ManifestAddArgs, ManifestCommand, ManifestCreateArgs, ManifestInspectArgs, ManifestPushArgs,
    ManifestRmArgs, RegistryArgs,
};
use crate::oci::Platform;
use crate::push::{PushOptions, Pusher};
use crate::reference::ImageRef;
use crate::store::{ImageRecord, Store, StoreError};

pub fn run(store: &Store, cmd: ManifestCommand) -> Result<ExitCode> {
    match cmd {
        ManifestCommand::Create(args) => create(store, args),
        ManifestCommand::Add(args) => add(store, args),
        ManifestCommand::Inspect(args) => inspect(store, args),
        ManifestCommand::Push(args) => push(store, args),
        ManifestCommand::Rm(args) => rm(store, args),
    }
}

/// The manifest list a user means, by name or digest prefix; an image is
/// refused with a pointer to the command that reads images.
fn find_list(store: &Store, input: &str) -> Result<ImageRecord> {
    let record = find_image(store, input)?;
    if !record.is_list() {
        return Err(StoreError::NotAList { name: record.name }.into());
    }
    Ok(record)
}

#[allow(clippy::print_stdout)]
fn create(store: &Store, args: ManifestCreateArgs) -> Result<ExitCode> {
    let name = normalise_name(&args.list)?;
    let list = store
        .create_list(&name)
        .with_context(|| format!("create manifest list `{name}`"))?;
    println!("{}", list.digest);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn add(store: &Store, args: ManifestAddArgs) -> Result<ExitCode> {
    let list = find_list(store, &args.list)?;
    let image = find_image(store, &args.image)?;
    let context = || format!("add `{}` to manifest list `{}`", image.name, list.name);
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => store.image_platform(&image).with_context(context)?,
    };
    let entry = store
        .list_entry_for(&image, platform)
        .with_context(context)?;
    let added = store.add_to_list(&list.name, entry).with_context(context)?;
    let platform = added
        .entry
        .platform
        .as_ref()
        .expect("a list entry has a platform");
    match &added.replaced {
        Some(old) if old.digest == added.entry.digest => eprintln!(
            "{} already lists {} for {platform}",
            list.name, added.entry.digest
        ),
        Some(old) => eprintln!(
            "Replaced {} with {} for {platform} in {}",
            old.digest, added.entry.digest, list.name
        ),
        None => eprintln!(
            "Added {} ({}) for {platform} to {}",
            image.name, added.entry.digest, list.name
        ),
    }
    println!("{}", added.list.digest);
    Ok(ExitCode::SUCCESS)
}

/// Prints the index as stored (every field, pretty-printed).
#[allow(clippy::print_stdout)]
fn inspect(store: &Store, args: ManifestInspectArgs) -> Result<ExitCode> {
    let list = find_list(store, &args.list)?;
    let (bytes, _) = store.index(&list.manifest.digest)?;
    let index: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("parse manifest list `{}`", list.name))?;
    println!("{}", serde_json::to_string_pretty(&index)?);
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn rm(store: &Store, args: ManifestRmArgs) -> Result<ExitCode> {
    for input in &args.lists {
        let list = find_list(store, input)?;
        if !store.remove_image(&list.name)? {
            bail!("manifest list `{}` is not in the store", list.name);
        }
        println!("Untagged: {}", list.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn push(store: &Store, args: ManifestPushArgs) -> Result<ExitCode> {
    let list = find_list(store, &args.list)?;
    let destination =
        super::push::destination(&list.name, &args.list, args.destination.as_deref())?;
    let options = super::push::options(args.jobs, &args.recompress)?;
    push_list(
        store,
        &list,
        &destination,
        &args.registry,
        &options,
        args.quiet,
        args.digestfile.as_deref(),
    )
}

/// Pushes `list`'s images, then the list; prints the list's digest (and
/// with `digestfile`, writes it there too).
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(super) fn push_list(
    store: &Store,
    list: &ImageRecord,
    destination: &ImageRef,
    registry: &RegistryArgs,
    options: &PushOptions,
    quiet: bool,
    digestfile: Option<&Path>,
) -> Result<ExitCode> {
    let client = registry_client(registry)?;
    let reporter = crate::cli::progress::reporter(quiet);
    let started = std::time::Instant::now();
    let pushed =
        Pusher::new(&client, store).push_list(list, destination, options, reporter.as_ref())?;
    if let Some(path) = digestfile {
        std::fs::write(path, format!("{}\n", pushed.index.digest))
            .with_context(|| format!("write digest file `{}`", path.display()))?;
    }
    if !quiet {
        let blobs =
            |f: fn(&crate::push::Pushed) -> usize| pushed.images.iter().map(f).sum::<usize>();
        eprintln!(
            "Pushed manifest list {} ({} images) to {} (blobs: {} uploaded, {} mounted, {} already present) in {:.2}s",
            list.name,
            pushed.images.len(),
            pushed.destination,
            blobs(|p| p.uploaded),
            blobs(|p| p.mounted),
            blobs(|p| p.present),
            started.elapsed().as_secs_f64()
        );
    }
    println!("{}", pushed.index.digest);
    Ok(ExitCode::SUCCESS)
}
