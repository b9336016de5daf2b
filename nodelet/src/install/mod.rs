//! Making sure an Ollama binary exists, installing it into herd's own directory when
//! it is missing.
//!
//! The decisions are pure and tested by tables: which asset fits this machine
//! ([`release_asset`]) and which accelerator archive goes over it on Linux
//! ([`choose_accelerator`]), where Ollama's own installers put it
//! ([`system::system_candidates`]), what `sha256sum.txt` says ([`parse_sha256sums`]),
//! which proxy a URL goes through ([`HttpProxySettings::proxy_for`]), what to do given
//! what was found ([`plan_install`]). [`install_ollama`] is the I/O that carries out an
//! install: download (streamed, retried, resumed), verify, unpack (`.tar.zst`, `.tgz`,
//! `.zip`), put in place atomically. The directory layout is described in [`layout`].

pub mod accel;
pub mod asset;
pub mod checksum;
pub mod download;
pub mod extract;
pub mod layout;
pub mod progress;
pub mod proxy;
pub mod system;
pub mod unzip;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use tokio::sync::watch;

pub use accel::{Accelerator, AcceleratorFacts, choose_accelerator, probe_accelerator};
pub use asset::{
    ArchiveFormat, Asset, AssetError, DEFAULT_DOWNLOAD_BASE, OllamaVersion, ReleaseTag,
    SHA256SUMS_FILE, current_release_asset, parse_base_url, release_asset, release_file_url,
    tag_from_release_url,
};
pub use checksum::{ChecksumError, parse_sha256sums, sha256_file};
pub use download::{DownloadError, HttpSettings, http_client};
pub use extract::{ExtractError, extract_archive};
pub use layout::{InstallLayout, OLLAMA_EXE};
pub use progress::{InstallPhase, InstallProgress, ProgressDisplay, describe_progress};
pub use proxy::{HttpProxyError, HttpProxySettings, NoProxy};

use herd_client::backoff::Backoff;
use progress::Reporter;

/// The largest `sha256sum.txt` accepted; a real one is a few kilobytes.
const SHA256SUMS_LIMIT: usize = 1 << 20;

/// Why Ollama could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error(transparent)]
    Proxy(#[from] HttpProxyError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The archive unpacked but holds no executable where releases put it.
    #[error(
        "the Ollama archive {asset} has neither bin/{exe} nor {exe} at its top; \
         is --download-base-url a faithful mirror of the Ollama releases?"
    )]
    NoBinary { asset: String, exe: String },
    /// herd's install directory could not be prepared or updated.
    #[error("could not {action} in herd's Ollama install directory ({path}): {source}")]
    InstallDir {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process is installing into the same directory.
    #[error(
        "another herd process is installing Ollama into {path} right now; wait for it to finish \
         or give this one its own --install-dir"
    )]
    Busy { path: PathBuf },
    /// [`plan_install`] refused.
    #[error("{0}")]
    Refused(String),
    /// A blocking task panicked or was cancelled.
    #[error("the install was interrupted: {0}")]
    Interrupted(String),
}

/// An Ollama that already exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundOllama {
    /// An Ollama already answering at `--ollama-url`; found by the caller over HTTP.
    Running { url: Url, version: Option<String> },
    /// An `ollama` on `PATH` or where Ollama's installer puts it (the macOS app
    /// bundle, the Windows per-user folder): a system install herd uses but never
    /// touches.
    OnPath { binary: PathBuf },
    /// A version in herd's own install directory.
    InstallDir { binary: PathBuf, version: String },
}

impl FoundOllama {
    /// The version, when known without running anything.
    pub fn version(&self) -> Option<&str> {
        match self {
            FoundOllama::Running { version, .. } => version.as_deref(),
            FoundOllama::OnPath { .. } => None,
            FoundOllama::InstallDir { version, .. } => Some(version),
        }
    }

    /// The executable, unless Ollama was only found running.
    pub fn binary(&self) -> Option<&Path> {
        match self {
            FoundOllama::Running { .. } => None,
            FoundOllama::OnPath { binary } | FoundOllama::InstallDir { binary, .. } => Some(binary),
        }
    }

    fn is_version(&self, tag: &ReleaseTag) -> bool {
        self.version()
            .and_then(|v| ReleaseTag::parse(v).ok())
            .as_ref()
            == Some(tag)
    }
}

