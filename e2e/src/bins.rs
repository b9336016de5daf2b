//! The binaries under test: `target/<profile>/herd` and `fake-ollama`.
//!
//! `scripts/test.sh` builds every binary before `cargo test`; when one is
//! missing (a bare `cargo test -p herd-e2e` on a fresh tree) it is built here
//! once. `HERD_BIN` and `FAKE_OLLAMA_BIN` point at other builds (a release
//! build for the one-hour soak, say).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// `target/<profile>` of the running test executable (`target/<profile>/deps/it-…`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory")
        .to_owned()
}

/// The workspace root (this crate's parent).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn binary(env: &str, name: &str, package: &str, cell: &'static OnceLock<PathBuf>) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    cell.get_or_init(|| {
        if let Some(path) = std::env::var_os(env) {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{env}={} is not a file", path.display());
            return path;
        }
        let _guard = BUILD.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = profile_dir();
        let path = dir.join(name);
        if !path.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "-p", package, "--bin", name]);
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(
                status.success() && path.exists(),
                "{} is missing and `cargo build -p {package} --bin {name}` failed ({status})",
                path.display()
            );
        }
        path
    })
    .clone()
}

/// The `herd` binary.
pub fn herd() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    binary("HERD_BIN", "herd", "herd", &CELL)
}

/// The `fake-ollama` binary.
pub fn fake_ollama() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    binary("FAKE_OLLAMA_BIN", "fake-ollama", "herd-testkit", &CELL)
}
