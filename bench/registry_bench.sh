#!/usr/bin/env bash
# Registry pull and push of a ~1 GB multi-layer image: ocibuild beside `skopeo copy`, in one run, on
# the same data, against loopback registries (docker-registry) started here. Prints wall time, MB/s,
# peak RSS (/usr/bin/time -f '%e %M') and the ocibuild/skopeo wall-time ratio. Not a test: nothing
# passes or fails on a number; the exit status is 1 only when a command failed.
#
#   bench/registry_bench.sh [BUILD_DIR]        (BUILD_DIR defaults to build/; or set OCIBUILD)
#
# Environment:
#   BENCH_IMAGE_MB  compressed size of the generated image (default 1024), in 6 tar+gzip layers that
#                   are about half random, half text (so about 2/3 of the uncompressed size)
#   BENCH_RUNS      runs per row, the median wall is shown (default 3)
#   BENCH_TOOLS     which tools to run (default "ocibuild skopeo")
#
# Fairness: the generated layout is cached in bench/.data/ (gitignored) and its blobs are read once
# to warm the page cache. Pulls come from one registry seeded once; every pull goes into a fresh
# destination (and, for ocibuild, a fresh store). Every push goes to a registry started for it alone
# on a fresh port with empty storage, so nothing is deduplicated or mounted, not even through
# skopeo's blob-info cache (its entries are per host:port). Installs nothing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR
OCIBUILD=${OCIBUILD:-$BUILD_DIR/src/cli/ocibuild}
IMAGE_MB=${BENCH_IMAGE_MB:-1024}
RUNS=${BENCH_RUNS:-3}
TOOLS=${BENCH_TOOLS:-ocibuild skopeo}
DATA=$HERE/.data
LAYOUT=$DATA/registry-image-${IMAGE_MB}mb
REGISTRY_BIN=/usr/bin/docker-registry

note() { printf '  note: %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
wants() { [[ " $TOOLS " == *" $1 "* ]]; }

[[ -x $REGISTRY_BIN ]] || die "$REGISTRY_BIN not found (Debian package docker-registry)"
command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"
if wants skopeo && ! command -v skopeo >/dev/null; then die "skopeo not found (Debian package skopeo)"; fi
if wants ocibuild && [[ ! -x $OCIBUILD ]]; then die "$OCIBUILD not found: build it first (ninja -C build) or set OCIBUILD"; fi
TIME_BIN=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%e' true 2>/dev/null; then
    TIME_BIN=/usr/bin/time
else
    note "/usr/bin/time not found (Debian package time): wall from date, peak RSS not measured"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-registry-bench.XXXXXX")
REG_PIDS=()
cleanup() {
    local pid
    for pid in "${REG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${REG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the image ----

generate_image() {
    echo "generating a ~${IMAGE_MB} MB 6-layer image in $LAYOUT (once) ..."
    rm -rf "$LAYOUT.tmp"
    python3 - "$LAYOUT.tmp" "$IMAGE_MB" <<'PY'
import gzip, hashlib, json, os, random, sys, tarfile
from multiprocessing import Pool

out, image_mb = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/blobs/sha256")
RATIO = 0.73          # compressed/uncompressed for half random, half text at gzip -1
FRACTIONS = [0.30, 0.22, 0.18, 0.13, 0.10, 0.07]
MIB = 1 << 20

class Hashing:
    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0
    def write(self, b):
        self.h.update(b); self.n += len(b)
        return self.f.write(b) if self.f else len(b)
    def flush(self):
        if self.f: self.f.flush()

class Content:
    """SIZE bytes: 1 MiB blocks, alternately os.urandom and word soup (a text block at a random rotation)."""
    def __init__(self, size, text, rnd):
        self.left, self.text, self.rnd, self.buf, self.i = size, text, rnd, b"", 0
    def read(self, n=-1):
        if self.left <= 0: return b""
        if not self.buf:
            if self.i % 2 == 0:
                self.buf = os.urandom(MIB)
            else:
                k = self.rnd.randrange(len(self.text))
                self.buf = self.text[k:] + self.text[:k]
            self.i += 1
        n = min(self.left, len(self.buf) if n is None or n < 0 else n)
        chunk, self.buf = self.buf[:n], self.buf[n:]
        self.left -= len(chunk)
        return chunk

def layer(args):
    index, raw_bytes = args
    rnd = random.Random(index)
    vocab = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rnd.randint(2, 12))) for _ in range(3000)]
    text = (" ".join(rnd.choice(vocab) for _ in range(180000)).encode() + b"\n" * MIB)[:MIB]
    tmp = f"{out}/blobs/sha256/tmp-{index}"
    with open(tmp, "wb") as f:
        comp = Hashing(f)
        with gzip.GzipFile(fileobj=comp, mode="wb", compresslevel=1, mtime=0) as gz:
            raw = Hashing(gz)
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                left, n = raw_bytes, 0
                while left > 0:
                    size = min(left, rnd.randint(8, 64) * MIB)
                    info = tarfile.TarInfo(f"data/layer{index}/file{n:03d}.bin")
                    info.size, info.mode, info.mtime = size, 0o644, 0
                    tar.addfile(info, Content(size, text, rnd))
                    left -= size; n += 1
    digest = comp.h.hexdigest()
    os.rename(tmp, f"{out}/blobs/sha256/{digest}")
    return {"digest": "sha256:" + digest, "size": comp.n, "diff_id": "sha256:" + raw.h.hexdigest()}