/// The directories of a `PATH` value where an `ollama` could be, in order. Empty and
/// relative entries are skipped: a binary found through them would depend on the
/// directory herd happens to start in.
pub fn path_candidates(path_var: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(OLLAMA_EXE))
        .collect()
}

/// Every Ollama binary that exists on this machine for herd's purposes: the requested
/// version in herd's install directory, its `current` version, and the first `ollama`
/// on `path_var` or else where Ollama's own installer puts it on this platform
/// ([`system::system_candidates`]) — in that order. Checking for a running Ollama is
/// the caller's part (it needs HTTP); put it in front of this list.
pub fn find_ollama(
    path_var: Option<&OsStr>,
    install_dir: &Path,
    version: &OllamaVersion,
) -> Vec<FoundOllama> {
    find_ollama_in(
        path_var,
        &system::current_system_candidates(),
        install_dir,
        version,
    )
}

/// [`find_ollama`] with the platform's install locations given.
pub fn find_ollama_in(
    path_var: Option<&OsStr>,
    system: &[PathBuf],
    install_dir: &Path,
    version: &OllamaVersion,
) -> Vec<FoundOllama> {
    let layout = InstallLayout::new(install_dir);
    let mut found = Vec::new();
    let mut push_installed = |name: String| {
        if let Some(binary) = layout.installed_binary(&name) {
            let entry = FoundOllama::InstallDir {
                binary,
                version: name,
            };
            if !found.contains(&entry) {
                found.push(entry);
            }
        }
    };
    if let OllamaVersion::Pinned(tag) = version {
        push_installed(tag.to_string());
    }
    if let Some(current) = layout.current_version() {
        push_installed(current);
    }
    let on_path = path_var
        .map(path_candidates)
        .unwrap_or_default()
        .into_iter()
        .chain(system.iter().cloned())
        .find(|candidate| layout::is_executable(candidate));
    if let Some(binary) = on_path {
        found.push(FoundOllama::OnPath { binary });
    }
    found
}

/// The inputs of [`plan_install`] beyond what was found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// `--ollama-version`.
    pub version: OllamaVersion,
    /// `--no-install`.
    pub no_install: bool,
}

/// What to do about Ollama.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallPlan {
    /// Use this one; download nothing.
    UseExisting(FoundOllama),
    /// Download and install this version into herd's directory.
    Install(OllamaVersion),
    /// Nothing usable was found and installing is forbidden.
    Refuse(String),
}

/// Decides what to do given every Ollama found (see [`find_ollama`]):
///
/// 1. An Ollama already running at `--ollama-url` is used as it is, whatever its
///    version: a second one could not listen on the same address.
/// 2. With a pinned version, a found Ollama of exactly that version is used; otherwise
///    that version is installed into herd's directory (next to, never over, a system
///    Ollama) — unless `--no-install`, in which case rule 3 applies and the pin only
///    means "what to download".
/// 3. Otherwise herd's own `current` install is used, then an `ollama` on `PATH`.
/// 4. Nothing found: install, or refuse under `--no-install`.
pub fn plan_install(found: &[FoundOllama], options: &PlanOptions) -> InstallPlan {
    if let Some(running) = found
        .iter()
        .find(|f| matches!(f, FoundOllama::Running { .. }))
    {
        return InstallPlan::UseExisting(running.clone());
    }
    if let OllamaVersion::Pinned(tag) = &options.version {
        if let Some(exact) = found.iter().find(|f| f.is_version(tag)) {
            return InstallPlan::UseExisting(exact.clone());
        }
        if !options.no_install {
            return InstallPlan::Install(options.version.clone());
        }
    }
    let preferred = found
        .iter()
        .find(|f| matches!(f, FoundOllama::InstallDir { .. }))
        .or_else(|| {
            found
                .iter()
                .find(|f| matches!(f, FoundOllama::OnPath { .. }))
        });
    match preferred {
        Some(existing) => InstallPlan::UseExisting(existing.clone()),
        None if options.no_install => InstallPlan::Refuse(
            "no Ollama was found (none answering at --ollama-url, none on PATH, none in herd's \
             install directory) and --no-install forbids downloading one; install Ollama or drop --no-install"
                .to_owned(),
        ),
        None => InstallPlan::Install(options.version.clone()),
    }
}

