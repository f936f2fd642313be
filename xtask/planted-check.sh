#!/bin/sh
# A scripted check of `cargo xtask check` itself: a one-patch series that
# plants a kernel-doc warning, a sparse warning (with its W=1 twin) and a
# malformed Fixes: tag in mm/gup.c must fail with each of them named.
# Needs a fetched base (cargo xtask fetch): sh xtask/planted-check.sh [CACHE]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cache=$(realpath "${1:-${PINFD_CACHE:-$HOME/.cache/pinfd-series}}")
repo=$cache/linux
git -C "$repo" rev-parse -q --verify pinfd-base >/dev/null ||
    { echo "no base in $cache: run cargo xtask fetch --cache $cache"; exit 1; }
tmp=$(mktemp -d)
trap 'git -C "$repo" worktree remove -f "$tmp/linux" 2>/dev/null; rm -rf "$tmp"' EXIT

git -C "$repo" worktree add -q --detach "$tmp/linux" pinfd-base
cd "$tmp/linux"
cat >> mm/gup.c <<'C'

/**
 * planted_undocumented() - a planted kernel-doc warning
 */
int planted_undocumented(int x)
{
	return x;
}
C
git -c user.name=planted -c user.email=p@planted.invalid commit -q -a -m "mm/gup: plant warnings

Fixes: 1234abcd (bad)
Signed-off-by: planted <p@planted.invalid>"
mkdir -p "$tmp/project/patches/planted"
git format-patch -q --cover-letter --base=pinfd-base -o "$tmp/project/patches/planted" HEAD~1
patch=$(cd "$tmp/project/patches/planted" && ls 0001-*.patch)

cd "$root"
cp -r xtask Cargo.toml Cargo.lock kconfig "$tmp/project/"
mkdir -p "$tmp/project/.cargo" && cp .cargo/config.toml "$tmp/project/.cargo/"
# series.toml with the planted sub-series only.
awk '/^\[\[series\]\]/{skip=1} /^\[tests\]/{skip=0} !skip' series.toml > "$tmp/project/series.toml"
cat >> "$tmp/project/series.toml" <<T

[[series]]
name = "planted"
subject = "planted warnings"
cover = "Planted."
change_id = "20261201-planted-0123456789ab"
patches = ["$patch"]
T
cd "$tmp/project"
if CARGO_TARGET_DIR="$root/target" cargo xtask --cache "$cache" -j 1 check > "$tmp/out" 2>&1; then
    cat "$tmp/out"; echo "FAIL: check passed on planted warnings"; exit 1
fi
status=0
for want in 'kernel-doc: "mm/gup: plant warnings": mm/gup.c:' \
            "sparse: \"mm/gup: plant warnings\": mm/gup.c:" \
            "W=1: \"mm/gup: plant warnings\": mm/gup.c:" \
            'Fixes: "mm/gup: plant warnings": malformed "Fixes: 1234abcd (bad)"'; do
    if grep -qF "$want" "$tmp/out"; then
        echo "ok: $want"
    elif [ "${want%%:*}" = sparse ] && grep -qF "sparse did NOT run" "$tmp/out"; then
        echo "skipped: $want (the installed sparse cannot read this tree)"
    else
        echo "MISSING: $want"; status=1
    fi
done
[ $status = 0 ] || cat "$tmp/out"
exit $status
