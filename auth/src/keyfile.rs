//! Key files: where a token rests on disk (the server's `admin.key` and
//! `join.key`, the nodelet's node key, `--token-file`), readable by its owner
//! only, so service files and process lists never need to hold a secret.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::token::{Token, TokenError};

/// Why a key file could not be written or read. Names the file, never its
/// content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
}

/// Writes `token` (whole, with its CA fingerprint if it has one) to `path`,
/// mode 0600 on Unix. The token goes to a new file beside `path` that is then
/// renamed over it, so a reader sees the old key or the new one, never a part,
/// and the secret is never in a file another user could read, even briefly.
pub fn write_key_file(path: &Path, token: &Token) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A file left by a write that died midway would make `create_new` fail.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(token.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Reads a token from `path`; surrounding whitespace is ignored.
pub fn read_key_file(path: &Path) -> Result<Token, KeyFileError> {
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    Token::parse(text.trim()).map_err(|source| KeyFileError::Format {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::generate;

    #[test]
    fn round_trip_replaces_and_keeps_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("join.key");
        let first = generate().expect("random").token.with_ca_sha256([7; 32]);
        write_key_file(&path, &first).expect("write");
        assert_eq!(read_key_file(&path).expect("read"), first);
        let second = generate().expect("random").token;
        write_key_file(&path, &second).expect("overwrite");
        assert_eq!(read_key_file(&path).expect("read"), second);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["join.key"], "no temporary file is left");
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_may_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.key");
        write_key_file(&path, &generate().expect("random").token).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let secretish = "herd_abcdefgh1234_notquitelongenoughtobeasecret";
        fs::write(&path, secretish).expect("write");
        let err = read_key_file(&path).expect_err("malformed");
        let text = err.to_string();
        assert!(text.contains("node.key"), "{text}");
        assert!(!text.contains("notquite"), "{text}");

        let missing = read_key_file(&dir.path().join("absent.key")).expect_err("missing");
        assert!(matches!(missing, KeyFileError::Io { .. }), "{missing:?}");

        let stale = dir.path().join("k.key.tmp");
        fs::write(&stale, "partial").expect("write");
        let token = generate().expect("random").token;
        write_key_file(&dir.path().join("k.key"), &token).expect("a stale temp file is replaced");
        assert!(!stale.exists());
    }
}
