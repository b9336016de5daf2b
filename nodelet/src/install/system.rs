//! Where Ollama's own installers put it, beyond `PATH`: the macOS app bundle (its
//! `ollama` CLI lives inside `Ollama.app`) and the Windows installer's per-user
//! folder, which a service or a fresh terminal may not have on `PATH`.

use std::path::{Path, PathBuf};

/// The places to look on `os` (a `std::env::consts::OS` value), in order, given the
/// user's home folder and, on Windows, `%LOCALAPPDATA%`.
pub fn system_candidates(
    os: &str,
    home: Option<&Path>,
    local_app_data: Option<&Path>,
) -> Vec<PathBuf> {
    let bundle = |apps: PathBuf| apps.join("Ollama.app/Contents/Resources/ollama");
    match os {
        "macos" => {
            let mut found = vec![bundle(PathBuf::from("/Applications"))];
            found.extend(home.map(|h| bundle(h.join("Applications"))));
            found
        }
        "windows" => local_app_data
            .filter(|d| d.is_absolute())
            .map(|d| d.join("Programs").join("Ollama").join("ollama.exe"))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// [`system_candidates`] for this machine.
pub fn current_system_candidates() -> Vec<PathBuf> {
    let local_app_data = std::env::var_os("LOCALAPPDATA").map(PathBuf::from);
    system_candidates(
        std::env::consts::OS,
        dirs::home_dir().as_deref(),
        local_app_data.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_table() {
        let home = Path::new("/Users/ann");
        let appdata = Path::new("C:/Users/ann/AppData/Local");
        type Case<'a> = (&'a str, Option<&'a Path>, Option<&'a Path>, Vec<&'a str>);
        let cases: [Case; 6] = [
            (
                "macos",
                Some(home),
                None,
                vec![
                    "/Applications/Ollama.app/Contents/Resources/ollama",
                    "/Users/ann/Applications/Ollama.app/Contents/Resources/ollama",
                ],
            ),
            (
                "macos",
                None,
                None,
                vec!["/Applications/Ollama.app/Contents/Resources/ollama"],
            ),
            ("linux", Some(home), Some(appdata), vec![]),
            ("freebsd", Some(home), None, vec![]),
            ("windows", Some(home), None, vec![]),
            ("windows", None, Some(Path::new("relative")), vec![]),
        ];
        for (os, home, appdata, expected) in cases {
            let expected: Vec<PathBuf> = expected.into_iter().map(PathBuf::from).collect();
            assert_eq!(system_candidates(os, home, appdata), expected, "{os}");
        }
        // `C:/…` is absolute only on Windows, so this case is checked there.
        if cfg!(windows) {
            assert_eq!(
                system_candidates("windows", None, Some(appdata)),
                vec![appdata.join("Programs").join("Ollama").join("ollama.exe")]
            );
        }
        let unix_appdata = Path::new("/home/ann/.wine/AppData/Local");
        assert_eq!(
            system_candidates("windows", None, Some(unix_appdata)),
            vec![unix_appdata.join("Programs/Ollama/ollama.exe")]
        );
    }
}
