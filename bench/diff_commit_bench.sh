#!/usr/bin/env bash
# diff+commit of a build step's change: a ~100 MB change made through an overlay mount on a
# ~550 MB base tree, committed as a layer by ocibuild (diff_overlay_upper + write_layer into a store)
# and by `buildah --storage-driver overlay commit` (the same change put in with `buildah copy`),
# in the same run on the same data (peer-tools §7.1, row e-ovl). Prints wall time, peak RSS and the
# ocibuild/buildah wall-time ratio (the issue's target: at most 0.3).
#
#   bench/diff_commit_bench.sh [BUILD_DIR]     (as root; build first: ninja -C BUILD_DIR bench/bench_diff_commit)
#
# Environment:
#   BENCH_BASE_MB    size of the generated base tree (default 550)
#   BENCH_CHANGE_MB  size of the change (default 100), generated with another seed: no file of it
#                    is in the base, so nothing can be deduplicated
#   BENCH_RUNS       rounds (default 3); the median wall time and the largest RSS are shown
#   BENCH_WORK       parent of the scratch directory (default /var/tmp). Both tools' storage lives
#                    there, on the same filesystem; it must take trusted.* xattrs (not tmpfs
#                    without them) and overlay upper dirs
#
# Every round gets a fresh overlay upper for ocibuild and fresh containers for buildah, each with a
# unique extra file, so no tool reuses a layer it committed before (containers/storage deduplicates
# identical diff_ids: peer-tools §7.1 e-dedup). Dirty pages from preparing the change are synced
# before each timed command. buildah commit to its own storage does not compress by default
# (--disable-compression=true), so it is compared with each ocibuild compression, and one buildah
# row with --disable-compression=false is shown too.
#
# Installs nothing: without buildah the peer rows are skipped with a note (apt-get install buildah).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || { [[ -d $BUILD_DIR ]] && BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || BUILD_DIR=$ROOT/$BUILD_DIR; }
BASE_MB=${BENCH_BASE_MB:-550}
CHANGE_MB=${BENCH_CHANGE_MB:-100}
RUNS=${BENCH_RUNS:-3}
DATA=$HERE/.data
BASE=$DATA/cuda-${BASE_MB}mb
CHANGE=$DATA/change-${CHANGE_MB}mb-seed2
BENCH=$BUILD_DIR/bench/bench_diff_commit
NPROC=$(nproc)

have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '  note: %s\n' "$*"; }

