//! OCI vocabulary shared by every other module: digests (`Digest`, `DiffId`,
//! `ChainId` as distinct types), media types, platforms, and readers that hash
//! what flows through them. No I/O of its own beyond wrapping a reader.

pub mod digest;
pub mod image;
pub mod media_type;
pub mod platform;
pub mod time;
pub mod verify;

pub use digest::{ChainId, DiffId, Digest, DigestError};
pub use image::{Descriptor, ImageConfig, Index, Manifest};
pub use media_type::{Compression, MediaType};
pub use platform::Platform;
