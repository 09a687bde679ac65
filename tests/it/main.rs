//! The one integration-test binary. Each module is a feature area.

mod support; // registries, fixtures, the builder runner (shared by all areas)