def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f: f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}

raw_total = image_mb * 1e6 / RATIO
with Pool(min(2, os.cpu_count() or 1)) as pool:
    layers = pool.map(layer, [(i, int(raw_total * fr)) for i, fr in enumerate(FRACTIONS)], chunksize=1)
config = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
          "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]}}
cfg = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l["digest"],
                        "size": l["size"]} for l in layers]}
man = blob(json.dumps(manifest, separators=(",", ":")).encode())
with open(f"{out}/oci-layout", "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], **man,
               "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)
print(f"  {len(layers)} layers, {sum(l['size'] for l in layers) / 1e6:.1f} MB compressed, manifest {man['digest']}")
PY
    mv "$LAYOUT.tmp" "$LAYOUT"
}

mkdir -p "$DATA"
[[ -f $LAYOUT/index.json ]] || generate_image
IMAGE_BYTES=$(python3 -c '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
m = json.load(open(sys.argv[1] + "/blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]))
print(m["config"]["size"] + sum(l["size"] for l in m["layers"]))' "$LAYOUT")
MANIFEST_DIGEST=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]["digest"])' "$LAYOUT")
NLAYERS=$(python3 -c '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
print(len(json.load(open(sys.argv[1] + "/blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]))["layers"]))' "$LAYOUT")
cat "$LAYOUT"/blobs/sha256/* >/dev/null  # warm the page cache

# ---- registries ----

# start_registry NAME: a docker-registry on 127.0.0.1 (fresh port, storage $WORK/NAME); sets REG_HOST, REG_PID.
start_registry() {
    local dir=$WORK/$1 i
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  secret: registry-bench-$RANDOM$RANDOM
EOF
    : >"$dir/log"
    # warn level hides the "listening on" line; REGISTRY_LOG_LEVEL=info keeps it.
    REGISTRY_LOG_LEVEL=info "$REGISTRY_BIN" serve "$dir/config.yml" >"$dir/log" 2>&1 &
    REG_PID=$!
    REG_PIDS+=("$REG_PID")
    REG_HOST=""
    for ((i = 0; i < 1000; i++)); do
        REG_HOST=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$dir/log" | head -n1) || true
        [[ -n $REG_HOST ]] && break
        kill -0 "$REG_PID" 2>/dev/null || break
        sleep 0.01
    done
    [[ -n $REG_HOST ]] || { cat "$dir/log" >&2; die "docker-registry did not start"; }
    for ((i = 0; i < 500; i++)); do
        curl -fsS "http://$REG_HOST/v2/" >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    die "registry on $REG_HOST never answered"
}

stop_registry() {  # stop_registry NAME PID
    kill "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
    rm -rf "${WORK:?}/$1"
}

# served_digest HOST NAME TAG: the Docker-Content-Digest the registry answers for the tag
served_digest() {
    curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/$2/manifests/$3" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}

# ---- measuring ----

# measure LOG CMD...: runs CMD once (stdout and stderr to LOG); sets M_WALL, M_RSS (KB or "?"), M_RC.
measure() {
    local log=$1 start end
    shift
    M_RC=0
    if [[ -n $TIME_BIN ]]; then
        "$TIME_BIN" -f '%e %M' -o "$WORK/time" "$@" >"$log" 2>&1 || M_RC=$?
        read -r M_WALL M_RSS < <(tail -n1 "$WORK/time")
    else
        start=$(date +%s.%N)
        "$@" >"$log" 2>&1 || M_RC=$?
        end=$(date +%s.%N)
        M_WALL=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
        M_RSS="?"
    fi
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A WALLS RSS FAILED
FAILURES=0
# record ROW LOG: adds the last measure to ROW, or marks ROW failed with the log's last lines
record() {
    local row=$1 log=$2
    if [[ $M_RC -ne 0 ]]; then
        FAILED[$row]=1
        FAILURES=$((FAILURES + 1))
        printf '  %s failed (exit %s):\n' "$row" "$M_RC" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
        return
    fi
    WALLS[$row]="${WALLS[$row]:-} $M_WALL"
    if [[ $M_RSS != "?" ]] && ((M_RSS > ${RSS[$row]:-0})); then RSS[$row]=$M_RSS; fi
}

check_digest() {  # check_digest ROW GOT: a wrong digest counts as a failure
    if [[ $2 != "$MANIFEST_DIGEST" ]]; then
        printf '  %s: wrong result digest %s (expected %s)\n' "$1" "${2:-none}" "$MANIFEST_DIGEST" >&2
        FAILED[$1]=1
        FAILURES=$((FAILURES + 1))
    fi
}

layout_digest() {  # layout_digest DIR TAG
    python3 -c '
import json, sys
for m in json.load(open(sys.argv[1] + "/index.json"))["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]:
        print(m["digest"])' "$1" "$2" 2>/dev/null || true
}

# ---- the runs ----

echo "registry bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores; image $LAYOUT"
echo "  $NLAYERS layers, $(awk -v b="$IMAGE_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }') MB compressed, manifest $MANIFEST_DIGEST; $RUNS runs per row; tools: $TOOLS"

start_registry source
SRC_HOST=$REG_HOST
if wants skopeo; then
    skopeo copy --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$SRC_HOST/bench/source:1" >/dev/null
else
    "$OCIBUILD" push "oci:$LAYOUT:bench" "$SRC_HOST/bench/source:1" >/dev/null
fi
check_digest "seed" "$(served_digest "$SRC_HOST" bench/source 1)"
SRC_REF=$SRC_HOST/bench/source:1

for ((run = 1; run <= RUNS; run++)); do
    read -r -a order <<<"$TOOLS"
    if ((run % 2 == 0)); then mapfile -t order < <(printf '%s\n' "${order[@]}" | tac); fi  # alternate who goes first
    for tool in "${order[@]}"; do
        dest=$WORK/pull-$tool-$run
        log=$WORK/log-pull-$tool-$run
        case $tool in
        ocibuild)
            measure "$log" env OCIBUILD_STORE="$WORK/store-pull-$run" "$OCIBUILD" pull "$SRC_REF" -o "oci:$dest:1"
            record "pull: ocibuild -o oci:" "$log"
            [[ $M_RC -eq 0 ]] && check_digest "pull: ocibuild -o oci:" "$(layout_digest "$dest" 1)"
            rm -rf "$dest" "$WORK/store-pull-$run"
            measure "$log" env OCIBUILD_STORE="$WORK/store-only-$run" "$OCIBUILD" pull "$SRC_REF"
            record "pull: ocibuild (store only)" "$log"
            rm -rf "$WORK/store-only-$run"
            ;;
        skopeo)
            measure "$log" skopeo copy --src-tls-verify=false "docker://$SRC_REF" "oci:$dest:1"
            record "pull: skopeo copy -> oci:" "$log"
            [[ $M_RC -eq 0 ]] && check_digest "pull: skopeo copy -> oci:" "$(layout_digest "$dest" 1)"
            rm -rf "$dest"
            ;;
        esac
    done
    for tool in "${order[@]}"; do
        name=push-$tool-$run
        log=$WORK/log-$name
        start_registry "$name"
        case $tool in
        ocibuild)
            measure "$log" "$OCIBUILD" push "oci:$LAYOUT:bench" "$REG_HOST/bench/$name:1"
            row="push: ocibuild oci: ->"
            ;;
        skopeo)
            measure "$log" skopeo copy --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$REG_HOST/bench/$name:1"
            row="push: skopeo copy oci: ->"
            ;;
        esac
        record "$row" "$log"
        [[ $M_RC -eq 0 ]] && check_digest "$row" "$(served_digest "$REG_HOST" "bench/$name" 1)"
        stop_registry "$name" "$REG_PID"
    done
done

# ---- report ----

declare -A MEDIAN
printf '\n  %-32s %8s %9s %9s\n' "row (median of $RUNS)" "wall s" "MB/s" "RSS MB"
for row in "pull: ocibuild -o oci:" "pull: ocibuild (store only)" "pull: skopeo copy -> oci:" \
           "push: ocibuild oci: ->" "push: skopeo copy oci: ->"; do
    if [[ -n ${FAILED[$row]:-} ]]; then
        printf '  %-32s %8s\n' "$row" "FAILED"
        continue
    fi
    [[ -n ${WALLS[$row]:-} ]] || continue
    # shellcheck disable=SC2086
    MEDIAN[$row]=$(median ${WALLS[$row]})
    printf '  %-32s %8s %9s %9s\n' "$row" "${MEDIAN[$row]}" \
        "$(awk -v b="$IMAGE_BYTES" -v w="${MEDIAN[$row]}" 'BEGIN { printf "%.1f", (w > 0) ? b / 1e6 / w : 0 }')" \
        "$( [[ -n ${RSS[$row]:-} ]] && echo $((RSS[$row] / 1024)) || echo "?")"
done
echo
echo "  wall-time ratio ocibuild / skopeo (< 1 means ocibuild is faster):"
for pair in "pull: ocibuild -o oci:|pull: skopeo copy -> oci:" "push: ocibuild oci: ->|push: skopeo copy oci: ->"; do
    a=${pair%%|*} b=${pair##*|}
    if [[ -n ${MEDIAN[$a]:-} && -n ${MEDIAN[$b]:-} ]]; then
        printf '  %-58s %6s\n' "$a / $b" "$(awk -v a="${MEDIAN[$a]}" -v b="${MEDIAN[$b]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
    else
        printf '  %-58s %6s\n' "$a / $b" "n/a"
    fi
done
if ((FAILURES > 0)); then
    echo "  $FAILURES command(s) failed; see above" >&2
    exit 1
fi
