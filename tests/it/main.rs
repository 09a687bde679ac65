//! The one integration-test binary. Each module is a feature area.

mod fault_proxy; // loopback server injecting what a real registry won't: token challenges, tampering, 5xx, cuts
mod mount; // overlay mounts (new API and legacy), guards
mod registry; // the registry client against docker-registry and the fault proxy
mod support; // registries, fixtures, the builder runner (shared by all areas)
