//! The one integration-test binary. Each module is a feature area.

mod support; // registries, fixtures, the builder runner (shared by all areas)

mod pull; // `builder pull` end to end: rootfs vs umoci, TLS/auth, platforms, kill -9, concurrency
mod store;
// `pull_faults.rs` (Bearer challenge, tampered blobs) needs `fault_proxy.rs` from
// branch `registry`; when both are on main, add: mod pull_faults; // the store after real pulls vs store-layout.md
