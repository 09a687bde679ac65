//! Content digests. Only `sha256` is accepted: it is the only algorithm the
//! registries we talk to emit, and a store path is built from a digest only
//! after it has been validated here (so a hostile manifest cannot name
//! `../../etc/passwd` as a blob).
//!
//! Three newtypes keep three different hashes apart:
//! - [`Digest`]: the hash of a blob as stored and transferred (a compressed
//!   layer, a manifest, a config);
//! - [`DiffId`]: the hash of a layer's *uncompressed* tar, as listed in the
//!   image config's `rootfs.diff_ids`;
//! - [`ChainId`]: the identity of a stack of layers (image-spec `config.md`).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The only digest algorithm builder accepts.
pub const SHA256: &str = "sha256";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest `{0}`: expected `sha256:` followed by 64 lowercase hex characters")]
    Invalid(String),
    #[error("unsupported digest algorithm in `{0}`: only sha256 is supported")]
    UnsupportedAlgorithm(String),
}

/// A validated `sha256:<64 hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`, rejecting any other algorithm or malformed hex.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Invalid(s.to_string()))?;
        if algorithm != SHA256 {
            // Any other well-formed algorithm name is "unsupported", not "invalid".
            if !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            {
                return Err(DigestError::UnsupportedAlgorithm(s.to_string()));
            }
            return Err(DigestError::Invalid(s.to_string()));
        }
        Self::from_hex(hex).map_err(|_| DigestError::Invalid(s.to_string()))
    }

    /// Builds a digest from the 64-character hex part alone.
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid(hex.to_string()));
        }
        Ok(Self {
            hex: hex.to_string(),
        })
    }

    /// The digest of a byte slice held in memory (manifests, configs).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Finishes a running hash.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex characters, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn algorithm(&self) -> &'static str {
        SHA256
    }

    /// The first 12 hex characters, as image IDs are shown to people.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Digest);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, DigestError> {
                Digest::parse(s).map(Self)
            }
            pub fn digest(&self) -> &Digest {
                &self.0
            }
            pub fn hex(&self) -> &str {
                self.0.hex()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

digest_newtype!(
    /// sha256 of a layer's uncompressed tar stream (`rootfs.diff_ids[i]`).
    DiffId
);
digest_newtype!(
    /// Identity of the stack of layers `0..=i`: `ChainID(L0) = DiffID(L0)`,
    /// `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`.
    ChainId
);

impl ChainId {
    /// Computes the chain ids of every prefix of `diff_ids`.
    pub fn chain(diff_ids: &[DiffId]) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
        for diff_id in diff_ids {
            let next = match out.last() {
                None => ChainId(diff_id.0.clone()),
                Some(parent) => ChainId(Digest::of_bytes(format!("{parent} {diff_id}").as_bytes())),
            };
            out.push(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of_bytes(b""), d);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Digest::parse("sha512:abcd"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = DiffId(Digest::of_bytes(b"a"));
        let b = DiffId(Digest::of_bytes(b"b"));
        let chain = ChainId::chain(&[a.clone(), b.clone()]);
        assert_eq!(chain[0].0, a.0);
        assert_eq!(chain[1].0, Digest::of_bytes(format!("{a} {b}").as_bytes()));
    }
}
