#!/usr/bin/env bash
# Unpack of a ~550 MB image in several gzip layers: `ocibuild unpack oci:LAYOUT:TAG DIR` beside
# `umoci unpack --image LAYOUT:TAG BUNDLE` (peer-tools §7.1, row c) and the physical floor
# (`tar -xzf` of each layer blob in order), in the same run on the same image. Prints wall time,
# peak RSS and the ocibuild/umoci wall-time ratio (issue 4's target: at most 0.2).
#
#   bench/unpack_bench.sh [BUILD_DIR]           (as root; build first: ninja -C BUILD_DIR)
#   bench/unpack_bench.sh --image-only          builds (once) the image and prints its layout path
#
# Environment:
#   BENCH_BASE_MB  size of the generated tree the image is made of (default 550)
#   BENCH_LAYERS   number of layers the tree is split into (default 5; plus one small busybox
#                  layer first, so that run steps have /bin/sh and /bin/true)
#   BENCH_RUNS     rounds (default 3); rows run round-robin, median wall and largest RSS shown
#   BENCH_WORK     parent of the scratch directory (default /var/tmp); every destination lives
#                  there, on the same filesystem
#   BENCH_COLD     1: skip the memory warm-up before each timed command (see below)
#
# The image is made without ocibuild: the tree from gen_cuda_tree.py (seed 1) is cut, in path
# order, into BENCH_LAYERS chunks of about equal bytes; each chunk (with the directories above its
# entries) is written by GNU tar (owner 0:0) and compressed with `pigz -6 -n`; digests, config,
# manifest and index.json are written by a few lines of Python. It is cached in
# bench/.data/image-<MB>mb-<N>layers/ (tag "1") and reused by bench/run_steps_bench.sh.
#
# Two ocibuild rows: `unpack oci:LAYOUT` reads the layout in place, as umoci does, checking every
# blob against its digest before use and each tar against its diff_id while applying (a first
# unpack); `unpack TAG` reads an image from the store (what `pull` and `build` leave there), whose
# layer blobs carry the diff_id checked by an earlier unpack, so their tars are not hashed again.
# Every run unpacks into a fresh destination. A sync happens before each timed command; destinations are kept until the
# last round ends (about 2.5 GB per round), because recent deletions slow file creation on ext4
# without a journal; the page cache is warm (the blobs are read first). Start it on a filesystem
# that saw no large deletion in the last few minutes.
#
# Memory warm-up: on a VM whose host backs guest memory lazily and takes freed memory back (virtio
# free page reporting; this project's VMs), the first write to a page costs ~10x a later one:
# 0.4 GB/s instead of 3.5 GB/s for `dd` into tmpfs. Each unpack puts ~600 MB of new files into the
# page cache, so that cost (about 1.5 s, the same for every tool) would be timed with the tool.
# Before each timed command, 2 GB are written to and deleted from /dev/shm (untimed), so every row
# gets memory the host already backs, as on bare metal. BENCH_COLD=1 times the cold case.
#
# Installs nothing: without umoci the peer row is skipped with a note (apt-get install umoci).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BASE_MB=${BENCH_BASE_MB:-550}
NLAYERS=${BENCH_LAYERS:-5}
RUNS=${BENCH_RUNS:-3}
DATA=$HERE/.data
TREE=$DATA/cuda-${BASE_MB}mb
LAYOUT=$DATA/image-${BASE_MB}mb-${NLAYERS}layers
TAG=1
NPROC=$(nproc)

have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '  note: %s\n' "$*"; }

# ---- the image (cached) ----

