#!/usr/bin/env bash
# A recipe of five trivial `run` steps on a ~550 MB base (the 6-layer gzip image of
# bench/unpack_bench.sh, as an `oci:` base), built by `ocibuild build` beside
# `buildah bud --storage-driver overlay --isolation chroot` on the equivalent Containerfile
# (`FROM oci:LAYOUT:1` + five `RUN`s), in the same run. Prints wall time, peak RSS and the
# ocibuild/buildah wall-time ratios (issue 5's target: warm at most 0.3).
#
#   bench/run_steps_bench.sh [BUILD_DIR]     (as root; build first: ninja -C BUILD_DIR)
#
# Rows:
#   cold  a fresh store and work dir (ocibuild) / a fresh --root and --runroot (buildah): the
#         timed build imports the base's blobs and extracts its layers
#   warm  the same store and work dir / the same root as an earlier build, untimed: the base is
#         already imported and extracted; the steps still run (ocibuild has no step cache;
#         buildah runs with its default --layers=false, so it caches nothing either)
#   buildah warm, --layers --no-cache: buildah commits every step as its own layer, as ocibuild
#         does, and still runs every step
#
# Environment:
#   BENCH_RUNS     rounds (default 3); rows run round-robin, median wall and largest RSS shown
#   BENCH_WORK     parent of the scratch directory (default /var/tmp). Both tools' storage lives
#                  there, on the same filesystem (it must take overlay upper dirs). buildah names
#                  an `oci:` base after its path, so this path must be a valid image name:
#                  lowercase, no dots
#   BENCH_STEP     the steps' command (default `: > /tmp/.bench-step-N`, N = 1..5, an empty file,
#                  different in each step). With BENCH_STEP=true all five steps are `true`, as in
#                  the issue; each then leaves the same empty layer, and ocibuild (at the time of
#                  writing) fails step 3: the extraction cache gives steps 1 and 2 the same folder,
#                  which then appears twice among the overlay's lowerdirs, and the kernel refuses
#                  the mount with ELOOP ("Too many levels of symbolic links")
#
# Installs nothing: without buildah the peer rows are skipped with a note (apt-get install buildah).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || { [[ -d $BUILD_DIR ]] && BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || BUILD_DIR=$ROOT/$BUILD_DIR; }
OCIBUILD=$BUILD_DIR/src/cli/ocibuild
RUNS=${BENCH_RUNS:-3}
NPROC=$(nproc)
PARENT=${BENCH_WORK:-/var/tmp}

have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '  note: %s\n' "$*"; }

[[ $(id -u) -eq 0 ]] || { echo "error: run as root (buildah's overlay driver; ocibuild's steps run as root too)" >&2; exit 1; }
[[ -x $OCIBUILD ]] || { echo "error: $OCIBUILD not found; build it first: ninja -C $BUILD_DIR" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }
[[ $PARENT =~ ^(/[a-z0-9_-]+)+$ ]] ||
    { echo "error: BENCH_WORK ($PARENT) must be lowercase letters, digits, - and _ (buildah names the base after its path)" >&2; exit 1; }

LAYOUT=$("$HERE/unpack_bench.sh" --image-only)
WORK=$PARENT/ocibuild-stepsbench-$$-$RANDOM
mkdir "$WORK"
ln -s "$LAYOUT" "$WORK/base"  # a path buildah can turn into an image name (bench/.data has a dot)
BASE_REF="oci:$WORK/base:1"

B_COLD=(buildah --root "$WORK/bc-root" --runroot "$WORK/bc-runroot" --storage-driver overlay)
B_WARM=(buildah --root "$WORK/bw-root" --runroot "$WORK/bw-runroot" --storage-driver overlay)

