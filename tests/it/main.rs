//! The one integration-test binary. Each module is a feature area.

mod mount; // overlay mounts (new API and legacy), guards
mod runtime; // containers on a busybox rootfs: isolation, limits, users, exit codes, teardown
