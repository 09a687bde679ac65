//! Mounts as values (overlay options) and guards that unmount on drop.
