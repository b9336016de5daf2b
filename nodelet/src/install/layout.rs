//! herd's own Ollama install directory: where versions live, which one is current, and
//! how a new one is put in place atomically.
//!
//! ```text
//! <install-dir>/
//!   versions/
//!     v0.33.0/            one release, as its archive lays it out
//!       bin/ollama        (macOS: ollama, Windows: ollama.exe, at the top)
//!       lib/ollama/...    (a -rocm or -jetpack archive unpacked over it on Linux)
//!     latest-1a2b3c4d5e6f/  a "latest" whose tag the mirror did not reveal
//!   current -> versions/v0.33.0   symlink, swapped atomically (on Windows a file
//!                                   holding `versions/v0.33.0`, replaced by rename)
//!   downloads/            archives in flight (<asset>.part), removed once installed
//!   .staging-XXXXXX/      an archive being unpacked; renamed into versions/ when whole
//!   .lock                 held (flock) by the process installing, so two never interleave
//! ```
//!
//! A version directory only ever appears complete: it is unpacked into a staging
//! directory on the same file system and renamed into place. `current` is a relative
//! symlink replaced by renaming a new symlink over it, so a reader sees the old or the
//! new version, never neither. herd writes nothing outside this directory, so it can
//! never overwrite a system Ollama. Old versions are kept (a rollback is a symlink
//! away) and are not garbage-collected yet.

use std::path::{Path, PathBuf};

/// The executable's file name on this platform.
pub const OLLAMA_EXE: &str = if cfg!(windows) {
    "ollama.exe"
} else {
    "ollama"
};

/// The executable's file name on `os` (a `std::env::consts::OS` value).
pub fn exe_name(os: &str) -> &'static str {
    if os == "windows" {
        "ollama.exe"
    } else {
        "ollama"
    }
}

/// Where, inside a version directory, releases put the executable: `bin/ollama` in the
/// Linux layout, `ollama` (`ollama.exe`) at the top in the macOS and Windows ones.
pub fn binary_candidates(prefix: &Path) -> [PathBuf; 2] {
    binary_candidates_named(prefix, OLLAMA_EXE)
}

/// [`binary_candidates`] for an executable named `exe`.
pub fn binary_candidates_named(prefix: &Path, exe: &str) -> [PathBuf; 2] {
    [prefix.join("bin").join(exe), prefix.join(exe)]
}

/// Paths inside an install directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallLayout {
    root: PathBuf,
}

impl InstallLayout {
    pub fn new(root: impl Into<PathBuf>) -> InstallLayout {
        InstallLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn versions_dir(&self) -> PathBuf {
        self.root.join("versions")
    }

    /// `versions/<name>`.
    pub fn version_dir(&self, name: &str) -> PathBuf {
        self.versions_dir().join(name)
    }

    /// The `current` symlink.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The version `current` points to, if any: a symlink's target, or on Windows the
    /// `versions/<name>` that the `current` file holds (see [`activate`]).
    pub fn current_version(&self) -> Option<String> {
        let link = self.current_link();
        let target = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(_) => {
                let text = std::fs::read_to_string(&link).ok()?;
                PathBuf::from(text.trim())
            }
        };
        let name = target.file_name()?.to_str()?.to_owned();
        let parent = target.parent()?.file_name()?;
        (parent == "versions" && target.components().count() == 2).then_some(name)
    }

    /// The executable of an installed version, if it is there and executable.
    pub fn installed_binary(&self, version: &str) -> Option<PathBuf> {
        find_binary(&self.version_dir(version))
    }
}

/// The executable in an unpacked release, if any.
pub fn find_binary(prefix: &Path) -> Option<PathBuf> {
    binary_candidates(prefix)
        .into_iter()
        .find(|p| is_executable(p))
}

/// Whether `path` is a regular file that may be executed.
pub fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Makes `path` executable by everyone who can read it.
pub fn make_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut perms = std::fs::metadata(path)?.permissions();
        let mode = perms.mode();
        perms.set_mode(mode | ((mode & 0o444) >> 2) | 0o100);
        std::fs::set_permissions(path, perms)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Renames a complete `staging` directory to `target`. An existing `target` (a broken
/// or re-installed version) is first renamed aside and removed afterwards, so `target`
/// is missing only between two renames and never half-written.
pub fn place_version(staging: &Path, target: &Path) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if target.exists() {
        let mut aside_name = target
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        aside_name.push(format!(".old-{}", std::process::id()));
        let aside = target.with_file_name(aside_name);
        std::fs::rename(target, &aside)?;
        std::fs::rename(staging, target)?;
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!(path = %aside.display(), error = %e, "could not remove a replaced Ollama version");
        }
        return Ok(());
    }
    std::fs::rename(staging, target)
}

