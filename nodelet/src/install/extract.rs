//! Unpacking release archives (`.tar.zst`, `.tgz`; `.zip` in [`super::unzip`]) safely.
//!
//! Every entry is checked before it is written: no absolute paths, no `..` that climbs
//! out of the destination, links only to places inside it, and only the entry kinds a
//! release contains (files, directories, symlinks, hard links). A release that breaks
//! these rules is refused as a whole rather than partly installed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tar::EntryType;

use super::asset::ArchiveFormat;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("could not open {archive}: {source}")]
    Open {
        archive: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid archive of the expected kind.
    #[error("{archive} is not a valid {format} archive: {detail}")]
    Corrupt {
        archive: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// An entry would land outside the destination.
    #[error("{archive} contains the unsafe entry {entry:?} ({reason}); refusing to install it")]
    UnsafePath {
        archive: PathBuf,
        entry: String,
        reason: &'static str,
    },
    /// An entry of a kind releases never contain (device, fifo, …).
    #[error("{archive} contains {entry:?} of unsupported kind {kind}; refusing to install it")]
    UnsupportedEntry {
        archive: PathBuf,
        entry: String,
        kind: String,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Unpacks `archive` into `dest` (which must exist). Blocking: run it on a blocking
/// thread.
pub fn extract_archive(
    archive: &Path,
    format: ArchiveFormat,
    dest: &Path,
) -> Result<ExtractStats, ExtractError> {
    let open = || {
        std::fs::File::open(archive)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(|source| ExtractError::Open {
                archive: archive.to_owned(),
                source,
            })
    };
    match format {
        ArchiveFormat::TarZst => unpack_tar(ZstdFrames::new(open()?), archive, "tar.zst", dest),
        ArchiveFormat::Tgz => unpack_tar(
            flate2::read::MultiGzDecoder::new(open()?),
            archive,
            "tgz",
            dest,
        ),
        ArchiveFormat::Zip => super::unzip::unpack_zip(archive, dest),
    }
}

fn unpack_tar<R: Read>(
    reader: R,
    archive_path: &Path,
    format: &'static str,
    dest: &Path,
) -> Result<ExtractStats, ExtractError> {
    let corrupt = |e: &dyn std::error::Error| ExtractError::Corrupt {
        archive: archive_path.to_owned(),
        format,
        detail: super::download::chain(e),
    };
    let unsafe_path = |entry: &Path, reason| ExtractError::UnsafePath {
        archive: archive_path.to_owned(),
        entry: entry.display().to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut stats = ExtractStats::default();
    let mut saw_entry = false;
    for entry in archive.entries().map_err(|e| corrupt(&e))? {
        let mut entry = entry.map_err(|e| corrupt(&e))?;
        saw_entry = true;
        let raw = entry.path().map_err(|e| corrupt(&e))?.into_owned();
        let rel = safe_entry_path(&raw).map_err(|reason| unsafe_path(&raw, reason))?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| corrupt(&e))?
                    .ok_or_else(|| unsafe_path(&raw, "a link without a target"))?
                    .into_owned();
                safe_link_target(&rel, &target, kind == EntryType::Link)
                    .map_err(|reason| unsafe_path(&raw, reason))?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {
                continue;
            }
            other => {
                return Err(ExtractError::UnsupportedEntry {
                    archive: archive_path.to_owned(),
                    entry: raw.display().to_string(),
                    kind: format!("{other:?}"),
                });
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let size = entry.size();
        let unpacked = entry
            .unpack_in(dest)
            .map_err(|source| ExtractError::Write {
                path: dest.join(&rel),
                source,
            })?;
        if !unpacked {
            return Err(unsafe_path(
                &raw,
                "tar refused to place it inside the destination",
            ));
        }
        stats.entries += 1;
        if kind == EntryType::Regular || kind == EntryType::Continuous {
            stats.file_bytes += size;
        }
    }
    if !saw_entry {
        return Err(ExtractError::Corrupt {
            archive: archive_path.to_owned(),
            format,
            detail: "it contains no files".to_owned(),
        });
    }
    Ok(stats)
}

/// The entry path relative to the destination, with `.` components dropped. Refuses
/// absolute paths and `..`.
pub fn safe_entry_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => return Err("it climbs out of the archive with '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(out)
}

/// Whether a link at `entry` (already made safe) pointing to `target` stays inside the
/// destination. Symlink targets are relative to the link's directory; hard-link
/// targets to the archive's root.
pub fn safe_link_target(entry: &Path, target: &Path, hard_link: bool) -> Result<(), &'static str> {
    if target.as_os_str().is_empty() {
        return Err("a link without a target");
    }
    let base = if hard_link {
        Path::new("")
    } else {
        entry.parent().unwrap_or(Path::new(""))
    };
    let mut depth = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                if depth == 0 {
                    return Err("it links outside the archive");
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("it links to an absolute path");
            }
        }
    }
    Ok(())
}

/// A reader over every frame of a zstd stream. ruzstd's `StreamingDecoder` stops after
/// the first frame, but zstd files may hold several (`pzstd`, concatenated files) and
/// skippable frames.
pub struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(source: R) -> ZstdFrames<R> {
        ZstdFrames {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped = std::io::copy(
                            &mut (&mut self.source).take(u64::from(length)),
                            &mut std::io::sink(),
                        )?;
                        if skipped < u64::from(length) {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "zstd skippable frame is cut short",
                            ));
                        }
                        continue;
                    }
                    Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                }
            }
            while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn entry_path_table() {
        let cases = [
            ("bin/ollama", Ok("bin/ollama")),
            ("./bin/ollama", Ok("bin/ollama")),
            ("./", Ok("")),
            (
                "lib/ollama/./cuda_v12/libggml.so",
                Ok("lib/ollama/cuda_v12/libggml.so"),
            ),
            ("../evil", Err(())),
            ("bin/../../evil", Err(())),
            ("bin/../ok-but-refused", Err(())),
            ("/etc/passwd", Err(())),
        ];
        for (input, expected) in cases {
            let got = safe_entry_path(Path::new(input));
            match expected {
                Ok(want) => assert_eq!(got.as_deref(), Ok(Path::new(want)), "{input}"),
                Err(()) => assert!(got.is_err(), "{input} → {got:?}"),
            }
        }
    }

    #[test]
    fn link_target_table() {
        let cases = [
            (
                "lib/ollama/libcudart.so.12",
                "libcudart.so.12.8.90",
                false,
                true,
            ),
            ("lib/ollama/cuda/libx.so", "../libcudart.so", false, true),
            ("lib/ollama/libx.so", "../../bin/ollama", false, true),
            ("lib/ollama/libx.so", "../../../etc/passwd", false, false),
            ("bin/ollama-link", "/usr/bin/ollama", false, false),
            ("top", "..", false, false),
            ("top", "./.", false, true),
            ("a/b", "c/../../..", false, false),
            ("a/hard", "bin/ollama", true, true),
            ("a/hard", "../x", true, false),
            ("a", "", false, false),
        ];
        for (entry, target, hard, ok) in cases {
            let got = safe_link_target(Path::new(entry), Path::new(target), hard);
            assert_eq!(
                got.is_ok(),
                ok,
                "{entry} -> {target} (hard={hard}): {got:?}"
            );
        }
    }

    fn tar_with(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_entry_type(EntryType::Regular);
            // Written by hand so that unsafe names reach the archive unchanged.
            let name = path.as_bytes();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder.into_inner().expect("finish tar")
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        path
    }

    #[test]
    fn unpacks_tar_zst_with_several_frames_and_a_skippable_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = tar_with(&[
            ("./bin/ollama", b"#!/bin/sh\necho hi\n", 0o755),
            ("./lib/ollama/libx.so", b"lib", 0o644),
        ]);
        let (first, second) = tar.split_at(tar.len() / 2);
        let mut zst =
            ruzstd::encoding::compress_to_vec(first, ruzstd::encoding::CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50, little-endian length, payload.
        zst.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        zst.extend_from_slice(&3u32.to_le_bytes());
        zst.extend_from_slice(b"xyz");
        zst.extend(ruzstd::encoding::compress_to_vec(
            second,
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let archive = write(dir.path(), "a.tar.zst", &zst);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let stats = extract_archive(&archive, ArchiveFormat::TarZst, &out).expect("extract");
        assert_eq!(stats.entries, 2);
        assert_eq!(
            std::fs::read(out.join("lib/ollama/libx.so")).expect("lib"),
            b"lib"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("bin/ollama"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        }
    }

    #[test]
    fn unpacks_tgz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = tar_with(&[("ollama", b"binary", 0o755)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let archive = write(dir.path(), "a.tgz", &gz.finish().expect("gzip finish"));
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        extract_archive(&archive, ArchiveFormat::Tgz, &out).expect("extract");
        assert_eq!(
            std::fs::read(out.join("ollama")).expect("binary"),
            b"binary"
        );
    }

    #[test]
    fn refuses_path_traversal_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        for evil in ["../escaped", "bin/../../escaped", "/tmp/absolute-escape"] {
            let tar = tar_with(&[("bin/ok", b"ok", 0o644), (evil, b"evil", 0o644)]);
            let zst = ruzstd::encoding::compress_to_vec(
                &tar[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            let archive = write(dir.path(), "evil.tar.zst", &zst);
            let err = extract_archive(&archive, ArchiveFormat::TarZst, &out).expect_err(evil);
            assert!(
                matches!(err, ExtractError::UnsafePath { .. }),
                "{evil}: {err}"
            );
            assert!(err.to_string().contains(evil), "{err}");
        }
        assert!(!dir.path().join("escaped").exists());

        let archive = write(dir.path(), "html.tar.zst", b"<html>not found</html>");
        let err = extract_archive(&archive, ArchiveFormat::TarZst, &out).expect_err("garbage");
        assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
        let err = extract_archive(&archive, ArchiveFormat::Tgz, &out).expect_err("garbage");
        assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
        let err = extract_archive(&archive, ArchiveFormat::Zip, &out).expect_err("garbage");
        assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn refuses_symlinks_out_of_the_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder
            .append_link(&mut header, "lib/escape", "../../outside")
            .expect("link");
        let tar = builder.into_inner().expect("tar");
        let archive = write(
            dir.path(),
            "link.tar.zst",
            &ruzstd::encoding::compress_to_vec(
                &tar[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let err = extract_archive(&archive, ArchiveFormat::TarZst, &out).expect_err("escape");
        assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err}");
    }
}
