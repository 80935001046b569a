#!/usr/bin/env bash
# conda solve at conda-forge's scale: `ocibuild solve` beside rattler (resolvo, the npm package
# @conda-org/rattler under Node.js), in one run, on the same synthetic channel served over loopback
# HTTP as repodata.json.zst, with the same specs and virtual packages. Prints wall time and peak RSS
# (/usr/bin/time -v), each tool's load/solve split, the ocibuild/rattler ratios, and whether both
# answers are the same set of "name version build" (with a diff when not). Not a test: nothing
# passes or fails on a number; the exit status is 1 only when a command failed or the answers differ.
#
#   bench/conda_solve_bench.sh [BUILD_DIR]        (BUILD_DIR defaults to build/; or set OCIBUILD)
#
# Environment:
#   BENCH_CONDA_DATA  where the generated channel is cached (default ${TMPDIR:-/tmp}/ocibuild-conda-bench);
#                     regenerated when the generator or its arguments change
#   BENCH_SEED        generator seed (default 1)
#   BENCH_LINUX_RECORDS / BENCH_NOARCH_RECORDS  channel size (default 480000 / 190000)
#   BENCH_RUNS        runs per tool, round-robin; the median wall is shown (default 3)
#   BENCH_TOOLS       which tools to run (default "ocibuild rattler")
#   BENCH_SPECS       the request, one spec per line (default: the PyTorch request below)
#   BENCH_VIRTUAL_PACKAGES  NAME=VERSION[=BUILD] words (default: __cuda=12.4 __glibc=2.35
#                     __linux=4.18 __unix=0 __archspec=1=x86_64); ocibuild gets all but __unix, which
#                     it takes from the platform
#   BENCH_KEEP        keep the run folder (answers, logs) and print its path
#
# Columns: wall and peak RSS of the tool's process (/usr/bin/time -v), its CPU time (user + sys), and
# the CPU time the loopback HTTP server (python3 -m http.server) spent serving that run, which is
# in neither tool's CPU time but is in both walls.
#
# Fairness: both tools download and parse the repodata on every run. ocibuild gets a fresh, empty
# store (OCIBUILD_STORE) per run, so its repodata cache is cold; rattler's WASM gateway keeps no
# cache between processes. The channel files are read once first to warm the page cache. The
# rattler module is installed on first use into bench/.node/ (gitignored) with npm.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR
OCIBUILD=${OCIBUILD:-$BUILD_DIR/src/cli/ocibuild}
SEED=${BENCH_SEED:-1}
LINUX_RECORDS=${BENCH_LINUX_RECORDS:-480000}
NOARCH_RECORDS=${BENCH_NOARCH_RECORDS:-190000}
RUNS=${BENCH_RUNS:-3}
TOOLS=${BENCH_TOOLS:-ocibuild rattler}
DATA_ROOT=${BENCH_CONDA_DATA:-${TMPDIR:-/tmp}/ocibuild-conda-bench}
RATTLER_VERSION=0.3.5
CHANNEL=synth-forge
DEFAULT_SPECS='python >=3.10
pytorch * cuda*
torchvision
torchaudio
tensorboard
scikit-learn
pandas
matplotlib'
read -r -a VIRTUAL_PACKAGES <<<"${BENCH_VIRTUAL_PACKAGES:-__cuda=12.4 __glibc=2.35 __linux=4.18 __unix=0 __archspec=1=x86_64}"

