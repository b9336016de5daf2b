#!/usr/bin/env bash
# Builds herd for one Rust target and packs it for release:
#
#   scripts/package.sh TARGET [--profile PROFILE] [--out DIR]
#
# writes DIR/herd-<version>-<TARGET>.tar.gz (.zip for Windows) holding a
# folder of the same name with herd (herd.exe), README.md, README.ja.md and
# LICENSE; for Windows also DIR/herd-<version>-<TARGET>.msi (WiX source
# packaging/windows/herd.wxs, built with msitools' wixl), for macOS also a
# .pkg when pkgbuild is there (the release workflow's macOS runner). Then
# DIR/sha256sum.txt is rewritten over every herd-* file in DIR, in
# `sha256sum -c` form.
#
# PROFILE is a cargo profile, `release` by default (fat LTO, as shipped);
# the test command packs a `dev` build, which it has built already.
# The host's own target is built without `--target`, so it lands in (and
# reuses) target/<profile>; CARGO_TARGET_DIR moves every build elsewhere.
# Windows and macOS builds carry the system-tray icon (feature `tray`);
# HERD_FEATURES replaces that choice.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/package.sh TARGET [--profile PROFILE] [--out DIR]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
target="$1"
shift
profile=release
out=dist
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    *) usage ;;
    esac
done

fail() {
    echo "package: $*" >&2
    exit 1
}

version="$(cargo pkgid --locked -p herd)"
version="${version##*@}"
[ -n "$version" ] || fail "cannot read herd's version from Cargo.toml"
name="herd-$version-$target"

case "$target" in
*-windows-*) os=windows exe=herd.exe default_features=tray ;;
*-apple-darwin) os=macos exe=herd default_features=tray ;;
*-linux-*) os=linux exe=herd default_features= ;;
*) fail "unsupported target $target (linux, apple-darwin or windows triples)" ;;
esac
features="${HERD_FEATURES-$default_features}"

host="$(rustc -vV | sed -n 's/^host: //p')"
build=(cargo build --locked -p herd --bin herd --profile "$profile")
[ -n "$features" ] && build+=(--features "$features")
target_dir="${CARGO_TARGET_DIR:-target}"
# cargo names the dev profile's folder `debug`.
profile_dir="$profile"
[ "$profile" = dev ] && profile_dir=debug
if [ "$target" = "$host" ]; then
    bin="$target_dir/$profile_dir/$exe"
else
    build+=(--target "$target")
    bin="$target_dir/$target/$profile_dir/$exe"
fi
# The release profile keeps line tables for profiling from a source build
# (89 MB on x86_64 Linux); the archives leave the debug info out (about 20 MB)
# and keep the symbols, so a panic's backtrace still names functions.
if [ "$profile" = release ]; then
    export CARGO_PROFILE_RELEASE_STRIP="${CARGO_PROFILE_RELEASE_STRIP:-debuginfo}"
fi
echo "package: ${build[*]}" >&2
"${build[@]}"
[ -f "$bin" ] || fail "cargo built no $bin"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
cp "$bin" "$stage/$name/$exe"
cp README.md README.ja.md LICENSE "$stage/$name/"

# Python's tarfile and zipfile rather than tar and zip: the same archive
# from GNU and BSD userlands (Linux and macOS runners), with fixed owners,
# modes and times.
pack() {
    python3 - "$@" <<'EOF'
import os, sys, tarfile, time, zipfile
kind, src, name, dest = sys.argv[1:5]
epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
files = sorted(os.listdir(os.path.join(src, name)))
exe = {"herd", "herd.exe"}
if kind == "tar":
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        def entry(path, arc, mode):
            info = tar.gettarinfo(path, arc)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            info.mode = mode
            return info
        tar.addfile(entry(os.path.join(src, name), name, 0o755))
        for f in files:
            path = os.path.join(src, name, f)
            with open(path, "rb") as data:
                tar.addfile(entry(path, f"{name}/{f}", 0o755 if f in exe else 0o644), data)
else:
    stamp = time.gmtime(max(epoch, 315532800))[:6]
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            info = zipfile.ZipInfo(f"{name}/{f}", stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if f in exe else 0o100644) << 16
            with open(os.path.join(src, name, f), "rb") as data:
                z.writestr(info, data.read())
EOF
}

# SOURCE_DATE_EPOCH defaults to the commit's time, so a rebuild of one
# commit packs identical archives.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
artifacts=()
if [ "$os" = windows ]; then
    pack zip "$stage" "$name" "$out/$name.zip"
    artifacts+=("$out/$name.zip")
    command -v wixl >/dev/null 2>&1 && command -v msibuild >/dev/null 2>&1 ||
        fail "wixl and msibuild are needed for the .msi (Debian: apt-get install wixl msitools)"
    # MSI versions are three numbers; a pre-release suffix (-rc1) is dropped.
    msi_version="${version%%-*}"
    msi="$out/$name.msi"
    wxs="$PWD/packaging/windows/herd.wxs"
    # wixl looks files up relative to where it runs.
    (cd "$stage/$name" && wixl --arch x64 -D "Version=$msi_version" -D SourceDir=. \
        -o "$msi" "$wxs")
    # wixl 0.101 has no <Environment> element, so the row that appends the
    # install folder to the system PATH (and takes it out on uninstall), and
    # the two standard actions that apply it, are added to the built database.
    msibuild "$msi" \
        -q 'CREATE TABLE `Environment` (`Environment` CHAR(72) NOT NULL, `Name` CHAR(255) NOT NULL LOCALIZABLE, `Value` CHAR(255) LOCALIZABLE, `Component_` CHAR(72) NOT NULL PRIMARY KEY `Environment`)' \
        -q "INSERT INTO \`Environment\` (\`Environment\`, \`Name\`, \`Value\`, \`Component_\`) VALUES ('HerdPath', '=-*PATH', '[~];[INSTALLDIR]', 'HerdExe')" \
        -q "INSERT INTO \`InstallExecuteSequence\` (\`Action\`, \`Sequence\`) VALUES ('RemoveEnvironmentStrings', 3300)" \
        -q "INSERT INTO \`InstallExecuteSequence\` (\`Action\`, \`Sequence\`) VALUES ('WriteEnvironmentStrings', 5200)"
    artifacts+=("$out/$name.msi")
else
    pack tar "$stage" "$name" "$out/$name.tar.gz"
    artifacts+=("$out/$name.tar.gz")
    if [ "$os" = macos ] && command -v pkgbuild >/dev/null 2>&1; then
        mkdir -p "$stage/pkgroot/usr/local/bin"
        cp "$bin" "$stage/pkgroot/usr/local/bin/herd"
        pkgbuild --root "$stage/pkgroot" --identifier dev.herd.herd --version "$version" \
            --install-location / "$out/$name.pkg"
        artifacts+=("$out/$name.pkg")
    fi
fi

python3 - "$out" <<'EOF'
import hashlib, os, sys
out = sys.argv[1]
names = sorted(n for n in os.listdir(out) if n.startswith("herd-") and os.path.isfile(os.path.join(out, n)))
with open(os.path.join(out, "sha256sum.txt"), "w") as sums:
    for n in names:
        with open(os.path.join(out, n), "rb") as f:
            sums.write(f"{hashlib.sha256(f.read()).hexdigest()}  {n}\n")
EOF
for a in "${artifacts[@]}"; do
    echo "package: $a ($(wc -c <"$a") bytes)" >&2
done
echo "package: $out/sha256sum.txt" >&2
