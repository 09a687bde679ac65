//! The one integration-test binary. Each module is a feature area.

mod mount; // overlay mounts (new API and legacy), guards
