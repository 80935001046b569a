#!/usr/bin/env bash
# ocibuild benchmarks beside peer tools, in one run on the same data. Prints MB/s, peak memory and
# ocibuild/peer ratios. Not a test: nothing here passes or fails on a number.
#
#   bench/run.sh [BUILD_DIR]          (BUILD_DIR defaults to build/; build it first with ninja)
#
# Environment:
#   BENCH_SIZE_MB   size of the generated CUDA-like tree (default 300)
#   BENCH_RUNS      runs per row, the median is shown (default 3)
#   BENCH_STORE     parent directory of the temporary store ocibuild writes into (default /dev/shm
#                   when it exists, so that, like the peers writing into a pipe, no fsync to disk
#                   is timed; one extra row shows the on-disk store); the compress section's tar
#                   goes there too
#   BENCH_TAR       an extra tar file (e.g. of a real root filesystem) for the compress section
#   BENCH_SECTIONS  sections to run (default "layer_write compress")
#
# Installs nothing: a peer tool that is missing is skipped with a note. The Go pgzip row (what
# skopeo, buildah and umoci compress with) is built from bench/pgzip/ when Debian's golang-go and
# golang-github-klauspost-pgzip-dev are installed. The generated tree is cached
# in bench/.data/ (gitignored) and reused by later runs.
#
# Adding a benchmark: write a function `section_<name>` that calls `row` (see section_layer_write)
# and list it in SECTIONS at the bottom.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || { [[ -d $BUILD_DIR ]] && BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || BUILD_DIR=$ROOT/$BUILD_DIR; }
SIZE_MB=${BENCH_SIZE_MB:-300}
RUNS=${BENCH_RUNS:-3}
DATA=$HERE/.data
TREE=$DATA/cuda-${SIZE_MB}mb
NPROC=$(nproc)
if [[ -n ${BENCH_STORE:-} ]]; then STORE_PARENT=$BENCH_STORE
elif [[ -d /dev/shm && -w /dev/shm ]]; then STORE_PARENT=/dev/shm
else STORE_PARENT=${TMPDIR:-/tmp}; fi

have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '  note: %s\n' "$*"; }
TIME_BIN=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%e' true 2>/dev/null; then TIME_BIN=/usr/bin/time; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-bench.XXXXXX")
SHM_TAR="$STORE_PARENT/ocibuild-bench-layer.$$.tar"
trap 'rm -rf "$WORK" "$SHM_TAR"' EXIT

# ---- measuring ----

# measure CMD...: runs CMD (a bash command line) once; sets M_WALL (s), M_RSS (KB, or "?") and
# M_OUT (its stdout).
measure() {
    local start end
    if [[ -n $TIME_BIN ]]; then
        M_OUT=$("$TIME_BIN" -f '%e %M' -o "$WORK/time" bash -c "$1")
        read -r M_WALL M_RSS <"$WORK/time"
    else
        start=$(date +%s.%N)
        M_OUT=$(bash -c "$1")
        end=$(date +%s.%N)
        M_WALL=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
        M_RSS="?"
    fi
}

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# kv KEY LINE: the value of KEY=value in a bench program's output line
kv() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

declare -A SPEED SIZE
ROW_NAMES=() ROW_INPUTS=() ROW_CMDS=()
# row NAME INPUT_BYTES COMMAND: queues a row. COMMAND prints the output size in bytes (or a bench
# program's key=value line with blob_bytes and peak_rss_kb). Rows run with run_rows.
row() { ROW_NAMES+=("$1"); ROW_INPUTS+=("$2"); ROW_CMDS+=("$3"); }