/// Everything an install needs.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// herd's own directory (`--install-dir`); see [`layout`].
    pub install_dir: PathBuf,
    /// `--ollama-version`.
    pub version: OllamaVersion,
    /// `std::env::consts::OS` of the target machine.
    pub os: String,
    /// `std::env::consts::ARCH` of the target machine.
    pub arch: String,
    /// `--download-base-url`: the release site or a mirror laid out like it.
    pub download_base_url: Url,
    /// Check the archive against the release's `sha256sum.txt`. On by default; turn it
    /// off only for a mirror that publishes no checksums.
    pub verify_checksum: bool,
    /// Proxy, timeouts and retry schedule.
    pub http: HttpSettings,
    pub display: ProgressDisplay,
    /// How often plain log lines report download progress.
    pub log_every: Duration,
    /// Receives every progress update, for `Node.status`.
    pub progress: Option<watch::Sender<InstallProgress>>,
    /// Which accelerator archive goes over the main one on Linux (see [`accel`]).
    pub accelerator: Accelerator,
}

impl InstallOptions {
    /// Defaults for this machine: latest release from GitHub, checksums verified, no
    /// proxy (use [`HttpProxySettings::from_process_env`] for the environment's), 1 s doubling
    /// retries for 5 tries.
    pub fn new(install_dir: impl Into<PathBuf>) -> InstallOptions {
        InstallOptions {
            install_dir: install_dir.into(),
            version: OllamaVersion::Latest,
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            download_base_url: Url::parse(DEFAULT_DOWNLOAD_BASE)
                .expect("the default base URL is valid"),
            verify_checksum: true,
            http: HttpSettings::default(),
            display: ProgressDisplay::Auto,
            log_every: Duration::from_secs(5),
            progress: None,
            accelerator: Accelerator::None,
        }
    }

    /// The [`PlanOptions`] these options imply.
    pub fn plan_options(&self, no_install: bool) -> PlanOptions {
        PlanOptions {
            version: self.version.clone(),
            no_install,
        }
    }

    /// The same options with another retry schedule.
    #[must_use]
    pub fn with_retry(mut self, retry: Backoff) -> InstallOptions {
        self.http.retry = retry;
        self
    }
}

/// herd's default install directory: `$XDG_DATA_HOME/herd/ollama` (usually
/// `~/.local/share/herd/ollama`), `~/Library/Application Support/herd/ollama` on macOS.
pub fn default_install_dir() -> Option<PathBuf> {
    dirs::data_local_dir().map(|d| d.join("herd").join("ollama"))
}

/// A completed install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The directory name under `versions/`: the release tag, or `latest-<sha prefix>`
    /// when the mirror did not reveal the tag.
    pub version: String,
    /// `<install-dir>/versions/<version>`.
    pub prefix: PathBuf,
    /// The executable inside `prefix`.
    pub binary: PathBuf,
    /// The archive that was installed.
    pub asset: String,
    /// The accelerator's archive unpacked over it (`-rocm`, `-jetpack6`), if any.
    pub accelerator_asset: Option<String>,
    /// Its SHA-256.
    pub sha256: String,
    /// How many tries the archive download took.
    pub download_attempts: u32,
}

/// Downloads, verifies and installs Ollama per `options`. See [`layout`] for where it
/// goes; nothing outside `options.install_dir` is written.
pub async fn install_ollama(options: &InstallOptions) -> Result<Installed, InstallError> {
    let mut reporter = Reporter::new(options.display, options.log_every, options.progress.clone());
    let result = install_with(options, &mut reporter).await;
    match &result {
        Ok(installed) => {
            reporter.phase(InstallPhase::Installed, &installed.asset);
            tracing::info!(version = %installed.version, binary = %installed.binary.display(), "Ollama installed");
        }
        Err(e) => reporter.failed(&e.to_string()),
    }
    result
}

