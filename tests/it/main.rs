//! The one integration-test binary. Each module is a feature area.
