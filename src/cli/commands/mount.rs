//! `mount` / `umount`: an image's rootfs, read-only, at a path in the store.
//! A manifest list mounts its image for `--platform` (default: this
//! machine's), as `run` runs it.

use std::process::ExitCode;

use anyhow::Result;

use super::find_image_for;
use crate::cli::args::ImageArg;
use crate::oci::Platform;
use crate::rootfs;
use crate::store::{ImageRecord, Store};

/// The image to (un)mount; a manifest list gives its image for
/// `--platform`, else for this machine.
fn image(store: &Store, args: &ImageArg) -> Result<ImageRecord> {
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    find_image_for(store, &args.image, &platform)
}

#[allow(clippy::print_stdout)]
pub fn mount(store: &Store, args: ImageArg) -> Result<ExitCode> {
    let image = image(store, &args)?;
    let path = rootfs::mount_image(store, &image)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn umount(store: &Store, args: ImageArg) -> Result<ExitCode> {
    let image = image(store, &args)?;
    rootfs::unmount_image(store, &image)?;
    Ok(ExitCode::SUCCESS)
}
