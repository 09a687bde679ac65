//! Layers as tar streams and as directories: unpacking a (decompressed) layer
//! tar into a directory in overlayfs format, whiteout conversion, compression.
