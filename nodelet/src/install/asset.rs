//! Which release asset to download for this OS, architecture and Ollama version, and
//! where it lives.

use std::fmt;

use reqwest::Url;

/// Where Ollama publishes its releases; `--download-base-url` replaces it with a mirror.
pub const DEFAULT_DOWNLOAD_BASE: &str = "https://github.com/ollama/ollama/releases";

/// The name of the checksum file published with every release.
pub const SHA256SUMS_FILE: &str = "sha256sum.txt";

/// Why no asset could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssetError {
    /// This machine's OS/architecture has no Ollama release.
    #[error(
        "Ollama publishes no release for {os}/{arch}; install Ollama by hand \
         (herd finds it on PATH) or run herd on linux, macos or windows on x86_64 or aarch64"
    )]
    UnsupportedPlatform { os: String, arch: String },
    /// `--ollama-version` is not `latest` or a release number.
    #[error(
        "invalid Ollama version {value:?}: expected \"latest\" or a release like \"v0.33.0\" or \"0.33.0\""
    )]
    InvalidVersion { value: String },
    /// The download base URL cannot be used.
    #[error("invalid download base URL {value:?}: {reason}")]
    InvalidBaseUrl { value: String, reason: String },
}

/// A requested Ollama version: the newest release or one pinned release.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum OllamaVersion {
    /// Whatever the release site calls latest.
    #[default]
    Latest,
    /// One release, e.g. `v0.33.0`.
    Pinned(ReleaseTag),
}

impl OllamaVersion {
    /// Parses `latest`, `v0.33.0`, `0.33.0` or `v0.14.0-rc2`.
    pub fn parse(value: &str) -> Result<OllamaVersion, AssetError> {
        let trimmed = value.trim();
        if trimmed.eq_ignore_ascii_case("latest") {
            return Ok(OllamaVersion::Latest);
        }
        ReleaseTag::parse(trimmed).map(OllamaVersion::Pinned)
    }
}

impl fmt::Display for OllamaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OllamaVersion::Latest => f.write_str("latest"),
            OllamaVersion::Pinned(tag) => tag.fmt(f),
        }
    }
}

impl std::str::FromStr for OllamaVersion {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OllamaVersion::parse(s)
    }
}

/// A release tag such as `v0.33.0` or `v0.14.0-rc2`. Always printed with its `v`, the
/// way the release site names its download folders; safe to use as a directory name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseTag {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The part after `-`, e.g. `rc2`.
    pub pre: Option<String>,
}