async fn install_with(
    options: &InstallOptions,
    reporter: &mut Reporter,
) -> Result<Installed, InstallError> {
    // Fail on an unsupported platform before touching the network or the disk.
    let asset = release_asset(&options.os, &options.arch, &options.version)?;
    let layout = InstallLayout::new(&options.install_dir);
    for dir in [
        layout.root().to_owned(),
        layout.versions_dir(),
        layout.downloads_dir(),
    ] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| InstallError::InstallDir {
                action: "create a directory",
                path: dir.clone(),
                source,
            })?;
    }
    let _lock = lock_install_dir(&layout)?;
    let client = http_client(&options.http, true)?;
    let retry = &options.http.retry;
    let base = &options.download_base_url;

    // `latest` is resolved to its tag (when the site reveals it by redirecting) so the
    // checksum file and the archive surely come from the same release.
    reporter.phase(InstallPhase::Downloading, &asset.name);
    let version = match &options.version {
        OllamaVersion::Pinned(_) => options.version.clone(),
        OllamaVersion::Latest => {
            let no_redirects = http_client(&options.http, false)?;
            let probe = release_file_url(base, &OllamaVersion::Latest, &asset.name)?;
            let target = download::redirect_target(&no_redirects, &probe, retry).await?;
            match target.as_ref().and_then(tag_from_release_url) {
                Some(tag) => {
                    tracing::info!(%tag, "latest Ollama release");
                    OllamaVersion::Pinned(tag)
                }
                None => OllamaVersion::Latest,
            }
        }
    };
    let asset = release_asset(&options.os, &options.arch, &version)?;
    let extra = accel::accelerator_asset(&asset, options.accelerator);

    let sums = if options.verify_checksum {
        let sums_url = release_file_url(base, &version, SHA256SUMS_FILE)?;
        let (text, _) = download::fetch_text(&client, &sums_url, retry, SHA256SUMS_LIMIT).await?;
        Some((parse_sha256sums(&text)?, sums_url))
    } else {
        tracing::warn!("SHA-256 verification of the Ollama download is turned off");
        None
    };

    // The main archive, then the accelerator's (unpacked over it), each verified.
    let mut archives = Vec::new();
    let mut fetched = Vec::new();
    for asset in std::iter::once(&asset).chain(extra.as_ref()) {
        let expected =
            match &sums {
                Some((sums, sums_url)) => {
                    Some(sums.get(&asset.name).cloned().ok_or_else(|| {
                        ChecksumError::MissingEntry {
                            asset: asset.name.clone(),
                            source_url: sums_url.to_string(),
                        }
                    })?)
                }
                None => None,
            };
        let got = fetch_verified(
            &client, options, &layout, &version, asset, expected, reporter,
        )
        .await;
        match got {
            Ok((archive, sha256, attempts)) => {
                archives.push((archive, asset.clone()));
                fetched.push((sha256, attempts));
            }
            Err(e) => {
                for (archive, _) in &archives {
                    remove_quietly(archive).await;
                }
                return Err(e);
            }
        }
    }
    let (actual, attempts) = fetched.swap_remove(0);

    reporter.phase(InstallPhase::Extracting, &asset.name);
    let name = match &version {
        OllamaVersion::Pinned(tag) => tag.to_string(),
        OllamaVersion::Latest => format!("latest-{}", &actual[..12]),
    };
    let exe = layout::exe_name(&options.os);
    let installed = unpack_and_place(&layout, &archives, exe, &name).await;
    for (archive, _) in &archives {
        remove_quietly(archive).await;
    }
    let (prefix, binary) = installed?;
    Ok(Installed {
        version: name,
        prefix,
        binary,
        asset: asset.name,
        accelerator_asset: extra.map(|a| a.name),
        sha256: actual,
        download_attempts: attempts,
    })
}

/// Downloads one asset of `version` into `downloads/` and checks it against
/// `expected`; returns the file, its SHA-256 and the tries the download took.
async fn fetch_verified(
    client: &reqwest::Client,
    options: &InstallOptions,
    layout: &InstallLayout,
    version: &OllamaVersion,
    asset: &Asset,
    expected: Option<String>,
    reporter: &mut Reporter,
) -> Result<(PathBuf, String, u32), InstallError> {
    reporter.phase(InstallPhase::Downloading, &asset.name);
    let asset_url = release_file_url(&options.download_base_url, version, &asset.name)?;
    let archive = layout
        .downloads_dir()
        .join(format!("{version}-{}", asset.name));
    let downloaded =
        download::download_file(client, &asset_url, &archive, &options.http.retry, reporter)
            .await?;

    reporter.phase(InstallPhase::Verifying, &asset.name);
    let actual = blocking({
        let archive = archive.clone();
        move || sha256_file(&archive)
    })
    .await??;
    if let Some(expected) = expected
        && expected != actual
    {
        remove_quietly(&archive).await;
        return Err(ChecksumError::Mismatch {
            asset: asset.name.clone(),
            expected,
            actual,
        }
        .into());
    }
    Ok((archive, actual, downloaded.attempts))
}