build_image() {
    [[ -f $LAYOUT/index.json ]] && return 0
    have pigz || { echo "error: pigz is needed to build the bench image (apt-get install pigz)" >&2; exit 1; }
    if [[ ! -d $TREE ]]; then
        mkdir -p "$DATA"
        echo "generating a $BASE_MB MB CUDA-like tree in $TREE (once) ..." >&2
        python3 "$HERE/gen_cuda_tree.py" --out "$TREE" --size-mb "$BASE_MB" --seed 1 >&2
    fi
    [[ -x /bin/busybox ]] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
        { echo "error: a static /bin/busybox is needed for the base layer (apt-get install busybox-static)" >&2; exit 1; }
    echo "building the bench image $LAYOUT ($NLAYERS layers + busybox, once) ..." >&2
    local tmp
    tmp=$(mktemp -d "$DATA/image-build.XXXXXX")
    # Layer 0: a static busybox as /bin/sh and /bin/true, and the usual mount-point folders.
    local bb=$tmp/busybox-root
    mkdir -p "$bb/bin" "$bb/dev" "$bb/proc" "$bb/sys" "$bb/etc" "$bb/root" "$bb/tmp" "$bb/run"
    chmod 1777 "$bb/tmp"
    cp /bin/busybox "$bb/bin/busybox"
    ln -s busybox "$bb/bin/sh"
    ln -s busybox "$bb/bin/true"
    find "$bb" -exec touch -h -d @1700000000 {} +
    (cd "$bb" && find . -mindepth 1 -print0 | LC_ALL=C sort -z) >"$tmp/list-0"
    tar -C "$bb" --no-recursion --numeric-owner --owner=0 --group=0 --null -T "$tmp/list-0" -cf "$tmp/layer-0.tar"
    # Layers 1..N: the tree in path order, cut into chunks of about equal bytes.
    python3 - "$TREE" "$tmp" "$NLAYERS" <<'EOF'
import os, sys
tree, tmp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
entries, dirs = [], []
for top, dnames, fnames in os.walk(tree):
    rel = os.path.relpath(top, tree)
    for d in dnames:
        p = os.path.normpath(os.path.join(rel, d))
        if os.path.islink(os.path.join(tree, p)):
            entries.append((p, 0))
        else:
            dirs.append(p)
    for f in fnames:
        p = os.path.normpath(os.path.join(rel, f))
        entries.append((p, os.lstat(os.path.join(tree, p)).st_size))
entries.sort()
total = sum(s for _, s in entries)
chunks, cur, acc = [[] for _ in range(n)], 0, 0
for p, s in entries:
    if acc >= total * (cur + 1) / n and cur < n - 1:
        cur += 1
    chunks[cur].append(p)
    acc += s
for i, chunk in enumerate(chunks, 1):
    names = set(dirs) if i == 1 else set()  # empty folders go with the first chunk
    for p in chunk:
        names.add(p)
        d = os.path.dirname(p)
        while d:
            names.add(d)
            d = os.path.dirname(d)
    with open(os.path.join(tmp, f"list-{i}"), "wb") as f:
        for p in sorted(names):
            f.write(p.encode("utf-8", "surrogateescape") + b"\0")
EOF
    local i
    for ((i = 1; i <= NLAYERS; i++)); do
        tar -C "$TREE" --no-recursion --numeric-owner --owner=0 --group=0 --null -T "$tmp/list-$i" -cf "$tmp/layer-$i.tar"
    done
    mkdir -p "$tmp/layout/blobs/sha256"
    for ((i = 0; i <= NLAYERS; i++)); do
        pigz -6 -n -c "$tmp/layer-$i.tar" >"$tmp/layer-$i.tar.gz"
    done
    python3 - "$tmp" "$NLAYERS" "$TAG" <<'EOF'
import hashlib, json, os, sys
tmp, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
blobs = os.path.join(tmp, "layout", "blobs", "sha256")
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return d, len(data)
layers, diff_ids, history = [], [], []
for i in range(n + 1):
    diff_ids.append("sha256:" + sha(os.path.join(tmp, f"layer-{i}.tar")))
    gz = os.path.join(tmp, f"layer-{i}.tar.gz")
    d = sha(gz)
    size = os.path.getsize(gz)
    os.rename(gz, os.path.join(blobs, d))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + d, "size": size})
    history.append({"created": "2023-11-14T22:13:20Z",
                    "created_by": "busybox" if i == 0 else f"bench: CUDA-like tree, part {i}/{n}"})
config = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
          "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                     "Cmd": ["/bin/sh"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
cd, cs = put(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": cs},
            "layers": layers}
