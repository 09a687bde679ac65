//! Platforms (`os/arch[/variant]`) and how an index entry is matched against
//! the one asked for.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid platform `{0}`: expected os/arch or os/arch/variant, for example linux/amd64 or linux/arm64/v8"
)]
pub struct PlatformError(String);

impl Platform {
    /// Parses `os/arch[/variant]`, normalising architecture aliases.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.to_string()));
        }
        let (architecture, implied_variant) = normalize_arch(parts[1]);
        let variant = parts.get(2).map(|v| v.to_string()).or(implied_variant);
        Ok(Self {
            os: parts[0].to_lowercase(),
            architecture,
            variant,
        })
    }

    /// The platform of the machine builder runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    /// Whether an index entry's platform satisfies `self` (the wanted one).
    /// A wanted platform without a variant accepts any variant; `arm64` and
    /// `arm64/v8` are the same thing.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let (cand_arch, cand_implied) = normalize_arch(&candidate.architecture);
        if self.os != candidate.os || self.architecture != cand_arch {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = candidate.variant.clone().or(cand_implied);
                let default_v8 = self.architecture == "arm64" && want == "v8";
                have.as_deref() == Some(want.as_str()) || (default_v8 && have.is_none())
            }
        }
    }
}

fn normalize_arch(arch: &str) -> (String, Option<String>) {
    match arch.to_lowercase().as_str() {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        other => (other.to_string(), None),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let want = Platform::parse("linux/arm64").unwrap();
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(want.matches(&v8));
        assert!(v8.matches(&want));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&v8));
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }
}
