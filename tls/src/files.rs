//! Reading PEM files with errors that name the file, and writing keys readable by their
//! owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file, leaf first as TLS sends them.
pub(crate) fn parse_certificates(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE section".to_owned()));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn parse_private_key(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|e| TlsError::BadPrivateKey {
        path: path.to_owned(),
        reason: key_reason(&e).to_owned(),
    })
}

/// A reason that says what is wrong without quoting the file: base64 errors can echo the
/// bytes of a key.
fn key_reason(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::NoItemsFound => "no PRIVATE KEY section",
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable",
    }
}

/// Writes a file that only its owner may read (0600 on Unix), replacing any previous one
/// in a single rename so a reader never sees half a key.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_replacing(path, contents, 0o600)
}

/// Writes a certificate, readable by everyone (0644 on Unix), in a single rename.
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_replacing(path, contents, 0o644)
}

fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = temp_path(path);
    // A leftover from an interrupted write may have other permissions; start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = options.open(&tmp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(e));
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_name_the_file() {
        let path = Path::new("/etc/herd/server.crt");
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ];
        for pem_bytes in cases {
            let err = parse_certificates(path, pem_bytes).expect_err("must fail");
            assert!(
                err.to_string().starts_with("/etc/herd/server.crt: "),
                "{err}"
            );
        }
    }

    #[test]
    fn key_errors_name_the_file_and_never_echo_it() {
        let path = Path::new("/etc/herd/server.key");
        let secretish = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET*#\n-----END PRIVATE KEY-----\n";
        let cases: &[&[u8]] = &[
            b"",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            secretish.as_bytes(),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
        ];
        for pem_bytes in cases {
            let err = parse_private_key(path, pem_bytes).expect_err("must fail");
            let text = err.to_string();
            assert!(text.starts_with("/etc/herd/server.key: "), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert!(!temp_path(&path).exists());
        let public = dir.path().join("c.crt");
        write_public(&public, b"cert").expect("write");
        assert_eq!(std::fs::read(&public).expect("read"), b"cert");
    }
}