# run_rows: runs the queued rows round-robin, $RUNS rounds (so load from elsewhere hits every row
# alike), then prints each row's median wall time, MB/s, size ratio and peak RSS, and clears the queue.
run_rows() {
    local n=${#ROW_NAMES[@]} r i
    local -a walls rss bytes
    for ((i = 0; i < n; i++)); do walls[i]="" rss[i]=0 bytes[i]=0; done
    for ((r = 0; r < RUNS; r++)); do
        for ((i = 0; i < n; i++)); do
            measure "${ROW_CMDS[i]}"
            local prss=$M_RSS out=$M_OUT
            if [[ $out == *blob_bytes=* ]]; then
                [[ $prss == "?" ]] && prss=$(kv peak_rss_kb "$out")
                bytes[i]=$(kv blob_bytes "$out")
            else
                bytes[i]=$(tr -d ' \n' <<<"$out")
            fi
            walls[i]+=" $M_WALL"
            [[ $prss != "?" && $prss -gt ${rss[i]} ]] && rss[i]=$prss
        done
    done
    for ((i = 0; i < n; i++)); do
        local name=${ROW_NAMES[i]} input=${ROW_INPUTS[i]} wall
        # shellcheck disable=SC2086
        wall=$(median ${walls[i]})
        SPEED[$name]=$(awk -v b="$input" -v w="$wall" 'BEGIN { printf "%.1f", (w > 0) ? b / 1e6 / w : 0 }')
        SIZE[$name]=${bytes[i]}
        printf '  %-40s %7s %8s %7s %9s %7s\n' "$name" "$wall" "${SPEED[$name]}" \
            "$(awk -v o="${bytes[i]}" -v i="$input" 'BEGIN { printf "%.3f", o / i }')" \
            "$(awk -v o="${bytes[i]}" 'BEGIN { printf "%.1f", o / 1e6 }')" "$((rss[i] / 1024))"
    done
    ROW_NAMES=() ROW_INPUTS=() ROW_CMDS=()
}

header() {
    printf '\n%s\n' "$1"
    printf '  %-40s %7s %8s %7s %9s %7s\n' "row" "wall s" "MB/s" "ratio" "out MB" "RSS MB"
}

# ratio A B: SPEED[A] / SPEED[B]
ratio() {
    if [[ -n ${SPEED[$1]:-} && -n ${SPEED[$2]:-} ]]; then
        printf '  %-58s %6s x\n' "$1 / $2" "$(awk -v a="${SPEED[$1]}" -v b="${SPEED[$2]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
    fi
}

# size_ratio A B: SIZE[A] / SIZE[B]
size_ratio() {
    if [[ -n ${SIZE[$1]:-} && -n ${SIZE[$2]:-} ]]; then
        printf '  %-58s %6s\n' "$1 / $2" "$(awk -v a="${SIZE[$1]}" -v b="${SIZE[$2]}" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }')"
    fi
}

# ---- data ----

ensure_tree() {
    if [[ ! -d $TREE ]]; then
        mkdir -p "$DATA"
        echo "generating a ${SIZE_MB} MB CUDA-like tree in $TREE (once) ..."
        python3 "$HERE/gen_cuda_tree.py" --out "$TREE" --size-mb "$SIZE_MB"
    fi
    tar -C "$TREE" -cf - . >/dev/null  # warm the page cache: every row reads from memory
}

# ---- sections ----

section_layer_write() {
    local bench=$BUILD_DIR/bench/bench_layer_write
    if [[ ! -x $bench ]]; then
        echo "error: $bench not found; build it first: ninja -C $BUILD_DIR bench/bench_layer_write" >&2
        exit 1
    fi
    local probe tar_bytes gnu_bytes
    probe=$("$bench" "$TREE" --compression none --store "$WORK/probe")
    rm -rf "$WORK/probe"
    tar_bytes=$(kv tar_bytes "$probe")
    gnu_bytes=$(tar -C "$TREE" -cf - . | wc -c)
    local store="$STORE_PARENT/ocibuild-bench-store.$$"
    local clean="rm -rf '$store'"
    echo
    echo "layer write: $TREE"
    echo "  $(kv entries "$probe") entries; ocibuild tar $(awk -v b="$tar_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB, GNU tar $(awk -v b="$gnu_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB;" \
         "MB/s = uncompressed tar bytes / wall; ocibuild store under $STORE_PARENT"

    row "ocibuild tar only (none)" "$tar_bytes" "$clean; '$bench' '$TREE' --compression none --store '$store'"
    row "tar -cf - . | cat" "$gnu_bytes" "tar -C '$TREE' -cf - . | wc -c"
    row "ocibuild gzip (ISA-L 2, $NPROC threads)" "$tar_bytes" "$clean; '$bench' '$TREE' --compression gzip --store '$store'"
    row "ocibuild gzip -6 (zlib, $NPROC threads)" "$tar_bytes" \
        "$clean; '$bench' '$TREE' --compression gzip --level 6 --store '$store'"
    row "tar | gzip -6" "$gnu_bytes" "tar -C '$TREE' -cf - . | gzip -6 | wc -c"
    if have pigz; then
        row "tar | pigz -6 ($NPROC threads)" "$gnu_bytes" "tar -C '$TREE' -cf - . | pigz -6 | wc -c"
    else
        note "pigz not installed: row skipped"
    fi
    row "ocibuild zstd -3 ($NPROC threads)" "$tar_bytes" "$clean; '$bench' '$TREE' --compression zstd --store '$store'"
    if have zstd; then
        row "tar | zstd -T0 -3" "$gnu_bytes" "tar -C '$TREE' -cf - . | zstd -q -T0 -3 | wc -c"
    else
        note "zstd not installed: row skipped"
    fi
    row "ocibuild zstd -3, store on disk (fsync)" "$tar_bytes" \
        "rm -rf '$WORK/disk-store'; '$bench' '$TREE' --compression zstd --store '$WORK/disk-store'"
    header "  (median of $RUNS round-robin runs; ratio = out/in; RSS = peak of the largest process)"
    run_rows
    rm -rf "$store" "$WORK/disk-store"

    echo
    echo "  speed ratios (ocibuild / peer; > 1 means ocibuild is faster):"
    ratio "ocibuild gzip (ISA-L 2, $NPROC threads)" "tar | pigz -6 ($NPROC threads)"
    ratio "ocibuild gzip -6 (zlib, $NPROC threads)" "tar | pigz -6 ($NPROC threads)"
    ratio "ocibuild gzip -6 (zlib, $NPROC threads)" "tar | gzip -6"
    ratio "ocibuild zstd -3 ($NPROC threads)" "tar | zstd -T0 -3"
    ratio "ocibuild tar only (none)" "tar -cf - . | cat"
}

# The Go pgzip peer, built once into bench/.data/ (gitignored); PGZIP is empty when it cannot be.
build_pgzip() {
    PGZIP=""
    local bin=$DATA/pgzip-bench src=/usr/share/gocode/src/github.com/klauspost/pgzip
    if [[ -x $bin && $bin -nt $HERE/pgzip/main.go ]]; then PGZIP=$bin; return; fi
    if ! have go || [[ ! -d $src ]]; then
        note "Go pgzip row skipped (needs Debian's golang-go and golang-github-klauspost-pgzip-dev)"
        return
    fi
    mkdir -p "$DATA"
    if (cd "$HERE/pgzip" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$WORK/gocache" \
            go build -o "$bin" main.go); then
        PGZIP=$bin
    else
        note "building bench/pgzip failed: row skipped"
    fi
}

# compress_rows NAME FILE: compression alone of one tar file that sits in memory, ocibuild's
# compressor (bench_compress) beside the peer tools reading the same file.
compress_rows() {
    local label=$1 file=$2 bench=$BUILD_DIR/bench/bench_compress in_bytes
    if [[ ! -x $bench ]]; then
        echo "error: $bench not found; build it first: ninja -C $BUILD_DIR bench/bench_compress" >&2
        exit 1
    fi
    in_bytes=$(stat -c %s "$file")
    cat "$file" >/dev/null
    echo
    echo "compress: $label ($(awk -v b="$in_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB, $file)"
    echo "  MB/s = input bytes / wall; every row reads the same file from memory"
    row "gzip -6" "$in_bytes" "gzip -6 <'$file' | wc -c"
    if have pigz; then
        row "pigz -6 ($NPROC threads)" "$in_bytes" "pigz -6 <'$file' | wc -c"
        row "pigz -1 ($NPROC threads)" "$in_bytes" "pigz -1 <'$file' | wc -c"
    else
        note "pigz not installed: rows skipped"
    fi
    [[ -n $PGZIP ]] && row "Go pgzip default ($NPROC threads)" "$in_bytes" "'$PGZIP' <'$file' | wc -c"
    row "ocibuild gzip (ISA-L 2, 1 thread)" "$in_bytes" "'$bench' '$file' --threads 1"
    row "ocibuild gzip (ISA-L 2, $NPROC threads)" "$in_bytes" "'$bench' '$file'"
    row "ocibuild gzip -1 (ISA-L 1, $NPROC threads)" "$in_bytes" "'$bench' '$file' --level 1"
    row "ocibuild gzip -6 (zlib, $NPROC threads)" "$in_bytes" "'$bench' '$file' --level 6"
    if have zstd; then
        row "zstd -T0 -3" "$in_bytes" "zstd -q -T0 -3 <'$file' | wc -c"
    else
        note "zstd not installed: row skipped"
    fi
    row "ocibuild zstd -3 ($NPROC threads)" "$in_bytes" "'$bench' '$file' --compression zstd"
    header "  (median of $RUNS round-robin runs; ratio = out/in; RSS = peak of the largest process)"
    run_rows
    echo
    echo "  speed ratios (ocibuild / peer; > 1 means ocibuild is faster):"
    ratio "ocibuild gzip (ISA-L 2, $NPROC threads)" "pigz -6 ($NPROC threads)"
    ratio "ocibuild gzip (ISA-L 2, $NPROC threads)" "Go pgzip default ($NPROC threads)"
    ratio "ocibuild gzip -6 (zlib, $NPROC threads)" "pigz -6 ($NPROC threads)"
    ratio "ocibuild zstd -3 ($NPROC threads)" "zstd -T0 -3"
    echo "  size ratios (ocibuild out / peer out):"
    size_ratio "ocibuild gzip (ISA-L 2, $NPROC threads)" "gzip -6"
    size_ratio "ocibuild gzip (ISA-L 2, $NPROC threads)" "Go pgzip default ($NPROC threads)"
    size_ratio "ocibuild gzip -6 (zlib, $NPROC threads)" "gzip -6"
}

section_compress() {
    build_pgzip
    tar -C "$TREE" -cf "$SHM_TAR" .
    compress_rows "GNU tar of $(basename "$TREE")" "$SHM_TAR"
    rm -f "$SHM_TAR"
    if [[ -n ${BENCH_TAR:-} ]]; then compress_rows "BENCH_TAR" "$BENCH_TAR"; fi
}

read -r -a SECTIONS <<<"${BENCH_SECTIONS:-layer_write compress}"

echo "ocibuild benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $NPROC cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "  cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z $TIME_BIN ]] && note "/usr/bin/time not found: wall from date, RSS from the bench programs only"
ensure_tree
for s in "${SECTIONS[@]}"; do "section_$s"; done