cleanup() {
    set +e  # best effort: a failed step must not stop the rest of the cleanup
    if have buildah; then
        for b in cold warm; do
            [[ $b == cold ]] && B=("${B_COLD[@]}") || B=("${B_WARM[@]}")
            [[ -d ${B[2]} ]] || continue
            "${B[@]}" rm --all >/dev/null 2>&1
            "${B[@]}" rmi --all --force >/dev/null 2>&1
        done
    fi
    findmnt -rn -o TARGET | grep -F "$WORK" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT

# ---- recipe and Containerfile ----

step_cmd() { if [[ -n ${BENCH_STEP:-} ]]; then echo "$BENCH_STEP"; else echo ": > /tmp/.bench-step-$1"; fi; }
mkdir -p "$WORK/ctx"
{
    printf '[image]\nname = "localhost/bench/steps"\n\n[base]\nref = "%s"\n' "$BASE_REF"
    for i in 1 2 3 4 5; do printf '\n[[step]]\nrun = "%s"\n' "$(step_cmd "$i")"; done
} >"$WORK/ctx/steps.toml"
{
    printf 'FROM %s\n' "$BASE_REF"
    for i in 1 2 3 4 5; do printf 'RUN %s\n' "$(step_cmd "$i")"; done
} >"$WORK/ctx/Containerfile"

# ---- measuring ----

measure() {  # measure PREP CMD: PREP and a sync (untimed), then CMD once; sets M_WALL (s), M_RSS (KB)
    bash -c "$1"
    sync
    if ! /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "$2" >"$WORK/out" 2>&1; then
        echo "error: the timed command failed: $2" >&2
        tail -5 "$WORK/out" >&2
        exit 1
    fi
    read -r M_WALL M_RSS < <(tail -1 "$WORK/time")
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
q() { printf '%q ' "$@"; }

OCI_BUILD="$(q "$OCIBUILD") build -q $(q "$WORK/ctx/steps.toml")"
ROWS=() PREPS=() CMDS=()
row() { ROWS+=("$1"); PREPS+=("$2"); CMDS+=("$3"); }
row "ocibuild cold" "rm -rf '$WORK/oc-store' '$WORK/oc-work'" \
    "$OCI_BUILD --store '$WORK/oc-store' --work-dir '$WORK/oc-work'"
row "ocibuild warm" "true" "$OCI_BUILD --store '$WORK/ow-store' --work-dir '$WORK/ow-work'"
PEER=1
if have buildah; then
    BUD="bud --isolation chroot -q -f $(q "$WORK/ctx/Containerfile")"
    row "buildah bud cold" \
        "$(q "${B_COLD[@]}") rmi --all --force >/dev/null 2>&1; findmnt -rn -o TARGET | grep -F '$WORK/bc-' | sort -r | xargs -r umount -l; rm -rf '$WORK/bc-root' '$WORK/bc-runroot'" \
        "$(q "${B_COLD[@]}") $BUD -t bench-steps:cold $(q "$WORK/ctx")"
    row "buildah bud warm" "true" "$(q "${B_WARM[@]}") $BUD --layers=false -t bench-steps:warm $(q "$WORK/ctx")"
    row "buildah bud warm --layers --no-cache" "true" \
        "$(q "${B_WARM[@]}") $BUD --layers --no-cache -t bench-steps:warm-layers $(q "$WORK/ctx")"
else
    PEER=0
    note "buildah not installed (apt-get install buildah): peer rows skipped"
fi

echo "run-steps benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $NPROC cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "  cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  base $BASE_REF -> $LAYOUT ($(du -sm "$LAYOUT" | cut -f1) MB of gzip blobs)"
echo "  steps: $(step_cmd N)"
echo "  scratch and both tools' storage: $WORK ($(findmnt -n -o FSTYPE -T "$WORK" | head -1))"
((PEER)) && echo "  $(buildah --version)"

# Warm state, untimed: one build each, which imports and extracts the base.
cat "$LAYOUT"/blobs/sha256/* >/dev/null
echo "  preparing the warm store and buildah root (untimed) ..."
bash -c "$OCI_BUILD --store '$WORK/ow-store' --work-dir '$WORK/ow-work'" >/dev/null
((PEER)) && bash -c "$(q "${B_WARM[@]}") $BUD -t bench-steps:warm $(q "$WORK/ctx")" >/dev/null

declare -A WALLS RSS WALL
for ((r = 1; r <= RUNS; r++)); do
    echo "  round $r/$RUNS ..."
    for ((i = 0; i < ${#ROWS[@]}; i++)); do
        measure "${PREPS[i]}" "${CMDS[i]}"
        WALLS[${ROWS[i]}]+=" $M_WALL"
        [[ ${RSS[${ROWS[i]}]:-0} -ge $M_RSS ]] || RSS[${ROWS[i]}]=$M_RSS
    done
done

echo
echo "  (median of $RUNS round-robin rounds; RSS = largest process, max over rounds)"
printf '  %-40s %7s %7s\n' "row" "wall s" "RSS MB"
for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    WALL[$row]=$(median ${WALLS[$row]})
    printf '  %-40s %7s %7d   (%s)\n' "$row" "${WALL[$row]}" "$((RSS[$row] / 1024))" "${WALLS[$row]# }"
done

ratio() {  # ratio A B: wall A / wall B
    printf '  %-62s %6s x\n' "$1 / $2" "$(awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
}
if ((PEER)); then
    echo
    echo "  wall-time ratios (target: warm ocibuild / warm buildah <= 0.30):"
    ratio "ocibuild warm" "buildah bud warm"
    ratio "ocibuild warm" "buildah bud warm --layers --no-cache"
    ratio "ocibuild cold" "buildah bud cold"
fi
