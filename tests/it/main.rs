//! The one integration-test binary. Each module is a feature area.

mod support; // registries, fixtures, the builder runner (shared by all areas)

mod pull; // `builder pull` end to end: rootfs vs umoci, TLS/auth, platforms, kill -9, concurrency
mod store; // the store after real pulls vs store-layout.md
