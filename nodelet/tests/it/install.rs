//! The real download → verify → unpack → install path against a local release server.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use herd_nodelet::install::checksum::sha256_bytes;
use herd_nodelet::install::{
    ChecksumError, DownloadError, EnsureOutcome, FoundOllama, InstallError, InstallLayout,
    InstallPhase, InstallProgress, ProgressDisplay, ensure_ollama, find_ollama, install_ollama,
};

use crate::support::{
    Behaviour, ReleaseServer, bounded, gzip, ls, release_files, release_tar, test_options, zstd,
};

const ASSET: &str = "ollama-linux-amd64.tar.zst";

fn v033_files() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let archive = zstd(&release_tar("0.33.0", 0o755));
    let files = release_files("v0.33.0", ASSET, &archive);
    (archive, files)
}

fn assert_installed_layout(install_dir: &std::path::Path, version: &str) {
    let layout = InstallLayout::new(install_dir);
    assert_eq!(layout.current_version().as_deref(), Some(version));
    let prefix = layout.version_dir(version);
    let target =
        std::fs::read_link(prefix.join("lib/ollama/libggml.so")).expect("lib symlink kept");
    assert_eq!(target, std::path::Path::new("libggml-base.so"));
    assert_eq!(
        std::fs::metadata(prefix.join("lib/ollama/libggml-base.so"))
            .expect("lib")
            .len(),
        300_000
    );
    // Nothing left behind: no archive, no .part, no staging directory.
    assert_eq!(ls(&layout.downloads_dir()), Vec::<String>::new());
    assert_eq!(
        ls(install_dir),
        vec![".lock", "current", "downloads", "versions"]
    );
}

/// Runs `<binary> --version`. Retries ETXTBSY: another test's fork may briefly hold a
/// write descriptor of a file this process just wrote.
fn run_version(binary: &std::path::Path) -> String {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    let out = loop {
        match std::process::Command::new(binary).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("run installed binary"),
        }
    };
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn installs_a_pinned_release_end_to_end() {
    bounded(async {
        let (archive, files) = v033_files();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let install_dir = dir.path().join("herd-ollama");
        let (tx, mut rx) = tokio::sync::watch::channel(InstallProgress::default());
        let mut options = test_options(&install_dir, &server.base, "0.33.0");
        options.progress = Some(tx);
        // A watch channel keeps only the latest value, so a watcher may skip phases;
        // it must see them in order, the download's size, and the end.
        let phases = tokio::spawn(async move {
            let mut phases = Vec::new();
            let mut download = None;
            while rx.changed().await.is_ok() {
                let p = rx.borrow_and_update().clone();
                if phases.last() != Some(&p.phase) {
                    phases.push(p.phase);
                }
                if p.phase == InstallPhase::Downloading && p.total.is_some() {
                    download = Some((p.file.clone(), p.total));
                }
                if matches!(p.phase, InstallPhase::Installed | InstallPhase::Failed) {
                    break;
                }
            }
            (phases, download)
        });

        let started = Instant::now();
        let installed = install_ollama(&options).await.expect("install");
        eprintln!("pinned install took {:?}", started.elapsed());

        assert_eq!(installed.version, "v0.33.0");
        assert_eq!(installed.asset, ASSET);
        assert_eq!(installed.sha256, sha256_bytes(&archive));
        assert_eq!(installed.download_attempts, 1);
        assert_eq!(
            installed.binary,
            install_dir.join("versions/v0.33.0/bin/ollama")
        );
        assert_eq!(run_version(&installed.binary), "ollama version is 0.33.0");
        assert_eq!(
            run_version(&install_dir.join("current/bin/ollama")),
            "ollama version is 0.33.0"
        );
        assert_installed_layout(&install_dir, "v0.33.0");
        let (phases, download) = phases.await.expect("progress watcher");
        let order = [
            InstallPhase::Downloading,
            InstallPhase::Verifying,
            InstallPhase::Extracting,
            InstallPhase::Installed,
        ];
        let ranks: Vec<_> = phases
            .iter()
            .map(|p| order.iter().position(|o| o == p))
            .collect();
        assert!(ranks.iter().all(Option::is_some), "{phases:?}");
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{phases:?}");
        assert_eq!(
            phases.first(),
            Some(&InstallPhase::Downloading),
            "{phases:?}"
        );
        assert_eq!(phases.last(), Some(&InstallPhase::Installed), "{phases:?}");
        assert_eq!(
            download,
            Some((ASSET.to_owned(), Some(archive.len() as u64)))
        );
        let paths: Vec<_> = server
            .seen()
            .into_iter()
            .map(|s| (s.method, s.path))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    "GET".to_owned(),
                    "/download/v0.33.0/sha256sum.txt".to_owned()
                ),
                ("GET".to_owned(), format!("/download/v0.33.0/{ASSET}")),
            ]
        );

        // The next start finds it and downloads nothing.
        let found = find_ollama(None, &install_dir, &options.version);
        assert_eq!(
            found,
            vec![FoundOllama::InstallDir {
                binary: installed.binary.clone(),
                version: "v0.33.0".into()
            }]
        );
        let outcome = ensure_ollama(&found, &options, false)
            .await
            .expect("ensure");
        assert_eq!(outcome, EnsureOutcome::Existing(found[0].clone()));
        assert_eq!(server.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn ensure_installs_when_nothing_is_found_and_sets_the_executable_bit() {
    bounded(async {
        // The archive's binary is not executable; the install makes it so.
        let archive = zstd(&release_tar("0.33.0", 0o644));
        let server = ReleaseServer::start(
            release_files("v0.33.0", ASSET, &archive),
            Behaviour::default(),
        )
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "v0.33.0");
        options.display = ProgressDisplay::Log;
        let found = find_ollama(Some(std::ffi::OsStr::new("")), dir.path(), &options.version);
        assert!(found.is_empty());
        let EnsureOutcome::Installed(installed) = ensure_ollama(&found, &options, false)
            .await
            .expect("ensure")
        else {
            panic!("expected an install");
        };
        assert_eq!(run_version(&installed.binary), "ollama version is 0.33.0");

        // --no-install with nothing found refuses before any request.
        let empty = tempfile::tempdir().expect("tempdir");
        let before = server.seen().len();
        let err = ensure_ollama(
            &[],
            &test_options(empty.path(), &server.base, "latest"),
            true,
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, InstallError::Refused(_)), "{err}");
        assert!(err.to_string().contains("--no-install"), "{err}");
        assert_eq!(server.seen().len(), before);
    })
    .await;
}

