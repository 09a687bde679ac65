//! `mount` / `umount`: an image's rootfs, read-only, at a path in the store.

use std::process::ExitCode;

use anyhow::Result;

use super::find_image;
use crate::cli::args::ImageArg;
use crate::rootfs;
use crate::store::Store;

#[allow(clippy::print_stdout)]
pub fn mount(store: &Store, args: ImageArg) -> Result<ExitCode> {
    let image = find_image(store, &args.image)?;
    let path = rootfs::mount_image(store, &image)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn umount(store: &Store, args: ImageArg) -> Result<ExitCode> {
    let image = find_image(store, &args.image)?;
    rootfs::unmount_image(store, &image)?;
    Ok(ExitCode::SUCCESS)
}