/// Unpacks into a staging directory inside the install directory, makes the binary
/// executable, renames the whole tree to `versions/<name>` and points `current` at it.
async fn unpack_and_place(
    layout: &InstallLayout,
    archives: &[(PathBuf, Asset)],
    exe: &str,
    name: &str,
) -> Result<(PathBuf, PathBuf), InstallError> {
    let root = layout.root().to_owned();
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&root)
        .map_err(|source| InstallError::InstallDir {
            action: "create a staging directory",
            path: root,
            source,
        })?;
    for (archive, asset) in archives {
        let staging_path = staging.path().to_owned();
        let (archive_owned, format) = (archive.clone(), asset.format);
        let stats =
            blocking(move || extract_archive(&archive_owned, format, &staging_path)).await??;
        tracing::debug!(
            asset = %asset.name,
            entries = stats.entries,
            bytes = stats.file_bytes,
            "unpacked an Ollama archive"
        );
    }

    let no_binary = || InstallError::NoBinary {
        asset: archives
            .first()
            .map(|(_, a)| a.name.clone())
            .unwrap_or_default(),
        exe: exe.to_owned(),
    };
    let relative_binary = layout::binary_candidates_named(Path::new(""), exe)
        .into_iter()
        .find(|rel| staging.path().join(rel).is_file())
        .ok_or_else(no_binary)?;
    let staged_binary = staging.path().join(&relative_binary);
    layout::make_executable(&staged_binary).map_err(|source| InstallError::InstallDir {
        action: "make the binary executable",
        path: staged_binary.clone(),
        source,
    })?;

    let target = layout.version_dir(name);
    layout::place_version(staging.path(), &target).map_err(|source| InstallError::InstallDir {
        action: "move the unpacked release into place",
        path: target.clone(),
        source,
    })?;
    // The staging directory is now `target`; dropping the guard finds nothing to remove.
    drop(staging);
    layout::activate(layout, name).map_err(|source| InstallError::InstallDir {
        action: "point `current` at the new version",
        path: layout.current_link(),
        source,
    })?;
    let binary = target.join(relative_binary);
    Ok((target, binary))
}

/// What [`ensure_ollama`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    Existing(FoundOllama),
    Installed(Installed),
}

/// Plans with [`plan_install`] over `found` and carries the plan out.
pub async fn ensure_ollama(
    found: &[FoundOllama],
    options: &InstallOptions,
    no_install: bool,
) -> Result<EnsureOutcome, InstallError> {
    match plan_install(found, &options.plan_options(no_install)) {
        InstallPlan::UseExisting(existing) => Ok(EnsureOutcome::Existing(existing)),
        InstallPlan::Refuse(reason) => Err(InstallError::Refused(reason)),
        InstallPlan::Install(version) => {
            let options = InstallOptions {
                version,
                ..options.clone()
            };
            install_ollama(&options).await.map(EnsureOutcome::Installed)
        }
    }
}