#[tokio::test]
async fn latest_is_resolved_through_the_redirect_to_its_tag() {
    bounded(async {
        let archive = zstd(&release_tar("0.34.0", 0o755));
        let behaviour = Behaviour {
            latest_tag: Some("v0.34.0".into()),
            ..Behaviour::default()
        };
        let server =
            ReleaseServer::start(release_files("v0.34.0", ASSET, &archive), behaviour).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "latest"))
            .await
            .expect("install");
        assert_eq!(installed.version, "v0.34.0");
        assert_installed_layout(dir.path(), "v0.34.0");
        let seen: Vec<_> = server
            .seen()
            .into_iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect();
        assert_eq!(
            seen,
            vec![
                format!("HEAD /latest/download/{ASSET}"),
                "GET /download/v0.34.0/sha256sum.txt".to_owned(),
                format!("GET /download/v0.34.0/{ASSET}"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn latest_from_a_mirror_without_redirects_is_named_by_its_digest() {
    bounded(async {
        let archive = zstd(&release_tar("0.35.0", 0o755));
        let files = release_files("v0.35.0", ASSET, &archive)
            .into_iter()
            .map(|(path, bytes)| {
                (
                    path.replace("/download/v0.35.0/", "/latest/download/"),
                    bytes,
                )
            })
            .collect();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "latest"))
            .await
            .expect("install");
        let expected = format!("latest-{}", &sha256_bytes(&archive)[..12]);
        assert_eq!(installed.version, expected);
        assert_installed_layout(dir.path(), &expected);
        assert_eq!(run_version(&installed.binary), "ollama version is 0.35.0");
    })
    .await;
}

#[tokio::test]
async fn checksum_mismatch_is_refused_and_the_download_deleted() {
    bounded(async {
        let (_, mut files) = v033_files();
        // Publish the digest of a different archive.
        let other = zstd(&release_tar("evil", 0o755));
        files[1].1 = crate::support::sums_file(&[(ASSET, &other)]).into_bytes();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let err = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect_err("mismatch");
        let msg = err.to_string();
        match &err {
            InstallError::Checksum(ChecksumError::Mismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, &sha256_bytes(&other));
                assert!(msg.contains(expected) && msg.contains(actual), "{msg}");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let layout = InstallLayout::new(dir.path());
        assert_eq!(
            ls(&layout.downloads_dir()),
            Vec::<String>::new(),
            "the bad download is deleted"
        );
        assert_eq!(
            ls(&layout.versions_dir()),
            Vec::<String>::new(),
            "nothing installed"
        );
        assert_eq!(layout.current_version(), None);
    })
    .await;
}

#[tokio::test]
async fn an_asset_missing_from_the_sums_file_is_an_error_before_downloading() {
    bounded(async {
        let (_, mut files) = v033_files();
        files[1].1 = crate::support::sums_file(&[]).into_bytes();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let err = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect_err("missing");
        assert!(
            matches!(
                err,
                InstallError::Checksum(ChecksumError::MissingEntry { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains(ASSET), "{err}");
        assert_eq!(server.count(&format!("/download/v0.33.0/{ASSET}")), 0);
    })
    .await;
}

#[tokio::test]
async fn a_body_cut_halfway_is_resumed_with_range() {
    bounded(async {
        let (archive, files) = v033_files();
        let half = archive.len() / 2;
        let asset_path = format!("/download/v0.33.0/{ASSET}");
        let behaviour = Behaviour {
            cut_after: HashMap::from([(asset_path.clone(), half)]),
            ..Behaviour::default()
        };
        let server = ReleaseServer::start(files, behaviour).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect("install");
        assert_eq!(installed.download_attempts, 2);
        assert_eq!(installed.sha256, sha256_bytes(&archive));
        let ranges: Vec<_> = server
            .seen()
            .into_iter()
            .filter(|s| s.path == asset_path)
            .map(|s| s.range)
            .collect();
        assert_eq!(ranges, vec![None, Some(format!("bytes={half}-"))]);
        assert_installed_layout(dir.path(), "v0.33.0");
    })
    .await;
}

#[tokio::test]
async fn a_server_that_cannot_resume_is_downloaded_again_from_the_start() {
    bounded(async {
        let (archive, files) = v033_files();
        let asset_path = format!("/download/v0.33.0/{ASSET}");
        let behaviour = Behaviour {
            cut_after: HashMap::from([(asset_path.clone(), archive.len() / 3)]),
            ignore_range: true,
            ..Behaviour::default()
        };
        let server = ReleaseServer::start(files, behaviour).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect("install");
        assert_eq!(installed.download_attempts, 2);
        assert_eq!(installed.sha256, sha256_bytes(&archive));
        // It asked to resume, got the whole file (200) and kept only that.
        let ranges: Vec<_> = server
            .seen()
            .into_iter()
            .filter(|s| s.path == asset_path)
            .map(|s| s.range)
            .collect();
        assert_eq!(
            ranges,
            vec![None, Some(format!("bytes={}-", archive.len() / 3))]
        );
        assert_installed_layout(dir.path(), "v0.33.0");
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    bounded(async {
        let (_, files) = v033_files();
        let asset_path = format!("/download/v0.33.0/{ASSET}");
        let sums_path = "/download/v0.33.0/sha256sum.txt".to_owned();
        let behaviour = Behaviour {
            failures: HashMap::from([
                (asset_path.clone(), VecDeque::from([503, 500, 429])),
                (sums_path.clone(), VecDeque::from([502])),
            ]),
            ..Behaviour::default()
        };
        let server = ReleaseServer::start(files, behaviour).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect("install");
        assert_eq!(installed.download_attempts, 4);
        assert_eq!(server.count(&asset_path), 4);
        assert_eq!(server.count(&sums_path), 2);
        assert_installed_layout(dir.path(), "v0.33.0");
    })
    .await;
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_five_tries() {
    bounded(async {
        let (_, files) = v033_files();
        let asset_path = format!("/download/v0.33.0/{ASSET}");
        let behaviour = Behaviour {
            failures: HashMap::from([(asset_path.clone(), VecDeque::from([500; 10]))]),
            ..Behaviour::default()
        };
        let server = ReleaseServer::start(files, behaviour).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let err = install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect_err("gives up");
        match &err {
            InstallError::Download(DownloadError::GaveUp { attempts, last, .. }) => {
                assert_eq!(*attempts, 5);
                assert!(last.contains("500"), "{last}");
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
        assert_eq!(server.count(&asset_path), 5);
        assert_eq!(
            ls(&InstallLayout::new(dir.path()).downloads_dir()),
            Vec::<String>::new()
        );
    })
    .await;
}

#[tokio::test]
async fn not_found_fails_fast_naming_the_url() {
    bounded(async {
        let (_, files) = v033_files();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        // Slow retries: a 404 must not wait for any of them.
        let mut options = test_options(dir.path(), &server.base, "v9.9.9");
        options.http.retry = options.http.retry.with_base(Duration::from_secs(10));
        let started = Instant::now();
        let err = install_ollama(&options).await.expect_err("404");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let msg = err.to_string();
        let sums_url = format!("{}download/v9.9.9/sha256sum.txt", server.base);
        assert!(msg.contains(&sums_url) && msg.contains("404"), "{msg}");
        assert!(msg.contains("--ollama-version"), "{msg}");
        assert_eq!(server.count("/download/v9.9.9/sha256sum.txt"), 1);

        // Without verification the archive's own URL is the one named.
        options.verify_checksum = false;
        let err = install_ollama(&options).await.expect_err("404");
        let asset_url = format!("{}download/v9.9.9/{ASSET}", server.base);
        assert!(err.to_string().contains(&asset_url), "{err}");
        assert_eq!(server.count(&format!("/download/v9.9.9/{ASSET}")), 1);
    })
    .await;
}

#[tokio::test]
async fn verification_can_be_turned_off_explicitly() {
    bounded(async {
        let (archive, files) = v033_files();
        // No sums file at all.
        let files = files
            .into_iter()
            .filter(|(p, _)| !p.ends_with("sha256sum.txt"))
            .collect();
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "v0.33.0");
        let err = install_ollama(&options)
            .await
            .expect_err("verification is on by default");
        assert!(err.to_string().contains("sha256sum.txt"), "{err}");
        options.verify_checksum = false;
        let installed = install_ollama(&options).await.expect("install");
        assert_eq!(installed.sha256, sha256_bytes(&archive));
    })
    .await;
}

#[tokio::test]
async fn releases_before_0_14_are_tgz() {
    bounded(async {
        let asset = "ollama-linux-amd64.tgz";
        let archive = gzip(&release_tar("0.13.5", 0o755));
        let server = ReleaseServer::start(
            release_files("v0.13.5", asset, &archive),
            Behaviour::default(),
        )
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let installed = install_ollama(&test_options(dir.path(), &server.base, "0.13.5"))
            .await
            .expect("install");
        assert_eq!(installed.asset, asset);
        assert_eq!(run_version(&installed.binary), "ollama version is 0.13.5");
        assert_installed_layout(dir.path(), "v0.13.5");
    })
    .await;
}

#[tokio::test]
async fn a_second_version_becomes_current_and_the_first_is_kept() {
    bounded(async {
        let (_, mut files) = v033_files();
        let newer = zstd(&release_tar("0.34.0", 0o755));
        files.extend(release_files("v0.34.0", ASSET, &newer));
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect("first");
        install_ollama(&test_options(dir.path(), &server.base, "v0.34.0"))
            .await
            .expect("second");
        let layout = InstallLayout::new(dir.path());
        assert_eq!(ls(&layout.versions_dir()), vec!["v0.33.0", "v0.34.0"]);
        assert_eq!(
            run_version(&dir.path().join("current/bin/ollama")),
            "ollama version is 0.34.0"
        );
        // Re-installing an existing version replaces it in place.
        install_ollama(&test_options(dir.path(), &server.base, "v0.33.0"))
            .await
            .expect("again");
        assert_eq!(ls(&layout.versions_dir()), vec!["v0.33.0", "v0.34.0"]);
        assert_eq!(layout.current_version().as_deref(), Some("v0.33.0"));
    })
    .await;
}

#[tokio::test]
async fn unsupported_targets_fail_before_any_request() {
    bounded(async {
        let server = ReleaseServer::start(Vec::new(), Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "latest");
        options.arch = "riscv64".into();
        let err = install_ollama(&options).await.expect_err("riscv");
        assert!(err.to_string().contains("linux/riscv64"), "{err}");
        assert!(server.seen().is_empty());
    })
    .await;
}

/// A zip laid out like Ollama's Windows release: `ollama.exe` at the top, libraries
/// under `lib/ollama/`.
fn windows_zip(exe: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in [
        ("ollama.exe", exe),
        ("lib/ollama/ggml-base.dll", b"a library".as_slice()),
    ] {
        zip.start_file(name, options).expect("start");
        zip.write_all(data).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

#[tokio::test]
async fn a_windows_zip_release_installs_with_its_checksum() {
    bounded(async {
        let zip = windows_zip(b"MZ not really a program");
        let files = release_files("v0.33.0", "ollama-windows-amd64.zip", &zip);
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "0.33.0");
        options.os = "windows".into();
        let installed = install_ollama(&options).await.expect("install");
        assert_eq!(installed.asset, "ollama-windows-amd64.zip");
        assert_eq!(installed.sha256, sha256_bytes(&zip));
        assert_eq!(
            installed.binary,
            dir.path().join("versions/v0.33.0/ollama.exe")
        );
        assert_eq!(
            std::fs::read(dir.path().join("versions/v0.33.0/lib/ollama/ggml-base.dll"))
                .expect("dll"),
            b"a library"
        );
        assert_eq!(
            InstallLayout::new(dir.path()).current_version().as_deref(),
            Some("v0.33.0")
        );

        // A zip whose bytes differ from sha256sum.txt is refused and leaves nothing.
        let other = tempfile::tempdir().expect("tempdir");
        let mut files = release_files("v0.33.0", "ollama-windows-amd64.zip", &zip);
        files[0].1 = windows_zip(b"MZ tampered");
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let mut options = test_options(other.path(), &server.base, "0.33.0");
        options.os = "windows".into();
        let err = install_ollama(&options).await.expect_err("tampered");
        assert!(
            matches!(err, InstallError::Checksum(ChecksumError::Mismatch { .. })),
            "{err}"
        );
        assert!(!other.path().join("versions/v0.33.0").exists());
    })
    .await;
}

#[tokio::test]
async fn an_amd_gpu_gets_the_rocm_archive_over_the_main_one() {
    bounded(async {
        let main = zstd(&release_tar("0.33.0", 0o755));
        let rocm = {
            let mut builder = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(4);
            builder
                .append_data(
                    &mut h,
                    "./lib/ollama/rocm/libggml-hip.so",
                    b"rocm".as_slice(),
                )
                .expect("entry");
            zstd(&builder.into_inner().expect("tar"))
        };
        let rocm_name = "ollama-linux-amd64-rocm.tar.zst";
        let sums = crate::support::sums_file(&[(ASSET, &main), (rocm_name, &rocm)]);
        let files = vec![
            (format!("/download/v0.33.0/{ASSET}"), main.clone()),
            (format!("/download/v0.33.0/{rocm_name}"), rocm.clone()),
            (
                "/download/v0.33.0/sha256sum.txt".to_owned(),
                sums.into_bytes(),
            ),
        ];
        let server = ReleaseServer::start(files, Behaviour::default()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "0.33.0");
        options.accelerator = herd_nodelet::install::Accelerator::Rocm;
        let installed = install_ollama(&options).await.expect("install");
        assert_eq!(installed.accelerator_asset.as_deref(), Some(rocm_name));
        let prefix = dir.path().join("versions/v0.33.0");
        assert_eq!(
            run_version(&prefix.join("bin/ollama")),
            "ollama version is 0.33.0"
        );
        assert_eq!(
            std::fs::read(prefix.join("lib/ollama/rocm/libggml-hip.so")).expect("rocm lib"),
            b"rocm"
        );
        assert_eq!(server.count(&format!("/download/v0.33.0/{rocm_name}")), 1);
        assert_eq!(
            ls(&InstallLayout::new(dir.path()).downloads_dir()),
            Vec::<String>::new()
        );
    })
    .await;
}