[[ $(id -u) -eq 0 ]] || { echo "error: run as root (overlay mounts, buildah's overlay driver)" >&2; exit 1; }
[[ -x $BENCH ]] || { echo "error: $BENCH not found; build it first: ninja -C $BUILD_DIR bench/bench_diff_commit" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

WORK=$(mktemp -d "${BENCH_WORK:-/var/tmp}/ocibuild-diffbench.XXXXXX")
B=(buildah --root "$WORK/c-root" --runroot "$WORK/c-runroot" --storage-driver overlay)

cleanup() {
    set +e  # best effort: a failed step must not stop the rest of the cleanup
    if have buildah; then
        "${B[@]}" rm --all >/dev/null 2>&1 || true
        "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
    fi
    # Whatever is still mounted under WORK (our overlays, buildah's), deepest first.
    findmnt -rn -o TARGET | grep -F "$WORK" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT

# ---- data ----

gen() {  # gen DIR SIZE_MB SEED
    if [[ ! -d $1 ]]; then
        mkdir -p "$DATA"
        echo "generating a $2 MB CUDA-like tree in $1 (once) ..."
        python3 "$HERE/gen_cuda_tree.py" --out "$1" --size-mb "$2" --seed "$3"
    fi
}
gen "$BASE" "$BASE_MB" 1
gen "$CHANGE" "$CHANGE_MB" 2
tar -C "$BASE" -cf - . >/dev/null  # warm the page cache: every row reads from memory
tar -C "$CHANGE" -cf - . >/dev/null

# ---- measuring ----

# measure CMD: runs the bash command line CMD once (after a sync, untimed); sets M_WALL (s),
# M_RSS (KB, largest process) and M_OUT (its stdout).
measure() {
    sync
    M_OUT=$(/usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "$1")
    read -r M_WALL M_RSS <"$WORK/time"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kv() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

ROWS=()
declare -A WALLS RSS BLOB DIFF WRITE
add() {  # add ROW WALL RSS [BLOB_BYTES DIFF_S WRITE_S]
    [[ -n ${WALLS[$1]+x} ]] || ROWS+=("$1")
    WALLS[$1]+=" $2"
    [[ ${RSS[$1]:-0} -ge $3 ]] || RSS[$1]=$3
    BLOB[$1]=${4:-}
    DIFF[$1]+=" ${5:-}"
    WRITE[$1]+=" ${6:-}"
}

# ---- the change, once per round and tool ----

# ocibuild: the change goes through an overlay mount on the base; the upper is what gets committed.
prepare_overlay() {  # prepare_overlay DIR ROUND
    mkdir -p "$1/upper" "$1/work" "$1/merged"
    mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$1/upper,workdir=$1/work" "$1/merged"
    mkdir -p "$1/merged/opt"
    cp -a "$CHANGE" "$1/merged/opt/extra"
    echo "ocibuild round $2 $$ $(date +%s%N)" >"$1/merged/opt/extra/unique"
    umount "$1/merged"
}

# buildah: a container from the base image, the same change copied in with `buildah copy`.
prepare_container() {  # prepare_container NAME ROUND
    "${B[@]}" from --quiet --name "$1" bench-base >/dev/null
    "${B[@]}" copy --quiet "$1" "$CHANGE" /opt/extra >/dev/null
    mkdir -p "$WORK/unique-$1"
    echo "buildah $1 round $2 $$ $(date +%s%N)" >"$WORK/unique-$1/unique"
    "${B[@]}" copy --quiet "$1" "$WORK/unique-$1/unique" /opt/extra/unique >/dev/null
}

echo "diff+commit benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $NPROC cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "  cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  base $BASE ($(du -sm "$BASE" | cut -f1) MB on disk), change $CHANGE ($(du -sm "$CHANGE" | cut -f1) MB, $(find "$CHANGE" | wc -l) entries)"
echo "  scratch and both tools' storage: $WORK ($(findmnt -n -o FSTYPE -T "$WORK"))"

PEER=1
if ! have buildah; then
    PEER=0
    note "buildah not installed (apt-get install buildah): peer rows skipped"
else
    echo "  $(buildah --version)"
    echo "  building the buildah base image from the same tree (untimed) ..."
    ctr=$("${B[@]}" from --quiet scratch)
    "${B[@]}" copy --quiet "$ctr" "$BASE" / >/dev/null
    "${B[@]}" commit --quiet "$ctr" bench-base >/dev/null
    "${B[@]}" rm "$ctr" >/dev/null
fi

for ((r = 1; r <= RUNS; r++)); do
    echo "  round $r/$RUNS ..."
    ovl=$WORK/ovl-$r
    prepare_overlay "$ovl" "$r"
    if ((PEER)); then
        prepare_container "c$r" "$r"
        prepare_container "cz$r" "$r"
    fi
    for comp in gzip zstd none; do
        rm -rf "$WORK/store"
        measure "'$BENCH' '$ovl/upper' --compression $comp --store '$WORK/store'"
        add "ocibuild diff+commit ($comp)" "$M_WALL" "$M_RSS" "$(kv blob_bytes "$M_OUT")" \
            "$(kv diff_s "$M_OUT")" "$(kv write_s "$M_OUT")"
        [[ $comp == none ]] && TAR_BYTES=$(kv tar_bytes "$M_OUT") ENTRIES=$(kv entries "$M_OUT")
    done
    if ((PEER)); then
        measure "$(printf '%q ' "${B[@]}") commit --quiet c$r img-$r >/dev/null"
        add "buildah overlay commit" "$M_WALL" "$M_RSS"
        measure "$(printf '%q ' "${B[@]}") commit --quiet --disable-compression=false cz$r imgz-$r >/dev/null"
        add "buildah overlay commit (gzip)" "$M_WALL" "$M_RSS"
        "${B[@]}" rm "c$r" "cz$r" >/dev/null
        "${B[@]}" rmi "img-$r" "imgz-$r" >/dev/null
    fi
    rm -rf "$ovl" "$WORK/store"
done

echo
echo "  layer: $ENTRIES entries, $(awk -v b="$TAR_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }') MB uncompressed tar" \
     "(median of $RUNS rounds; RSS = largest process, max over rounds; diff/write = ocibuild's phases, s)"
printf '  %-36s %7s %7s %8s  %s\n' "row" "wall s" "RSS MB" "blob MB" "diff/write s"
for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    wall=$(median ${WALLS[$row]})
    blob=${BLOB[$row]:-}
    [[ -n $blob ]] && blob=$(awk -v b="$blob" 'BEGIN { printf "%.1f", b / 1e6 }')
    phases=""
    # shellcheck disable=SC2086
    [[ -n ${DIFF[$row]// /} ]] && phases="$(median ${DIFF[$row]}) / $(median ${WRITE[$row]})"
    printf '  %-36s %7s %7d %8s  %s\n' "$row" "$wall" "$((RSS[$row] / 1024))" "${blob:--}" "$phases"
done

if ((PEER)); then
    echo
    echo "  wall-time ratios (ocibuild / buildah; target <= 0.30):"
    # shellcheck disable=SC2086
    peer=$(median ${WALLS["buildah overlay commit"]})
    for comp in gzip zstd none; do
        # shellcheck disable=SC2086
        ours=$(median ${WALLS["ocibuild diff+commit ($comp)"]})
        printf '  %-58s %6s x\n' "ocibuild ($comp) / buildah overlay commit" "$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
    done
    # shellcheck disable=SC2086
    peerz=$(median ${WALLS["buildah overlay commit (gzip)"]})
    # shellcheck disable=SC2086
    ours=$(median ${WALLS["ocibuild diff+commit (gzip)"]})
    printf '  %-58s %6s x\n' "ocibuild (gzip) / buildah overlay commit (gzip)" "$(awk -v a="$ours" -v b="$peerz" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
fi