impl ReleaseTag {
    /// Parses `v0.33.0` or `0.33.0`, with an optional `-pre` of ASCII letters, digits and dots.
    pub fn parse(value: &str) -> Result<ReleaseTag, AssetError> {
        let invalid = || AssetError::InvalidVersion {
            value: value.to_owned(),
        };
        let body = value.strip_prefix('v').unwrap_or(value);
        let (numbers, pre) = match body.split_once('-') {
            Some((numbers, pre)) => (numbers, Some(pre)),
            None => (body, None),
        };
        let mut parts = numbers.split('.');
        let mut number = || -> Result<u64, AssetError> {
            let part = parts.next().ok_or_else(invalid)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if parts.next().is_some() {
            return Err(invalid());
        }
        let pre = match pre {
            Some(p)
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') =>
            {
                Some(p.to_owned())
            }
            Some(_) => return Err(invalid()),
            None => None,
        };
        Ok(ReleaseTag {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// Whether Linux assets of this release are `.tar.zst` (v0.14 and later) rather
    /// than `.tgz`.
    pub fn linux_uses_zstd(&self) -> bool {
        (self.major, self.minor) >= (0, 14)
    }
}

impl fmt::Display for ReleaseTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// How an asset is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Linux, v0.14 and later.
    TarZst,
    /// Linux before v0.14, and macOS.
    Tgz,
    /// Windows.
    Zip,
}

/// One downloadable file of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// The file name, e.g. `ollama-linux-amd64.tar.zst`; also its key in `sha256sum.txt`.
    pub name: String,
    pub format: ArchiveFormat,
}

/// The release asset for a Rust `std::env::consts::{OS, ARCH}` pair.
///
/// | OS      | ARCH              | asset                                   |
/// |---------|-------------------|-----------------------------------------|
/// | linux   | x86_64 / aarch64  | `ollama-linux-{amd64,arm64}.tar.zst` (v0.14+), `.tgz` before |
/// | macos   | x86_64 / aarch64  | `ollama-darwin.tgz` (universal)          |
/// | windows | x86_64 / aarch64  | `ollama-windows-{amd64,arm64}.zip`       |
pub fn release_asset(os: &str, arch: &str, version: &OllamaVersion) -> Result<Asset, AssetError> {
    let unsupported = || AssetError::UnsupportedPlatform {
        os: os.to_owned(),
        arch: arch.to_owned(),
    };
    let go_arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return Err(unsupported()),
    };
    let (name, format) = match os {
        "linux" => {
            let zstd = match version {
                OllamaVersion::Latest => true,
                OllamaVersion::Pinned(tag) => tag.linux_uses_zstd(),
            };
            if zstd {
                (
                    format!("ollama-linux-{go_arch}.tar.zst"),
                    ArchiveFormat::TarZst,
                )
            } else {
                (format!("ollama-linux-{go_arch}.tgz"), ArchiveFormat::Tgz)
            }
        }
        "macos" => ("ollama-darwin.tgz".to_owned(), ArchiveFormat::Tgz),
        "windows" => (format!("ollama-windows-{go_arch}.zip"), ArchiveFormat::Zip),
        _ => return Err(unsupported()),
    };
    Ok(Asset { name, format })
}

/// The release asset for the machine this runs on.
pub fn current_release_asset(version: &OllamaVersion) -> Result<Asset, AssetError> {
    release_asset(std::env::consts::OS, std::env::consts::ARCH, version)
}

/// Parses and checks a download base URL (`https://github.com/ollama/ollama/releases`
/// or a mirror laid out the same way).
pub fn parse_base_url(value: &str) -> Result<Url, AssetError> {
    let invalid = |reason: &str| AssetError::InvalidBaseUrl {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(value.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if crate::advertise::url_host(&url).is_none() {
        return Err(invalid("it names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(url)
}

/// The URL of `file` in a release: `{base}/latest/download/{file}` for
/// [`OllamaVersion::Latest`], `{base}/download/{tag}/{file}` for a pinned release.
pub fn release_file_url(
    base: &Url,
    version: &OllamaVersion,
    file: &str,
) -> Result<Url, AssetError> {
    let base_str = base.as_str().trim_end_matches('/');
    let joined = match version {
        OllamaVersion::Latest => format!("{base_str}/latest/download/{file}"),
        OllamaVersion::Pinned(tag) => format!("{base_str}/download/{tag}/{file}"),
    };
    Url::parse(&joined).map_err(|e| AssetError::InvalidBaseUrl {
        value: base.to_string(),
        reason: e.to_string(),
    })
}

/// The release tag in a URL of the form `…/download/{tag}/{file}`, which is where the
/// release site redirects `…/latest/download/{file}`. `None` when the URL does not
/// show one (a mirror that serves `latest` directly).
pub fn tag_from_release_url(url: &Url) -> Option<ReleaseTag> {
    let segments: Vec<&str> = url.path_segments()?.collect();
    segments
        .windows(3)
        .rev()
        .find(|w| w[0] == "download")
        .and_then(|w| ReleaseTag::parse(w[1]).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(v: &str) -> OllamaVersion {
        OllamaVersion::parse(v).expect("valid version")
    }

    #[test]
    fn version_parse_table() {
        let cases = [
            ("latest", Some("latest")),
            ("LATEST", Some("latest")),
            ("v0.33.0", Some("v0.33.0")),
            ("0.33.0", Some("v0.33.0")),
            (" 0.5.7 ", Some("v0.5.7")),
            ("v0.14.0-rc2", Some("v0.14.0-rc2")),
            ("v1.2.3-rc.1", Some("v1.2.3-rc.1")),
            ("v0.33", None),
            ("0.33.0.1", None),
            ("v0.33.x", None),
            ("", None),
            ("v", None),
            ("../../etc", None),
            ("v0.1.0-", None),
            ("v0.1.0-a/b", None),
            ("v+1.0.0", None),
        ];
        for (input, expected) in cases {
            let got = OllamaVersion::parse(input).ok().map(|v| v.to_string());
            assert_eq!(got.as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn asset_table() {
        use ArchiveFormat::*;
        let cases = [
            (
                "linux",
                "x86_64",
                "latest",
                Some(("ollama-linux-amd64.tar.zst", TarZst)),
            ),
            (
                "linux",
                "aarch64",
                "latest",
                Some(("ollama-linux-arm64.tar.zst", TarZst)),
            ),
            (
                "linux",
                "x86_64",
                "v0.33.0",
                Some(("ollama-linux-amd64.tar.zst", TarZst)),
            ),
            (
                "linux",
                "x86_64",
                "0.14.0",
                Some(("ollama-linux-amd64.tar.zst", TarZst)),
            ),
            (
                "linux",
                "x86_64",
                "v0.14.0-rc1",
                Some(("ollama-linux-amd64.tar.zst", TarZst)),
            ),
            (
                "linux",
                "x86_64",
                "v0.13.5",
                Some(("ollama-linux-amd64.tgz", Tgz)),
            ),
            (
                "linux",
                "aarch64",
                "v0.5.7",
                Some(("ollama-linux-arm64.tgz", Tgz)),
            ),
            (
                "linux",
                "x86_64",
                "v1.0.0",
                Some(("ollama-linux-amd64.tar.zst", TarZst)),
            ),
            (
                "macos",
                "aarch64",
                "latest",
                Some(("ollama-darwin.tgz", Tgz)),
            ),
            (
                "macos",
                "x86_64",
                "v0.5.7",
                Some(("ollama-darwin.tgz", Tgz)),
            ),
            (
                "windows",
                "x86_64",
                "latest",
                Some(("ollama-windows-amd64.zip", Zip)),
            ),
            (
                "windows",
                "aarch64",
                "v0.33.0",
                Some(("ollama-windows-arm64.zip", Zip)),
            ),
            ("linux", "arm", "latest", None),
            ("linux", "riscv64", "latest", None),
            ("freebsd", "x86_64", "latest", None),
            ("android", "aarch64", "latest", None),
        ];
        for (os, arch, version, expected) in cases {
            let got = release_asset(os, arch, &pinned(version));
            match expected {
                Some((name, format)) => {
                    assert_eq!(
                        got,
                        Ok(Asset {
                            name: name.to_owned(),
                            format
                        }),
                        "{os}/{arch} {version}"
                    )
                }
                None => {
                    let err = got.expect_err("unsupported platform");
                    let msg = err.to_string();
                    assert!(msg.contains(os) && msg.contains(arch), "{msg}");
                }
            }
        }
    }

    #[test]
    fn current_platform_is_supported_where_herd_is_built() {
        let asset = current_release_asset(&OllamaVersion::Latest);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(
                asset.map(|a| a.name).as_deref(),
                Ok("ollama-linux-amd64.tar.zst")
            );
        }
    }

    #[test]
    fn release_file_url_table() {
        let cases = [
            (
                DEFAULT_DOWNLOAD_BASE,
                "latest",
                "ollama-linux-amd64.tar.zst",
                "https://github.com/ollama/ollama/releases/latest/download/ollama-linux-amd64.tar.zst",
            ),
            (
                DEFAULT_DOWNLOAD_BASE,
                "v0.33.0",
                "sha256sum.txt",
                "https://github.com/ollama/ollama/releases/download/v0.33.0/sha256sum.txt",
            ),
            (
                DEFAULT_DOWNLOAD_BASE,
                "0.33.0",
                "ollama-darwin.tgz",
                "https://github.com/ollama/ollama/releases/download/v0.33.0/ollama-darwin.tgz",
            ),
            (
                "http://127.0.0.1:9999/mirror/",
                "latest",
                "sha256sum.txt",
                "http://127.0.0.1:9999/mirror/latest/download/sha256sum.txt",
            ),
            (
                "http://127.0.0.1:9999",
                "v0.14.0-rc2",
                "a.tgz",
                "http://127.0.0.1:9999/download/v0.14.0-rc2/a.tgz",
            ),
        ];
        for (base, version, file, expected) in cases {
            let base = parse_base_url(base).expect("base");
            let got = release_file_url(&base, &pinned(version), file).expect("url");
            assert_eq!(got.as_str(), expected);
        }
        for bad in [
            "ftp://mirror/x",
            "not a url",
            "http://host/x?y=1",
            "file:///tmp/x",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_from_release_url_table() {
        let cases = [
            (
                "https://github.com/ollama/ollama/releases/download/v0.33.0/sha256sum.txt",
                Some("v0.33.0"),
            ),
            (
                "http://127.0.0.1:1/mirror/download/v0.14.0-rc2/ollama-linux-amd64.tar.zst",
                Some("v0.14.0-rc2"),
            ),
            (
                "https://github.com/ollama/ollama/releases/latest/download/sha256sum.txt",
                None,
            ),
            ("https://objects.example/abc/def?x=1", None),
            ("https://mirror/download/not-a-version/file", None),
        ];
        for (url, expected) in cases {
            let url = Url::parse(url).expect("url");
            assert_eq!(
                tag_from_release_url(&url).map(|t| t.to_string()).as_deref(),
                expected,
                "{url}"
            );
        }
    }
}
