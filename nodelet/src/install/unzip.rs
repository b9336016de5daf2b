//! Unpacking `.zip` release archives (Ollama's Windows assets) with the same rules as
//! the tar formats: every entry is checked before anything is written, names that
//! climb out of the destination or are absolute are refused, and links (which a
//! Windows release never holds) are refused too.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::extract::{ExtractError, ExtractStats, safe_entry_path};

/// Unpacks the zip at `archive_path` into `dest` (which must exist). Blocking.
pub fn unpack_zip(archive_path: &Path, dest: &Path) -> Result<ExtractStats, ExtractError> {
    let corrupt = |detail: String| ExtractError::Corrupt {
        archive: archive_path.to_owned(),
        format: "zip",
        detail,
    };
    let file = std::fs::File::open(archive_path).map_err(|source| ExtractError::Open {
        archive: archive_path.to_owned(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| corrupt(super::download::chain(&e)))?;
    if zip.is_empty() {
        return Err(corrupt("it contains no files".to_owned()));
    }

    // Check every name first, so a bad entry late in the archive leaves nothing behind.
    let mut plan = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip
            .by_index_raw(index)
            .map_err(|e| corrupt(super::download::chain(&e)))?;
        let raw = entry
            .name()
            .map_err(|e| corrupt(super::download::chain(&e)))?
            .into_owned();
        let rel = zip_entry_path(&raw).map_err(|reason| ExtractError::UnsafePath {
            archive: archive_path.to_owned(),
            entry: raw.clone(),
            reason,
        })?;
        if entry.is_symlink() {
            return Err(ExtractError::UnsupportedEntry {
                archive: archive_path.to_owned(),
                entry: raw,
                kind: "symlink".to_owned(),
            });
        }
        plan.push((index, rel, entry.is_dir(), entry.unix_mode()));
    }

    let mut stats = ExtractStats::default();
    for (index, rel, is_dir, mode) in plan {
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = dest.join(&rel);
        let write_err = |source| ExtractError::Write {
            path: path.clone(),
            source,
        };
        if is_dir {
            std::fs::create_dir_all(&path).map_err(write_err)?;
            stats.entries += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let mut entry = zip
            .by_index(index)
            .map_err(|e| corrupt(super::download::chain(&e)))?;
        let mut out = std::fs::File::create(&path).map_err(write_err)?;
        // Reading the entry to its end checks its CRC; a mismatch is a read error.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("{}: {e}", rel.display())))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(write_err)?;
            stats.file_bytes += n as u64;
        }
        set_mode(&path, mode).map_err(write_err)?;
        stats.entries += 1;
    }
    Ok(stats)
}

/// A zip entry's name as a relative path. Zip names use `/`, but archives made on
/// Windows by some tools use `\`; both separate components here, so `..\x` is refused
/// like `../x`.
pub fn zip_entry_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.contains('\0') {
        return Err("its name contains a NUL byte");
    }
    let normalized = name.replace('\\', "/");
    // A drive letter (`C:`) makes a Windows path absolute.
    if normalized.as_bytes().get(1) == Some(&b':') {
        return Err("it is an absolute path");
    }
    let mut out = PathBuf::new();
    for part in normalized.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it climbs out of the archive with '..'"),
            part => out.push(safe_entry_path(Path::new(part))?),
        }
    }
    if normalized.starts_with('/') {
        return Err("it is an absolute path");
    }
    Ok(out)
}

/// Keeps the executable bits an entry made on Unix carries; Windows ignores modes.
fn set_mode(path: &Path, mode: Option<u32>) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o755))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o755);
            writer.start_file(*name, options).expect("start");
            writer.write_all(data).expect("write");
        }
        writer.finish().expect("finish").into_inner()
    }

    #[test]
    fn entry_path_table() {
        let cases = [
            ("ollama.exe", Some("ollama.exe")),
            ("lib/ollama/ggml-base.dll", Some("lib/ollama/ggml-base.dll")),
            ("./lib/./x.dll", Some("lib/x.dll")),
            ("lib\\ollama\\x.dll", Some("lib/ollama/x.dll")),
            ("lib/", Some("lib")),
            ("../x", None),
            ("lib/../../x", None),
            ("..\\x", None),
            ("/etc/passwd", None),
            ("\\Windows\\x", None),
            ("C:/Windows/x", None),
            ("c:x", None),
            ("a\0b", None),
        ];
        for (name, expected) in cases {
            let got = zip_entry_path(name).ok();
            assert_eq!(got, expected.map(PathBuf::from), "{name:?}");
        }
    }

    #[test]
    fn unpacks_a_windows_release_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("ollama-windows-amd64.zip");
        std::fs::write(
            &archive,
            zip_with(&[
                ("ollama.exe", b"MZ the binary"),
                ("lib/ollama/ggml-base.dll", b"a library"),
            ]),
        )
        .expect("write");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let stats = unpack_zip(&archive, &out).expect("unzip");
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.file_bytes, 13 + 9);
        assert_eq!(
            std::fs::read(out.join("ollama.exe")).expect("exe"),
            b"MZ the binary"
        );
        assert_eq!(
            std::fs::read(out.join("lib/ollama/ggml-base.dll")).expect("dll"),
            b"a library"
        );
    }

    #[test]
    fn refuses_escapes_garbage_and_corruption_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let archive = dir.path().join("a.zip");

        std::fs::write(
            &archive,
            zip_with(&[("ok.txt", b"ok"), ("../escaped", b"evil")]),
        )
        .expect("write");
        let err = unpack_zip(&archive, &out).expect_err("escape");
        assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err}");
        assert!(!dir.path().join("escaped").exists());
        assert!(
            !out.join("ok.txt").exists(),
            "nothing is written before every name is checked"
        );

        std::fs::write(&archive, b"<html>not found</html>").expect("write");
        let err = unpack_zip(&archive, &out).expect_err("garbage");
        assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");

        // Flip a byte of the stored data: the CRC check catches it.
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        writer.start_file("ollama.exe", stored).expect("start");
        writer.write_all(b"0123456789abcdef").expect("write");
        let mut bytes = writer.finish().expect("finish").into_inner();
        let at = bytes
            .windows(16)
            .position(|w| w == b"0123456789abcdef")
            .expect("data in the archive");
        bytes[at] = b'X';
        std::fs::write(&archive, bytes).expect("write");
        let err = unpack_zip(&archive, &out).expect_err("crc");
        assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
    }
}
