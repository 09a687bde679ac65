//! The one integration-test binary. Each module is a feature area.

mod support; // registries, fixtures, the builder runner (shared by all areas)

mod pull; // `builder pull` end to end: rootfs vs umoci, TLS/auth, platforms, kill -9, concurrency
mod store; // the store after real pulls vs store-layout.md

// `pull_faults.rs` (Bearer challenge, tampered blobs) needs `fault_proxy.rs`
// from branch `registry`; once both are on main, add:
// mod pull_faults; // `builder pull` through the fault proxy
