//! `Secret`s through the CLI: applied like any manifest, and their token
//! in no output of `herd get` or `herd describe`, nor in the annotation
//! `herd apply` keeps.

use crate::HerdProcess;
use crate::verbs::{get, herd, herd_stdin};

const TOKEN: &str = "sk-hosted-0123456789abcdef";

#[test]
fn a_secret_s_token_is_never_printed() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let url = &server.url;
    let manifest = format!(
        "apiVersion: herd/v1\nkind: Secret\nmetadata:\n  name: hosted-key\nspec:\n  token: {TOKEN}\n"
    );
    let first = herd_stdin(url, &["apply", "-f", "-"], &manifest).success();
    assert_eq!(first.stdout, "secret/hosted-key created\n");
    let again = herd_stdin(url, &["apply", "-f", "-"], &manifest).success();
    assert_eq!(again.stdout, "secret/hosted-key unchanged\n");

    let stored = get(url, "secrets/hosted-key").expect("secret");
    assert_eq!(
        stored["spec"]["token"], TOKEN,
        "the admin's API read has it"
    );
    let annotations = stored["metadata"]["annotations"].to_string();
    assert!(!annotations.contains(TOKEN), "{annotations}");

    let table = herd(url, &["get", "secrets"]).success().stdout;
    assert!(
        table.contains("hosted-key") && table.contains("<set>"),
        "{table}"
    );
    for args in [
        &["get", "secrets"][..],
        &["get", "secret", "hosted-key", "-o", "yaml"],
        &["get", "secrets", "-o", "json"],
        &["get", "secrets", "-o", "wide"],
        &["describe", "secret", "hosted-key"],
    ] {
        let out = herd(url, args).success();
        assert!(
            !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
            "{args:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    let yaml = herd(url, &["get", "secret", "hosted-key", "-o", "yaml"])
        .success()
        .stdout;
    assert!(yaml.contains("<redacted: <set, 26 bytes>>"), "{yaml}");
    let described = herd(url, &["describe", "secret", "hosted-key"])
        .success()
        .stdout;
    assert!(described.contains("Token:  <set, 26 bytes>"), "{described}");

    // What `-o yaml` printed does not apply: the note is no token.
    let pasted = herd_stdin(url, &["apply", "-f", "-"], &yaml).failure();
    assert!(pasted.stderr.contains("spec.token"), "{}", pasted.stderr);
}
