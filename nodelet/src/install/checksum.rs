//! `sha256sum.txt` parsing and SHA-256 of downloaded files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a checksum could not be checked or did not match.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// A line of `sha256sum.txt` is not `<64 hex digits>  <file>`.
    #[error("line {line} of sha256sum.txt is not \"<sha256>  <file>\": {text:?} ({reason})")]
    Malformed {
        line: usize,
        text: String,
        reason: &'static str,
    },
    /// The same file is listed twice with different digests.
    #[error("sha256sum.txt lists {file} twice with different digests")]
    Conflicting { file: String },
    /// The release's checksum file does not list the asset.
    #[error(
        "{source_url} has no checksum for {asset}, so the download cannot be verified; \
         check --ollama-version and --download-base-url"
    )]
    MissingEntry { asset: String, source_url: String },
    /// The download's digest differs from the published one.
    #[error(
        "SHA-256 of the downloaded {asset} is {actual}, but the release's sha256sum.txt says \
         {expected}; the file was corrupted or tampered with in transit and has been deleted"
    )]
    Mismatch {
        asset: String,
        expected: String,
        actual: String,
    },
    /// The file could not be read.
    #[error("could not read {path} to compute its SHA-256: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `sha256sum` output: one `<hex>  <file>` per line, as Ollama publishes it with
/// a `./` before each file name. Tolerates names without `./`, the `*` binary-mode
/// marker, CRLF line ends, blank lines and `#` comments. Digests come back lowercase,
/// keyed by the bare file name.
pub fn parse_sha256sums(text: &str) -> Result<BTreeMap<String, String>, ChecksumError> {
    let mut sums = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |reason| ChecksumError::Malformed {
            line: index + 1,
            text: raw.to_owned(),
            reason,
        };
        let (hex, rest) = line
            .split_once([' ', '\t'])
            .ok_or_else(|| malformed("no file name"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("the digest is not 64 hex digits"));
        }
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('*').unwrap_or(rest);
        let mut name = rest;
        while let Some(stripped) = name.strip_prefix("./") {
            name = stripped;
        }
        if name.is_empty() {
            return Err(malformed("no file name"));
        }
        let digest = hex.to_ascii_lowercase();
        if let Some(previous) = sums.insert(name.to_owned(), digest.clone())
            && previous != digest
        {
            return Err(ChecksumError::Conflicting {
                file: name.to_owned(),
            });
        }
    }
    Ok(sums)
}

/// The lowercase hex SHA-256 of a file. Blocking: run it on a blocking thread.
pub fn sha256_file(path: &Path) -> Result<String, ChecksumError> {
    let read_error = |source| ChecksumError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// The lowercase hex SHA-256 of some bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    const B: &str = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";

    #[test]
    fn parses_the_ollama_layout_and_variants() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae  ./ollama-linux-amd64.tar.zst\n\
                 fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9  ./ollama-darwin.tgz\n",
                &[("ollama-darwin.tgz", B), ("ollama-linux-amd64.tar.zst", A)],
            ),
            (
                &format!("{A}  ollama-linux-arm64.tgz"),
                &[("ollama-linux-arm64.tgz", A)],
            ),
            (
                &format!("{A} *./ollama-windows-amd64.zip\r\n"),
                &[("ollama-windows-amd64.zip", A)],
            ),
            (&format!("{A} *ollama.zip"), &[("ollama.zip", A)]),
            (
                &format!("\n\n# comment\n{}\t./x.tgz\r\n\r\n", A.to_uppercase()),
                &[("x.tgz", A)],
            ),
            (
                &format!("{A}  ./file with spaces.tgz  "),
                &[("file with spaces.tgz", A)],
            ),
            (&format!("{A}  ./x\n{A}  x\n"), &[("x", A)]),
            ("", &[]),
        ];
        for (text, expected) in cases {
            let got = parse_sha256sums(text).expect(text);
            let want: BTreeMap<String, String> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        let cases = [
            (A.to_owned(), 1),
            (format!("{A}  ./"), 1),
            (format!("ok\n{}  ./x", &A[..63]), 1),
            (format!("{A}  ./a\n{}g  ./x", &A[..63]), 2),
            (format!("{A}0  ./x"), 1),
            ("zz  ./x".to_owned(), 1),
        ];
        for (text, line) in cases {
            match parse_sha256sums(&text) {
                Err(ChecksumError::Malformed { line: got, .. }) => {
                    assert_eq!(got, line, "{text:?}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let conflict = format!("{A}  ./x\n{B}  x\n");
        assert!(matches!(
            parse_sha256sums(&conflict),
            Err(ChecksumError::Conflicting { .. })
        ));
    }

    #[test]
    fn digests_match_known_values() {
        assert_eq!(sha256_bytes(b"foo"), A);
        assert_eq!(sha256_bytes(b"bar"), B);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"foo").expect("write");
        assert_eq!(sha256_file(&path).expect("hash"), A);
        assert!(matches!(
            sha256_file(&dir.path().join("missing")),
            Err(ChecksumError::Read { .. })
        ));
    }
}
