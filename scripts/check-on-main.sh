#!/usr/bin/env bash
# Refuses to release a commit that is not on main:
#
#   scripts/check-on-main.sh [COMMIT] [MAIN]
#
# exits 0 when COMMIT (default HEAD; a tag names its commit) is MAIN's tip
# or one of its ancestors (MAIN defaults to origin/main, as the release
# workflow fetches it), and 1 with a message naming both otherwise, so a
# tag pushed on a branch or on a commit that never landed releases nothing.
set -euo pipefail

commit="${1:-HEAD}"
main="${2:-origin/main}"

sha="$(git rev-parse --verify --quiet "$commit^{commit}")" || {
    echo "check-on-main: $commit is not a commit in this repository" >&2
    exit 1
}
main_sha="$(git rev-parse --verify --quiet "$main^{commit}")" || {
    echo "check-on-main: $main is not a commit in this repository (fetch main first)" >&2
    exit 1
}
if git merge-base --is-ancestor "$sha" "$main_sha"; then
    echo "check-on-main: $commit ($sha) is on $main" >&2
else
    echo "check-on-main: refusing to release $commit ($sha): it is not on $main ($main_sha)" >&2
    exit 1
fi