note() { printf '  note: %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
wants() { [[ " $TOOLS " == *" $1 "* ]]; }

SPECS=()
while IFS= read -r line; do
    [[ -n ${line// /} ]] && SPECS+=("$line")
done <<<"${BENCH_SPECS:-$DEFAULT_SPECS}"

command -v python3 >/dev/null || die "python3 not found"
command -v zstd >/dev/null || die "zstd not found (Debian package zstd)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian package time)"
if wants ocibuild && [[ ! -x $OCIBUILD ]]; then die "$OCIBUILD not found: build it first (ninja -C build) or set OCIBUILD"; fi
if wants rattler; then
    command -v node >/dev/null || die "node not found (Node.js 18 or newer runs @conda-org/rattler)"
    if [[ ! -f $HERE/.node/node_modules/@conda-org/rattler/dist/rattler.node.cjs ]]; then
        command -v npm >/dev/null || die "npm not found: needed once to install @conda-org/rattler into $HERE/.node"
        echo "installing @conda-org/rattler@$RATTLER_VERSION into $HERE/.node"
        mkdir -p "$HERE/.node"
        [[ -f $HERE/.node/package.json ]] || echo '{"private": true}' >"$HERE/.node/package.json"
        (cd "$HERE/.node" && npm install --no-audit --no-fund --loglevel=error "@conda-org/rattler@$RATTLER_VERSION") >&2
    fi
fi

# ---- the channel (cached) ----
GEN=$HERE/gen_conda_channel.py
GEN_ARGS=(--seed "$SEED" --linux-records "$LINUX_RECORDS" --noarch-records "$NOARCH_RECORDS" --channel "$CHANNEL")
KEY=$( { sha256sum <"$GEN"; echo "${GEN_ARGS[*]}"; } | sha256sum | cut -c1-12)
DATA=$DATA_ROOT/$KEY
if [[ ! -f $DATA/.complete ]]; then
    echo "generating the channel into $DATA (once)"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    gen_start=$(date +%s.%N)
    python3 "$GEN" --out "$DATA" "${GEN_ARGS[@]}"
    printf '  generated in %.1f s\n' "$(echo "$(date +%s.%N) - $gen_start" | bc)"
    touch "$DATA/.complete"
fi
for subdir in linux-64 noarch; do
    cat "$DATA/$CHANNEL/$subdir/repodata.json.zst" >/dev/null
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-conda-solve-bench.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n ${BENCH_KEEP:-} ]]; then echo "run folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- loopback HTTP server on a free port ----
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$DATA" >"$WORK/http.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$WORK/http.log" | head -1)
    [[ -n $PORT ]] && break
    sleep 0.05
done
[[ -n $PORT ]] || die "the HTTP server did not start: $(cat "$WORK/http.log")"
URL=http://127.0.0.1:$PORT/$CHANNEL

VP_ARGS=() VP_ARGS_OCIBUILD=()
for vp in "${VIRTUAL_PACKAGES[@]}"; do
    VP_ARGS+=(--virtual-package "$vp")
    # ocibuild derives __unix from the platform and refuses to have it overridden (as conda does)
    [[ $vp == __unix=* ]] || VP_ARGS_OCIBUILD+=(--virtual-package "$vp")
done

# "name version build" lines of an `ocibuild solve --json` answer, virtual packages left out.
json_answer() {
    python3 -c '
import json, sys
rows = json.load(open(sys.argv[1]))
for r in sorted(rows, key=lambda r: (r["name"], r["version"], r["build"])):
    if not r["name"].startswith("__"):
        print(r["name"], r["version"], r["build"])
' "$1"
}

# time_field FILE "Label" → the value of a /usr/bin/time -v line
time_field() { sed -n "s/^[[:space:]]*$2: //p" "$1" | head -1; }
wall_seconds() {  # "h:mm:ss" or "m:ss.ss" → seconds
    echo "$1" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}

server_cpu() {  # CPU seconds the HTTP server has used so far
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"
}

run_tool() {  # run_tool TOOL RUN → $WORK/TOOL.RUN.{out,err,time,answer,server}
    local tool=$1 run=$2 prefix=$WORK/$1.$2 server_before
    server_before=$(server_cpu)
    case $tool in
    ocibuild)
        local store
        store=$(mktemp -d "$WORK/store.XXXXXX")
        if ! OCIBUILD_STORE=$store /usr/bin/time -v -o "$prefix.time" \
            "$OCIBUILD" solve "${SPECS[@]}" -c "$URL" --platform linux/amd64 "${VP_ARGS_OCIBUILD[@]}" --json >"$prefix.out" 2>"$prefix.err"; then
            sed 's/^/    /' "$prefix.err" >&2
            die "ocibuild solve failed (run $run)"
        fi
        rm -rf "$store" "$store-work"  # the repodata cache lives in the store's work folder
        json_answer "$prefix.out" >"$prefix.answer"
        ;;
    rattler)
        if ! /usr/bin/time -v -o "$prefix.time" \
            node "$HERE/rattler_solve.mjs" -c "$URL" "${VP_ARGS[@]}" "${SPECS[@]}" >"$prefix.answer" 2>"$prefix.err"; then
            sed 's/^/    /' "$prefix.err" >&2
            die "rattler solve failed (run $run)"
        fi
        ;;
    esac
    awk -v a="$(server_cpu)" -v b="$server_before" 'BEGIN { printf "%.2f\n", a - b }' >"$prefix.server"
}