/// Takes `<install-dir>/.lock` so two nodelets sharing a directory cannot interleave
/// their downloads and renames. Released when the returned file is dropped (or the
/// process dies).
fn lock_install_dir(layout: &InstallLayout) -> Result<std::fs::File, InstallError> {
    let path = layout.root().join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| InstallError::InstallDir {
            action: "open the lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(InstallError::Busy {
            path: layout.root().to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(InstallError::InstallDir {
            action: "lock",
            path,
            source,
        }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, InstallError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InstallError::Interrupted(e.to_string()))
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a downloaded file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(v: &str) -> OllamaVersion {
        OllamaVersion::parse(v).expect("version")
    }

    fn running(version: Option<&str>) -> FoundOllama {
        FoundOllama::Running {
            url: Url::parse("http://127.0.0.1:11434").expect("url"),
            version: version.map(str::to_owned),
        }
    }

    fn on_path() -> FoundOllama {
        FoundOllama::OnPath {
            binary: PathBuf::from("/usr/local/bin/ollama"),
        }
    }

    fn installed(v: &str) -> FoundOllama {
        FoundOllama::InstallDir {
            binary: PathBuf::from(format!("/herd/versions/{v}/bin/ollama")),
            version: v.to_owned(),
        }
    }

    /// What a plan should be; `Refused` stands for any refusal.
    #[derive(Debug, PartialEq)]
    enum Want {
        Use(FoundOllama),
        Install(&'static str),
        Refused,
    }

    #[test]
    fn plan_table() {
        use Want::*;
        // (case, found, --ollama-version, --no-install, expected)
        let cases = [
            ("nothing found", vec![], "latest", false, Install("latest")),
            (
                "nothing found, pinned",
                vec![],
                "0.33.0",
                false,
                Install("v0.33.0"),
            ),
            (
                "nothing found, --no-install",
                vec![],
                "latest",
                true,
                Refused,
            ),
            (
                "nothing found, pinned, --no-install",
                vec![],
                "v0.33.0",
                true,
                Refused,
            ),
            (
                "running wins",
                vec![on_path(), running(None)],
                "latest",
                false,
                Use(running(None)),
            ),
            (
                "running wins over a pin",
                vec![running(Some("0.5.0"))],
                "v0.33.0",
                false,
                Use(running(Some("0.5.0"))),
            ),
            (
                "running with the pinned version",
                vec![running(Some("0.33.0"))],
                "v0.33.0",
                false,
                Use(running(Some("0.33.0"))),
            ),
            (
                "own install before PATH",
                vec![on_path(), installed("v0.30.0")],
                "latest",
                false,
                Use(installed("v0.30.0")),
            ),
            (
                "PATH when nothing of ours",
                vec![on_path()],
                "latest",
                false,
                Use(on_path()),
            ),
            (
                "PATH with --no-install",
                vec![on_path()],
                "latest",
                true,
                Use(on_path()),
            ),
            (
                "pin matches own install",
                vec![installed("v0.30.0"), installed("v0.33.0")],
                "0.33.0",
                false,
                Use(installed("v0.33.0")),
            ),
            (
                "pin differs: install beside",
                vec![installed("v0.30.0"), on_path()],
                "v0.33.0",
                false,
                Install("v0.33.0"),
            ),
            (
                "pin differs, --no-install: use ours",
                vec![installed("v0.30.0")],
                "v0.33.0",
                true,
                Use(installed("v0.30.0")),
            ),
            (
                "pin, PATH of unknown version, --no-install",
                vec![on_path()],
                "v0.33.0",
                true,
                Use(on_path()),
            ),
            (
                "latest-<sha> install serves latest",
                vec![installed("latest-0123456789ab")],
                "latest",
                false,
                Use(installed("latest-0123456789ab")),
            ),
        ];
        for (case, found, version, no_install, want) in cases {
            let plan = plan_install(
                &found,
                &PlanOptions {
                    version: pinned(version),
                    no_install,
                },
            );
            let got = match plan {
                InstallPlan::UseExisting(f) => Use(f),
                InstallPlan::Install(OllamaVersion::Latest) => Install("latest"),
                InstallPlan::Install(v) if v == pinned("v0.33.0") => Install("v0.33.0"),
                InstallPlan::Install(v) => panic!("{case}: unexpected install of {v}"),
                InstallPlan::Refuse(reason) => {
                    assert!(reason.contains("--no-install"), "{reason}");
                    Refused
                }
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn install_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let options = InstallOptions::new("/nonexistent/herd");
        assert_send(&install_ollama(&options));
        assert_send(&ensure_ollama(&[], &options, false));
    }

    #[test]
    fn a_second_installer_into_the_same_directory_is_told_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = InstallLayout::new(dir.path());
        let held = lock_install_dir(&layout).expect("first lock");
        let err = lock_install_dir(&layout).expect_err("second lock");
        assert!(matches!(err, InstallError::Busy { .. }), "{err}");
        drop(held);
        lock_install_dir(&layout).expect("lock after release");
    }

    #[test]
    fn path_candidates_table() {
        let cases: &[(&str, &[&str])] = &[
            (
                "/usr/local/bin:/usr/bin",
                &["/usr/local/bin/ollama", "/usr/bin/ollama"],
            ),
            ("", &[]),
            (":/bin::relative:./x", &["/bin/ollama"]),
            ("/opt/ollama/bin/", &["/opt/ollama/bin/ollama"]),
        ];
        if cfg!(unix) {
            for (path, expected) in cases {
                let got = path_candidates(OsStr::new(path));
                let want: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
                assert_eq!(got, want, "{path:?}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_system_install_counts_after_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let install_dir = dir.path().join("herd");
        let bundle = dir.path().join("Ollama.app/Contents/Resources/ollama");
        let on_path = dir.path().join("bin").join(OLLAMA_EXE);
        for exe in [&bundle, &on_path] {
            std::fs::create_dir_all(exe.parent().expect("parent")).expect("mkdir");
            std::fs::write(exe, "x").expect("write");
        }
        layout::make_executable(&bundle).expect("chmod");
        let path = std::env::join_paths([dir.path().join("bin")]).expect("join");
        let system = [dir.path().join("missing/ollama"), bundle.clone()];
        let found = |path: Option<&OsStr>| {
            find_ollama_in(path, &system, &install_dir, &OllamaVersion::Latest)
        };
        // The PATH one is not executable yet: the bundle is found.
        assert_eq!(
            found(Some(&path)),
            vec![FoundOllama::OnPath {
                binary: bundle.clone()
            }]
        );
        assert_eq!(
            found(None),
            vec![FoundOllama::OnPath {
                binary: bundle.clone()
            }]
        );
        layout::make_executable(&on_path).expect("chmod");
        assert_eq!(
            found(Some(&path)),
            vec![FoundOllama::OnPath { binary: on_path }]
        );
    }

    #[cfg(unix)]
    #[test]
    fn find_ollama_looks_in_the_install_dir_then_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let install_dir = dir.path().join("herd");
        let path_dir = dir.path().join("usr-bin");
        std::fs::create_dir_all(&path_dir).expect("mkdir");
        let empty = std::env::join_paths([&path_dir]).expect("join");
        assert_eq!(
            find_ollama(Some(&empty), &install_dir, &OllamaVersion::Latest),
            vec![]
        );

        // A non-executable file on PATH does not count.
        let system = path_dir.join(OLLAMA_EXE);
        std::fs::write(&system, "#!/bin/sh\n").expect("write");
        assert_eq!(
            find_ollama(Some(&empty), &install_dir, &OllamaVersion::Latest),
            vec![]
        );
        layout::make_executable(&system).expect("chmod");
        assert_eq!(
            find_ollama(Some(&empty), &install_dir, &OllamaVersion::Latest),
            vec![FoundOllama::OnPath {
                binary: system.clone()
            }]
        );

        let layout = InstallLayout::new(&install_dir);
        for v in ["v0.30.0", "v0.33.0"] {
            let bin = layout.version_dir(v).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(bin.join(OLLAMA_EXE), "x").expect("write");
            layout::make_executable(&bin.join(OLLAMA_EXE)).expect("chmod");
        }
        layout::activate(&layout, "v0.30.0").expect("activate");
        let bin_of = |v: &str| layout.version_dir(v).join("bin").join(OLLAMA_EXE);
        assert_eq!(
            find_ollama(Some(&empty), &install_dir, &OllamaVersion::Latest),
            vec![
                FoundOllama::InstallDir {
                    binary: bin_of("v0.30.0"),
                    version: "v0.30.0".into()
                },
                FoundOllama::OnPath {
                    binary: system.clone()
                },
            ]
        );
        assert_eq!(
            find_ollama(None, &install_dir, &pinned("0.33.0")),
            vec![
                FoundOllama::InstallDir {
                    binary: bin_of("v0.33.0"),
                    version: "v0.33.0".into()
                },
                FoundOllama::InstallDir {
                    binary: bin_of("v0.30.0"),
                    version: "v0.30.0".into()
                },
            ]
        );
        assert_eq!(
            find_ollama(None, &install_dir, &pinned("0.30.0")),
            vec![FoundOllama::InstallDir {
                binary: bin_of("v0.30.0"),
                version: "v0.30.0".into()
            }]
        );
    }
}