md, ms = put(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + md,
                        "size": ms, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
with open(os.path.join(tmp, "layout", "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(tmp, "layout", "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
EOF
    rm -rf "$LAYOUT"
    mv "$tmp/layout" "$LAYOUT"
    rm -rf "$tmp"
}

# layer_blobs: the layer blob paths of the image, in order
layer_blobs() {
    python3 - "$LAYOUT" <<'EOF'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
md = idx["manifests"][0]["digest"].split(":")[1]
m = json.load(open(os.path.join(lay, "blobs", "sha256", md)))
for l in m["layers"]:
    print(os.path.join(lay, "blobs", "sha256", l["digest"].split(":")[1]))
EOF
}

if [[ ${1:-} == --image-only ]]; then
    build_image
    echo "$LAYOUT"
    exit 0
fi

BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || { [[ -d $BUILD_DIR ]] && BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || BUILD_DIR=$ROOT/$BUILD_DIR; }
OCIBUILD=$BUILD_DIR/src/cli/ocibuild

[[ $(id -u) -eq 0 ]] || { echo "error: run as root (umoci unpack without --rootless, owners and devices)" >&2; exit 1; }
[[ -x $OCIBUILD ]] || { echo "error: $OCIBUILD not found; build it first: ninja -C $BUILD_DIR" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

build_image
mapfile -t BLOBS < <(layer_blobs)

WORK=$(mktemp -d "${BENCH_WORK:-/var/tmp}/ocibuild-unpackbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

warm_memory() {  # see "Memory warm-up" above
    [[ ${BENCH_COLD:-0} == 1 ]] && return 0
    dd if=/dev/zero of=/dev/shm/ocibuild-bench-warm bs=1M count=2048 status=none
    rm -f /dev/shm/ocibuild-bench-warm
}

measure() {  # measure PREP CMD: PREP, a sync and the warm-up (untimed), then CMD once; sets M_WALL (s), M_RSS (KB)
    [[ -z $1 ]] || bash -c "$1"
    sync
    warm_memory
    /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "$2" >/dev/null
    read -r M_WALL M_RSS <"$WORK/time"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

comp_bytes=0
for b in "${BLOBS[@]}"; do comp_bytes=$((comp_bytes + $(stat -c %s "$b"))); cat "$b" >/dev/null; done
tar_bytes=0
for b in "${BLOBS[@]}"; do tar_bytes=$((tar_bytes + $(gzip -dc "$b" | wc -c))); done

echo "unpack benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $NPROC cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "  cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  image $LAYOUT:$TAG: ${#BLOBS[@]} gzip layers, $(awk -v b="$comp_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB compressed," \
     "$(awk -v b="$tar_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB of uncompressed tar"
echo "  destinations: $WORK ($(findmnt -n -o FSTYPE -T "$WORK" | head -1)); memory warm-up before each command: $([[ ${BENCH_COLD:-0} == 1 ]] && echo no || echo yes)"

ROWS=() PREPS=() CMDS=()
row() { ROWS+=("$1"); PREPS+=("$2"); CMDS+=("$3"); }
L1="ocibuild unpack oci:LAYOUT (first time)"
L2="ocibuild unpack TAG (from its store)"
row "$L1" "" "exec '$OCIBUILD' unpack -q --store '$WORK/r/store' 'oci:$LAYOUT:$TAG' '$WORK/r/dest1'"
row "$L2" "" "exec '$OCIBUILD' unpack -q --store '$WORK/tag-store' '$TAG' '$WORK/r/dest2'"
PEER=1
if have umoci; then
    row "umoci unpack" "" "exec umoci unpack --image '$LAYOUT:$TAG' '$WORK/r/bundle'"
else
    PEER=0
    note "umoci not installed (apt-get install umoci): peer row skipped"
fi
floor=""
for b in "${BLOBS[@]}"; do floor+="tar -C '$WORK/r/floor' -xzf '$b' && "; done
row "tar -xzf of each layer (floor)" "mkdir '$WORK/r/floor'" "${floor}true"
# The store the second row reads: the layout itself (an OCI layout is what a store is), unpacked
# once (untimed) so that the store has checked and recorded each layer's diff_id.
cp -a "$LAYOUT" "$WORK/tag-store"
"$OCIBUILD" unpack -q --store "$WORK/tag-store" "$TAG" "$WORK/warm-prep"

declare -A WALLS RSS WALL
for ((r = 1; r <= RUNS; r++)); do
    echo "  round $r/$RUNS ..."
    mkdir -p "$WORK/r"
    for ((i = 0; i < ${#ROWS[@]}; i++)); do
        measure "${PREPS[i]}" "${CMDS[i]}"
        WALLS[${ROWS[i]}]+=" $M_WALL"
        [[ ${RSS[${ROWS[i]}]:-0} -ge $M_RSS ]] || RSS[${ROWS[i]}]=$M_RSS
    done
    # Nothing is deleted until the end: on ext4 without a journal (this VM's root) the inode
    # allocator checks every candidate for a recent deletion, and after a large rm -rf that check
    # tripled every tool's system time for minutes. Each round's trees move aside instead.
    mv "$WORK/r" "$WORK/done-$r"
done
rm -rf "$WORK"/done-* "$WORK/warm-prep"

echo
echo "  (median of $RUNS round-robin rounds; RSS = largest process, max over rounds; MB/s = uncompressed tar / wall)"
printf '  %-44s %7s %8s %7s\n' "row" "wall s" "MB/s" "RSS MB"
for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    wall=$(median ${WALLS[$row]})
    WALL[$row]=$wall
    printf '  %-44s %7s %8s %7d   (%s)\n' "$row" "$wall" \
        "$(awk -v b="$tar_bytes" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0) ? b / 1e6 / w : 0 }')" "$((RSS[$row] / 1024))" \
        "${WALLS[$row]# }"
done

ratio() {  # ratio A B: wall A / wall B
    printf '  %-66s %6s x\n' "$1 / $2" "$(awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
}
echo
echo "  wall-time ratios (target: ocibuild / umoci <= 0.20):"
if ((PEER)); then
    ratio "$L1" "umoci unpack"
    ratio "$L2" "umoci unpack"
    ratio "tar -xzf of each layer (floor)" "umoci unpack"
fi
ratio "$L1" "tar -xzf of each layer (floor)"