echo "conda solve: $(printf '"%s" ' "${SPECS[@]}")"
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1e6 }'; }
echo "  channel $URL: linux-64 $(mb "$DATA/$CHANNEL/linux-64/repodata.json") MB JSON" \
    "($(mb "$DATA/$CHANNEL/linux-64/repodata.json.zst") MB .zst), noarch" \
    "$(mb "$DATA/$CHANNEL/noarch/repodata.json") MB ($(mb "$DATA/$CHANNEL/noarch/repodata.json.zst") MB .zst)"
echo "  virtual packages: ${VIRTUAL_PACKAGES[*]}; runs: $RUNS; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

for run in $(seq "$RUNS"); do
    for tool in $TOOLS; do run_tool "$tool" "$run"; done
done

# ---- report ----
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A WALL RSS
echo
printf '  %-10s %7s %6s %7s %8s  %s\n' tool "wall s" "CPU s" "RSS MB" "server s" "split (medians of $RUNS runs)"
for tool in $TOOLS; do
    walls=() rss=() a=() b=() cpu=() server=()
    for run in $(seq "$RUNS"); do
        walls+=("$(wall_seconds "$(time_field "$WORK/$tool.$run.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')")")
        cpu+=("$(echo "$(time_field "$WORK/$tool.$run.time" 'User time (seconds)') + $(time_field "$WORK/$tool.$run.time" 'System time (seconds)')" | bc)")
        server+=("$(cat "$WORK/$tool.$run.server")")
        rss+=("$(time_field "$WORK/$tool.$run.time" 'Maximum resident set size (kbytes)')")
        if [[ $tool == ocibuild ]]; then
            a+=("$(sed -n 's/^solve: loaded [0-9]* records in \([0-9]*\) ms.*/\1/p' "$WORK/$tool.$run.err")")
            b+=("$(sed -n 's/^solve: .*solved in \([0-9]*\) ms.*/\1/p' "$WORK/$tool.$run.err")")
        else
            a+=("$(sed -n 's/.* download \([0-9]*\) ms.*/\1/p' "$WORK/$tool.$run.err")")
            b+=("$(sed -n 's/.* parse+solve \([0-9-]*\) ms.*/\1/p' "$WORK/$tool.$run.err")")
        fi
    done
    WALL[$tool]=$(printf '%s\n' "${walls[@]}" | median)
    RSS[$tool]=$(printf '%s\n' "${rss[@]}" | median)
    ma=$(printf '%s\n' "${a[@]}" | median)
    mb=$(printf '%s\n' "${b[@]}" | median)
    if [[ $tool == ocibuild ]]; then
        records=$(sed -n 's/^solve: loaded \([0-9]*\) records.*/\1/p' "$WORK/$tool.1.err")
        split="load (download + parse $records records) $ma ms, solve $mb ms"
    else
        split="download $ma ms, parse+solve $mb ms (its API does not split them)"
    fi
    printf '  %-10s %7s %6s %7.0f %8s  %s\n' "$tool" "${WALL[$tool]}" "$(printf '%s\n' "${cpu[@]}" | median)" \
        "$(echo "${RSS[$tool]} / 1024" | bc -l)" "$(printf '%s\n' "${server[@]}" | median)" "$split"
    printf '             walls: %s\n' "${walls[*]}"
done

status=0
if wants ocibuild && wants rattler; then
    echo
    wall_ratio=$(echo "${WALL[ocibuild]} / ${WALL[rattler]}" | bc -l)
    rss_ratio=$(echo "${RSS[ocibuild]} / ${RSS[rattler]}" | bc -l)
    verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "met" : "missed" }'; }
    printf '  ocibuild / rattler wall: %.2fx (target <= 0.5x: %s)\n' "$wall_ratio" "$(verdict "$wall_ratio" 0.5)"
    printf '  ocibuild / rattler peak RSS: %.2fx (target <= 0.7x: %s)\n' "$rss_ratio" "$(verdict "$rss_ratio" 0.7)"
    n=$(wc -l <"$WORK/ocibuild.1.answer")
    if diff -u --label rattler --label ocibuild "$WORK/rattler.1.answer" "$WORK/ocibuild.1.answer" >"$WORK/answer.diff"; then
        echo "  answers: equal ($n packages, name version build)"
    else
        echo "  answers: DIFFERENT (ocibuild $n packages, rattler $(wc -l <"$WORK/rattler.1.answer")):"
        grep '^[-+][^-+]' "$WORK/answer.diff" | sed 's/^/    /'
        status=1
    fi
fi
for tool in $TOOLS; do
    for run in $(seq 2 "$RUNS"); do
        cmp -s "$WORK/$tool.1.answer" "$WORK/$tool.$run.answer" || { echo "  $tool: run $run answered differently from run 1"; status=1; }
    done
done
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