/// Points `current` at `versions/<version>` by renaming a fresh symlink over it; on
/// Windows, where making a symlink needs a privilege most users lack, by renaming a
/// fresh file naming the version over it ([`activate_with_file`]).
pub fn activate(layout: &InstallLayout, version: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let tmp = layout
            .root()
            .join(format!(".current-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("versions").join(version), &tmp)?;
        std::fs::rename(&tmp, layout.current_link())
    }
    #[cfg(not(unix))]
    activate_with_file(layout, version)
}

/// Writes `versions/<version>` into a fresh file and renames it over `current`, which
/// replaces the old file in one step on Windows as on Unix.
pub fn activate_with_file(layout: &InstallLayout, version: &str) -> std::io::Result<()> {
    let tmp = layout
        .root()
        .join(format!(".current-{}", std::process::id()));
    std::fs::write(&tmp, format!("versions/{version}\n"))?;
    std::fs::rename(&tmp, layout.current_link())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn place_and_activate_swap_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = InstallLayout::new(dir.path());
        assert_eq!(layout.current_version(), None);
        for (version, content) in [
            ("v1.0.0", "one"),
            ("v2.0.0", "two"),
            ("v1.0.0", "one again"),
        ] {
            let staging = dir.path().join(".staging");
            std::fs::create_dir_all(staging.join("bin")).expect("mkdir");
            let exe = staging.join("bin").join(OLLAMA_EXE);
            std::fs::write(&exe, content).expect("write");
            make_executable(&exe).expect("chmod");
            place_version(&staging, &layout.version_dir(version)).expect("place");
            activate(&layout, version).expect("activate");
            assert_eq!(layout.current_version().as_deref(), Some(version));
            let via_current = layout.current_link().join("bin").join(OLLAMA_EXE);
            assert_eq!(std::fs::read_to_string(via_current).expect("read"), content);
            assert!(layout.installed_binary(version).is_some());
            assert!(!staging.exists());
        }
        let leftovers: Vec<_> = std::fs::read_dir(layout.versions_dir())
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut leftovers = leftovers;
        leftovers.sort();
        assert_eq!(leftovers, vec!["v1.0.0", "v2.0.0"]);
    }

    #[test]
    fn current_as_a_file_names_the_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = InstallLayout::new(dir.path());
        for version in ["v0.33.0", "v0.34.0-rc1"] {
            activate_with_file(&layout, version).expect("activate");
            assert_eq!(layout.current_version().as_deref(), Some(version));
        }
        for (text, expected) in [
            ("versions/v1.0.0\n", Some("v1.0.0")),
            ("versions/v1.0.0", Some("v1.0.0")),
            ("elsewhere/v1.0.0", None),
            ("../versions/v1.0.0", None),
            ("/abs/versions/v1.0.0", None),
            ("", None),
        ] {
            std::fs::write(layout.current_link(), text).expect("write");
            assert_eq!(layout.current_version().as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn exe_names_per_os() {
        assert_eq!(exe_name("windows"), "ollama.exe");
        assert_eq!(exe_name("macos"), "ollama");
        assert_eq!(exe_name("linux"), "ollama");
        assert_eq!(
            binary_candidates_named(Path::new("v"), "ollama.exe"),
            [
                PathBuf::from("v/bin/ollama.exe"),
                PathBuf::from("v/ollama.exe")
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_table() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (0o644, 0o755),
            (0o600, 0o700),
            (0o640, 0o750),
            (0o755, 0o755),
            (0o000, 0o100),
        ];
        for (before, after) in cases {
            let path = dir.path().join(format!("f{before:o}"));
            std::fs::write(&path, "x").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before))
                .expect("chmod");
            assert_eq!(is_executable(&path), before & 0o111 != 0);
            make_executable(&path).expect("make executable");
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, after, "{before:o}");
            assert!(is_executable(&path));
        }
        assert!(!is_executable(dir.path()));
        assert!(!is_executable(&dir.path().join("missing")));
    }
}
