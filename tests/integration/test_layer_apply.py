"""Layer apply through `ocibuild unpack`: hostile layers, the OCI merge rules, oracles, rootless.

Every layer here is made by the test itself with Python's tarfile (or GNU tar, for sparse files)
and wrapped in a minimal OCI layout (config, manifest, index.json). Hostile layers must either be
refused (exit 1, the entry named in the message) or land inside the target directory; in both
cases nothing outside it may be created, changed or linked to. Each hostile case runs twice: with
openat2(RESOLVE_IN_ROOT) and with the manual walk that stands in for it on old kernels.
"""
import gzip
import hashlib
import io
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import need, ocibuild_path, run

EPOCH = 1_700_000_000
OUTSIDE_SECRET = b"outside secret\n"
RESOLVERS = ["openat2", "walk"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# Building layers and layouts


def _info(name, kind, mode, uid=0, gid=0, **extra):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = extra.pop("mtime", EPOCH)
    xattrs = extra.pop("xattrs", None)
    if xattrs:
        # Values as str; bytes that are not UTF-8 travel as surrogates (tarfile then writes the
        # record with hdrcharset=BINARY, which libarchive reads as raw bytes).
        ti.pax_headers = {f"SCHILY.xattr.{k}": (v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v)
                          for k, v in xattrs.items()}
    for k, v in extra.items():
        setattr(ti, k, v)
    return ti


def reg(name, data=b"", mode=0o644, **kw):
    ti = _info(name, tarfile.REGTYPE, mode, **kw)
    ti.size = len(data)
    return ti, data


def dir_(name, mode=0o755, **kw):
    return _info(name, tarfile.DIRTYPE, mode, **kw), None


def sym(name, target, **kw):
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw), None


def link(name, target, **kw):
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw), None


def chardev(name, major, minor, mode=0o666, **kw):
    return _info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor, **kw), None


def fifo(name, mode=0o644, **kw):
    return _info(name, tarfile.FIFOTYPE, mode, **kw), None


def tar_of(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(plain: bytes, how: str) -> tuple[bytes, str]:
    base = "application/vnd.oci.image.layer.v1.tar"
    if how == "gzip":
        return gzip.compress(plain, mtime=0), base + "+gzip"
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout, base + "+zstd"
    return plain, base


def write_layout(path: Path, layers, tag="1", how="gzip", diff_ids=None) -> str:
    """An OCI layout at `path` holding one image of `layers` (tar bytes, base first). Returns the
    image reference oci:PATH:TAG."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    descs, ids = [], []
    for i, plain in enumerate(layers):
        kind = how[i] if isinstance(how, (list, tuple)) else how
        blob, media_type = compress(plain, kind)
        descs.append({"mediaType": media_type, "digest": put(blob), "size": len(blob)})
        ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    config = json.dumps({"architecture": ARCH, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids or ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": descs}).encode()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
                            "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return f"oci:{path}:{tag}"


# ---------------------------------------------------------------------------------------------
# The world around the target directory, watched for changes


def snapshot(top: Path, skip):
    """Everything under `top` except the paths in `skip`: type, mode, owner, size, links, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for n in dirnames + filenames:
            p = d / n
            if p in skip:
                continue
            st = os.lstat(p)
            item = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                    st.st_nlink, st.st_mtime_ns)
            if stat.S_ISREG(st.st_mode):
                item += (hashlib.sha256(p.read_bytes()).hexdigest(),)
            elif stat.S_ISLNK(st.st_mode):
                item += (os.readlink(p),)
            out[str(p.relative_to(top))] = item
    return out


class World:
    """tmp_path/a/b/root is the target. Around it: an `outside` folder with a secret, watched."""

    def __init__(self, tmp_path: Path, ocibuild):
        self.top = tmp_path
        self.ocibuild = ocibuild
        self.root = tmp_path / "a" / "b" / "root"
        self.root.mkdir(parents=True)  # made here, so that making it changes nothing watched
        self.layout = tmp_path / "layout"
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(OUTSIDE_SECRET)
        (self.outside / "sub").mkdir()
        (self.outside / "sub" / "f").write_text("f\n")
        self.u = uuid.uuid4().hex[:12]
        self.passwd_links = os.stat("/etc/passwd").st_nlink
        self.skip = {self.root, self.layout, tmp_path / "store"}
        self.before = None

    def unpack(self, layers, resolver="openat2", how="gzip", check=False, extra=(), **kw):
        ref = write_layout(self.layout, layers, how=how, **kw)
        self.before = snapshot(self.top, self.skip)
        args = ["unpack", ref, str(self.root), *extra]
        if resolver == "walk":
            args.append("--no-openat2")
        return self.ocibuild(*args, check=check)

    def assert_untouched(self):
        after = snapshot(self.top, self.skip)
        assert after == self.before, f"changed outside the target: {set(after.items()) ^ set(self.before.items())}"
        assert os.stat("/etc/passwd").st_nlink == self.passwd_links
        for p in [f"/etc/ocibuild-evil-{self.u}", f"/ocibuild-abs-{self.u}", f"/x-{self.u}", f"/tmp/x-{self.u}"]:
            assert not os.path.lexists(p), p
        # Nothing inside the root is the outside secret (no hard link to it, no copy of it).
        secret = os.stat(self.outside / "secret")
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in filenames:
                st = os.lstat(os.path.join(dirpath, n))
                assert (st.st_dev, st.st_ino) != (secret.st_dev, secret.st_ino)
                if stat.S_ISREG(st.st_mode) and st.st_size == len(OUTSIDE_SECRET):
                    assert Path(dirpath, n).read_bytes() != OUTSIDE_SECRET


@pytest.fixture
def world(tmp_path, ocibuild):
    return World(tmp_path, ocibuild)


def inside(root: Path, path) -> Path:
    """`path` (absolute or relative) as it lands inside `root`."""
    return root / str(path).lstrip("/")


def partial_files(root: Path):
    """Regular files whose name says they must never exist (the failing entries' files)."""
    return [p for p in root.rglob("*") if "must-not-exist" in p.name]


# ---------------------------------------------------------------------------------------------
# Hostile layers


def refused(entry, reason):
    def check(world, proc):
        assert proc.returncode == 1, proc.stderr
        assert f'entry "{entry.format(u=world.u)}"' in proc.stderr, proc.stderr
        assert reason in proc.stderr, proc.stderr
        assert not partial_files(world.root)
    return check


def lands(*paths, content=None):
    def check(world, proc):
        assert proc.returncode == 0, proc.stderr
        for p in paths:
            p = p.format(u=world.u, outside=world.outside)
            target = inside(world.root, p)
            assert os.path.lexists(target), f"{p} not found inside the root"
            if content is not None:
                assert target.read_bytes() == content
    return check


HOSTILE = {
    "dotdot": (lambda w: [reg(f"../escape-{w.u}", b"x")], refused("../escape-{u}", "path escapes the root")),
    "dotdot-nested": (lambda w: [reg(f"a/../../x-{w.u}", b"x")], refused("a/../../x-{u}", "path escapes the root")),
    "dotdot-deep": (lambda w: [reg("a/b/../../../../../../x-must-not-exist", b"x")],
                    refused("a/b/../../../../../../x-must-not-exist", "path escapes the root")),
    "absolute": (lambda w: [reg(f"/ocibuild-abs-{w.u}/path", b"abs")], lands("ocibuild-abs-{u}/path", content=b"abs")),
    "symlink-to-root-then-file": (lambda w: [sym("link", "/"), reg(f"link/etc/ocibuild-evil-{w.u}", b"evil")],
                                  lands("etc/ocibuild-evil-{u}", content=b"evil")),
    "symlink-up-then-file": (lambda w: [sym("link", "../../.."), reg(f"link/x-{w.u}", b"up")],
                             lands("x-{u}", content=b"up")),
    "symlink-to-outside-then-file": (lambda w: [sym("out", str(w.outside)), reg("out/planted", b"p")],
                                     lands("{outside}/planted", content=b"p")),
    "symlink-relative-outside-then-file": (lambda w: [sym("out", "../../../outside"), reg("out/sub/f", b"mine")],
                                           lands("outside/sub/f", content=b"mine")),
    "hardlink-absolute": (lambda w: [link("pw", "/etc/passwd")],
                          refused("pw", 'hard link target "etc/passwd" does not exist')),
    "hardlink-dotdot": (lambda w: [link("x", "../../../outside/secret")],
                        refused("x", "hard link target escapes the root")),
    "hardlink-through-symlink": (lambda w: [sym("o", str(w.outside)), link("x", "o/secret")],
                                 refused("x", "does not exist")),
    "hardlink-to-directory": (lambda w: [dir_("d"), link("x", "d")], refused("x", "is a directory")),
    "whiteout-dotdot": (lambda w: [dir_("a"), reg("a/.wh...")], refused("a/.wh...", 'whiteout names ".."')),
    "whiteout-dot": (lambda w: [dir_("a"), reg("a/.wh..")], refused("a/.wh..", 'whiteout names "."')),
    "whiteout-bare": (lambda w: [reg(".wh.")], refused(".wh.", "bare whiteout")),
    "whiteout-in-symlink-to-outside": (lambda w: [sym("d", str(w.outside)), reg("d/.wh.secret"), reg("d/.wh.sub")],
                                       lands("d")),
    "whiteout-in-relative-symlink": (lambda w: [sym("d", "../../../outside"), reg("d/.wh.secret")], lands("d")),
    "opaque-in-symlink-to-outside": (lambda w: [sym("d", str(w.outside)), reg("d/.wh..wh..opq")], lands("d")),
    "symlink-swapped-in": (lambda w: [dir_("d"), reg("d/first", b"1"), sym("d", str(w.outside)), reg("d/f", b"2")],
                           lands("{outside}/f", content=b"2")),
    "symlink-swapped-in-relative": (lambda w: [dir_("d"), sym("d", "../../../outside"), reg("d/secret", b"mine")],
                                    lands("outside/secret", content=b"mine")),
    "symlink-loop": (lambda w: [sym("a", "b"), sym("b", "a"), reg("a/x-must-not-exist")],
                     refused("a/x-must-not-exist", "too many levels of symbolic links")),
    "file-as-parent": (lambda w: [reg("f", b"f"), reg("f/x-must-not-exist")],
                       refused("f/x-must-not-exist", "is not a directory")),
    "root-replaced-by-symlink": (lambda w: [sym(".", "/")], refused(".", "cannot replace the root")),
    "long-component": (lambda w: [reg("a" * 300 + "-must-not-exist", b"x")],
                       refused("a" * 300 + "-must-not-exist", "File name too long")),
    "duplicates": (lambda w: [reg("x", b"first"), reg("x", b"second"), dir_("d"), reg("d/f"), reg("d", b"file now"),
                              dir_("e"), dir_("e", mode=0o700), sym("s", "x"), reg("s", b"plain")],
                   lands("x", "d", "e", "s")),
}


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_layer(world, case, resolver):
    make, check = HOSTILE[case]
    proc = world.unpack([tar_of(make(world))], resolver=resolver)
    if proc.returncode == 1:
        assert "error: layer 1/1" in proc.stderr
    check(world, proc)
    world.assert_untouched()


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_duplicates_last_wins(world, resolver):
    make, _ = HOSTILE["duplicates"]
    world.unpack([tar_of(make(world))], resolver=resolver, check=True)
    r = world.root
    assert (r / "x").read_bytes() == b"second"
    assert (r / "d").read_bytes() == b"file now"
    assert stat.S_IMODE(os.stat(r / "e").st_mode) == 0o700
    assert not (r / "s").is_symlink() and (r / "s").read_bytes() == b"plain"


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_whiteout_through_symlink_keeps_outside(world, resolver):
    # Two layers: the first plants the symlink, the second whites out "through" it.
    layers = [tar_of([sym("d", str(world.outside)), sym("r", "../../../outside")]),
              tar_of([reg("d/.wh.secret"), reg("r/.wh.secret"), reg("r/sub/.wh..wh..opq"), reg("d/.wh..wh..opq")])]
    world.unpack(layers, resolver=resolver, check=True)
    world.assert_untouched()
    assert (world.outside / "secret").read_bytes() == OUTSIDE_SECRET


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_truncated_layer_leaves_no_partial_file(world, resolver):
    plain = tar_of([reg("ok", b"fine"), reg("big-must-not-exist", os.urandom(200_000))])
    cut = plain[: 512 * 3 + 100_000]  # header of "ok", its data, the big header, half its data
    proc = world.unpack([cut], resolver=resolver, how="none", diff_ids=["sha256:" + "0" * 64])
    assert proc.returncode == 1, proc.stderr
    assert "big-must-not-exist" in proc.stderr
    assert not partial_files(world.root)
    world.assert_untouched()


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_long_path_beyond_path_max(world, resolver):
    comps = ["c" * 100] * 50  # 5050 bytes: more than PATH_MAX, each component fine
    world.unpack([tar_of([reg("/".join(comps) + "/deep", b"deep")])], resolver=resolver, check=True)
    fd = os.open(world.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for c in comps:
            nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        g = os.open("deep", os.O_RDONLY, dir_fd=fd)
        assert os.read(g, 10) == b"deep"
        os.close(g)
    finally:
        os.close(fd)
    shutil.rmtree(world.root / comps[0])  # pytest's cleanup would hit PATH_MAX
    world.assert_untouched()


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
def test_devices_as_root(world):
    world.unpack([tar_of([dir_("dev"), chardev("dev/null", 1, 3), fifo("dev/fifo", mode=0o600)])], check=True)
    st = os.lstat(world.root / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(world.root / "dev" / "fifo").st_mode)


# ---------------------------------------------------------------------------------------------
# OCI merge rules and entry kinds


def listing(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_whiteouts_and_opaque_dirs_across_layers(world, resolver):
    lower = tar_of([dir_("a"), reg("a/keep", b"k"), reg("a/gone", b"g"), dir_("a/gonedir"), reg("a/gonedir/x"),
                    dir_("a/sub"), reg("a/sub/x"), dir_("a/sub/deeper"), reg("a/sub/deeper/y"),
                    dir_("o"), reg("o/lower1"), dir_("o/sub"), reg("o/sub/lower2"), reg("o/sub/lower3")])
    upper = tar_of([dir_("a"), reg("a/.wh.gone"), reg("a/.wh.gonedir"), dir_("a/sub"), reg("a/sub/.wh..wh..opq"),
                    reg("a/sub/new", b"n"),
                    # The opaque marker comes after entries of the same layer, which it must keep.
                    dir_("o"), reg("o/new"), dir_("o/sub"), reg("o/sub/mine"), reg("o/.wh..wh..opq"),
                    reg(".wh.not-there")])
    world.unpack([lower, upper], resolver=resolver, check=True)
    assert listing(world.root) == ["a", "a/keep", "a/sub", "a/sub/new", "o", "o/new", "o/sub", "o/sub/mine"]
    assert not [p for p in world.root.rglob(".wh.*")]


def test_whiteout_of_a_path_written_by_the_same_layer_keeps_it(world):
    layers = [tar_of([dir_("d"), reg("d/lower")]), tar_of([dir_("d"), reg("d/upper"), reg(".wh.d")])]
    world.unpack(layers, check=True)
    assert listing(world.root) == ["d", "d/upper"]


def test_hard_link_to_a_lower_layer_file(world):
    layers = [tar_of([dir_("bin"), reg("bin/tool", b"tool", mode=0o755)]),
              tar_of([dir_("usr"), link("usr/tool", "bin/tool"), link("usr/tool2", "/bin/tool")])]
    world.unpack(layers, check=True)
    a, b, c = (os.stat(world.root / p) for p in ["bin/tool", "usr/tool", "usr/tool2"])
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) == (c.st_ino, c.st_dev)
    assert a.st_nlink == 3


def test_hard_link_within_layer_and_to_a_symlink(world):
    world.unpack([tar_of([reg("f", b"data"), link("g", "f"), sym("s", "f"), link("t", "s")])], check=True)
    assert os.stat(world.root / "f").st_ino == os.stat(world.root / "g").st_ino
    assert os.lstat(world.root / "t").st_ino == os.lstat(world.root / "s").st_ino
    assert os.readlink(world.root / "t") == "f"


@pytest.mark.skipif(not IS_ROOT, reason="owners other than ours need root")
def test_modes_owners_and_times(world):
    layers = [tar_of([dir_("ro", mode=0o555), reg("ro/in-same-layer", b"1"),
                      reg("suid", b"s", mode=0o4755, uid=1000, gid=1000),
                      reg("sgid", b"g", mode=0o2711, uid=0, gid=50),
                      dir_("sticky", mode=0o1777), dir_("sgid-dir", mode=0o2775, gid=50),
                      reg("nomode", b"n", mode=0o000, uid=123, gid=456),
                      sym("link", "suid", uid=7, gid=8, mtime=EPOCH - 5),
                      dir_("timed", mtime=EPOCH - 100), reg("timed/f", mtime=EPOCH - 50)]),
              tar_of([reg("ro/from-upper", b"2")])]
    world.unpack(layers, check=True)
    r = world.root

    def mode(p):
        return stat.S_IMODE(os.lstat(r / p).st_mode)

    assert mode("ro") == 0o555 and (r / "ro" / "from-upper").read_bytes() == b"2"
    assert mode("suid") == 0o4755 and os.stat(r / "suid").st_uid == 1000
    assert mode("sgid") == 0o2711 and os.stat(r / "sgid").st_gid == 50
    assert mode("sticky") == 0o1777 and mode("sgid-dir") == 0o2775
    assert mode("nomode") == 0 and (os.stat(r / "nomode").st_uid, os.stat(r / "nomode").st_gid) == (123, 456)
    st = os.lstat(r / "link")
    assert (st.st_uid, st.st_gid) == (7, 8) and st.st_mtime == EPOCH - 5
    assert os.stat(r / "timed").st_mtime == EPOCH - 100  # set after its content was written
    assert os.stat(r / "timed" / "f").st_mtime == EPOCH - 50


# A vfs_cap_data v2: cap_net_bind_service (bit 10) permitted+effective.
CAPABILITY = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")


def test_xattrs(world):
    entries = [reg("user-attr", b"u", xattrs={"user.ocibuild.test": "value", "user.bin": b"\x00\xff\x01"}),
               dir_("dir-attr", xattrs={"user.dir": "d"}),
               reg("overlay-injection", b"o", xattrs={"trusted.overlay.opaque": "y", "user.overlay.redirect": "/x"})]
    if IS_ROOT:
        entries.append(reg("cap", b"#!/bin/sh\n", mode=0o755, xattrs={"security.capability": CAPABILITY}))
    proc = world.unpack([tar_of(entries)], check=True)
    r = world.root
    assert os.getxattr(r / "user-attr", "user.ocibuild.test") == b"value"
    assert os.getxattr(r / "user-attr", "user.bin") == b"\x00\xff\x01"
    assert os.getxattr(r / "dir-attr", "user.dir") == b"d"
    assert "user.overlay.redirect" not in os.listxattr(r / "overlay-injection")
    assert "trusted.overlay.opaque" not in os.listxattr(r / "overlay-injection")
    assert "not applied from layers" in proc.stderr
    if IS_ROOT:
        assert os.getxattr(r / "cap", "security.capability") == CAPABILITY
        if shutil.which("getcap"):
            assert "cap_net_bind_service" in run(["getcap", r / "cap"]).stdout


def test_sparse_file(world, tmp_path):
    src = tmp_path / "sparse-src"
    src.mkdir()
    size = 64 << 20
    with open(src / "holes", "wb") as f:
        f.write(b"begin")
        f.seek(size // 2)
        f.write(b"middle")
        f.truncate(size)  # ends in a hole
    tar_path = tmp_path / "sparse.tar"
    run(["tar", "--sparse", "--format=posix", "-C", src, "-cf", tar_path, "holes"])
    world.skip.add(src)
    world.skip.add(tar_path)
    world.unpack([tar_path.read_bytes()], check=True)
    out = world.root / "holes"
    assert os.stat(out).st_size == size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256((src / "holes").read_bytes()).digest()
    assert os.stat(out).st_blocks * 512 < (1 << 20), "holes were written as zeros"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_non_utf8_and_long_names(world, fmt):
    long_dir = "d" * 120
    long_name = f"{long_dir}/" + "n" * 200
    bad = b"bad\xff\xfe-name".decode("utf-8", "surrogateescape")
    entries = [reg("caf\u00e9", b"utf8"), reg(bad, b"latin1"), dir_(long_dir), reg(long_name, b"long"),
               sym("longlink", "t" * 300), link("hardlong", long_name)]
    world.unpack([tar_of(entries, fmt=fmt)], check=True)
    names = os.listdir(bytes(world.root))
    assert "caf\u00e9".encode() in names
    assert b"bad\xff\xfe-name" in names
    assert (world.root / long_name).read_bytes() == b"long"
    assert os.readlink(world.root / "longlink") == "t" * 300
    assert os.stat(world.root / "hardlong").st_ino == os.stat(world.root / long_name).st_ino


def test_compressions_and_trailing_data(world):
    l1 = tar_of([reg("from-zstd", b"z")])
    l2 = tar_of([reg("from-plain", b"p")]) + b"\0" * 10240  # zero blocks after the end: hashed too
    l3 = tar_of([reg("from-gzip", b"g")])
    world.unpack([l1, l2, l3], how=["zstd", "none", "gzip"], check=True)
    assert listing(world.root) == ["from-gzip", "from-plain", "from-zstd"]


def replace_layer_blob(layout: Path, blob: bytes, index=0):
    """Points layer `index` of the layout's only image at `blob` (diff_ids unchanged)."""
    blobs = layout / "blobs" / "sha256"

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest, len(data)

    idx = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / idx["manifests"][0]["digest"][7:]).read_bytes())
    digest, size = put(blob)
    manifest["layers"][index].update(digest=digest, size=size)
    digest, size = put(json.dumps(manifest).encode())
    idx["manifests"][0].update(digest=digest, size=size)
    (layout / "index.json").write_text(json.dumps(idx))


def test_concatenated_gzip_members(world):
    plain = tar_of([reg("a", b"a" * 5000), reg("b", b"b")])
    ref = write_layout(world.layout, [plain])
    # Two gzip members (as pigz or `cat a.gz b.gz` make): the same uncompressed bytes and diff_id.
    replace_layer_blob(world.layout, gzip.compress(plain[:3000], mtime=0) + gzip.compress(plain[3000:], mtime=0))
    world.ocibuild("unpack", ref, world.root)
    assert (world.root / "a").read_bytes() == b"a" * 5000


@pytest.mark.parametrize("how", ["gzip", "zstd", "none"])
def test_large_layer_and_corruption(world, how):
    """Blobs over 4 MiB are decompressed on a second thread: content, hashing and errors must be
    the same as on the direct path."""
    big = os.urandom(12 << 20)
    small = [reg(f"many/f{i:04}", str(i).encode()) for i in range(2000)]
    plain = tar_of([reg("big", big), dir_("many"), *small, reg("last", b"end")])
    world.unpack([plain], how=how, check=True)
    assert hashlib.sha256((world.root / "big").read_bytes()).digest() == hashlib.sha256(big).digest()
    assert len(os.listdir(world.root / "many")) == 2000 and (world.root / "last").read_bytes() == b"end"
    if how == "none":
        return
    # Cut in the middle of "big" (the manifest names the cut blob, so only the decompressor can
    # notice): refused while "big" is being written, and no partial "big" is left.
    blob = compress(plain, how)[0]
    replace_layer_blob(world.layout, blob[: len(blob) // 3])
    shutil.rmtree(world.root)
    world.root.mkdir()
    proc = world.ocibuild("unpack", f"oci:{world.layout}:1", world.root, check=False)
    assert proc.returncode == 1 and f"truncated {how} stream" in proc.stderr, proc.stderr
    assert os.listdir(world.root) == []
    # Bytes flipped inside stored blocks decode "fine" until the stream's own checksum (or the
    # diff_id) at its end: the unpack fails there.
    data = bytearray(blob)
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    replace_layer_blob(world.layout, bytes(data))
    shutil.rmtree(world.root)
    world.root.mkdir()
    proc = world.ocibuild("unpack", f"oci:{world.layout}:1", world.root, check=False)
    assert proc.returncode == 1 and f"corrupt {how} stream" in proc.stderr, proc.stderr


def test_diff_id_mismatch_is_an_integrity_error(world):
    proc = world.unpack([tar_of([reg("f")])], diff_ids=["sha256:" + "1" * 64])
    assert proc.returncode == 1
    assert "layer 1/1" in proc.stderr and "diff_id" in proc.stderr and "sha256:" + "1" * 64 in proc.stderr


def test_checked_diff_id_is_not_taken_for_another(world, tmp_path):
    # An archive is imported into the store; the first unpack checks the layer against its
    # diff_id and records that on the stored blob, so later unpacks skip hashing the tar. A config
    # that names another diff_id for the same blob must still fail.
    layer = tar_of([reg("f", b"checked")])
    good = archive_of(world.layout, tmp_path / "good.tar", [layer])
    bad = archive_of(tmp_path / "bad-layout", tmp_path / "bad.tar", [layer], diff_ids=["sha256:" + "2" * 64])
    for _ in range(2):
        shutil.rmtree(world.root)
        world.root.mkdir()
        world.ocibuild("unpack", f"oci-archive:{good}:1", world.root)
        assert (world.root / "f").read_bytes() == b"checked"
    shutil.rmtree(world.root)
    world.root.mkdir()
    proc = world.ocibuild("unpack", f"oci-archive:{bad}:1", world.root, check=False)
    assert proc.returncode == 1
    assert "uncompressed content has digest" in proc.stderr and "sha256:" + "2" * 64 in proc.stderr


def layer_blob(layout: Path, index: int) -> Path:
    idx = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]).read_bytes())
    return layout / "blobs" / "sha256" / manifest["layers"][index]["digest"][7:]


@pytest.mark.parametrize("damaged", [0, 1, 2])
def test_layout_blobs_are_checked_and_a_failed_unpack_leaves_nothing(world, damaged):
    # An oci: layout is read where it is (nothing copied into the store); each layer blob is
    # checked against its digest, before its turn or while it is applied. A damaged one fails the
    # unpack naming the blob, and the tree made so far is removed: part of an image must not pass
    # for the image.
    big = [reg(f"dir{i}/file{j}", os.urandom(3000)) for i in range(40) for j in range(60)]  # ~7 MB: read ahead
    layers = [tar_of([reg("first", b"1")]), tar_of(big), tar_of([reg("last", b"3")])]
    world.unpack(layers, check=True)
    assert [p for p in (world.top / "store").rglob("*") if p.is_file() and "blobs" in p.parts] == []
    assert (world.root / "dir39" / "file59").stat().st_size == 3000
    blob = layer_blob(world.layout, damaged)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    for dest in [world.root, world.top / "new-dest"]:
        if dest == world.root:
            shutil.rmtree(dest)
            dest.mkdir()
        proc = world.ocibuild("unpack", f"oci:{world.layout}:1", dest, check=False)
        assert proc.returncode == 1, proc.stderr
        assert f"blob sha256:{blob.name} in {world.layout} has digest" in proc.stderr, proc.stderr
        if dest == world.root:
            assert os.listdir(dest) == []  # it was empty: kept, and empty again
        else:
            assert not dest.exists()  # made by the unpack: gone


def test_failed_unpack_onto_a_tree_keeps_it(world):
    # With --force onto a tree that was not empty, nothing can tell ours from the user's files:
    # the tree stays, with no partial file.
    (world.root / "mine").write_text("keep")
    plain = tar_of([reg("ok", b"fine"), reg("big-must-not-exist", os.urandom(200_000))])
    proc = world.unpack([plain[: 512 * 3 + 100_000]], how="none", diff_ids=["sha256:" + "0" * 64], extra=["--force"])
    assert proc.returncode == 1 and "big-must-not-exist" in proc.stderr, proc.stderr
    assert (world.root / "mine").read_text() == "keep" and (world.root / "ok").read_bytes() == b"fine"
    assert not partial_files(world.root)


T1, T2 = 1_600_000_000, 1_650_000_000


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_directories_finish_once_after_the_last_layer(world, resolver):
    # Modes and times of directories are set after the last layer: a file a later layer adds does
    # not leave its directory with the unpack's own time, a 0555 directory does not stop a later
    # layer, and a directory removed by a whiteout and made again later (implicitly, as a parent)
    # does not get the removed one's attributes.
    layers = [
        tar_of([dir_("ro", mode=0o555, mtime=T1), dir_("gone", mode=0o700, mtime=T1), dir_("gone/sub", mtime=T1)]),
        tar_of([reg("ro/added", b"x", mtime=T2), reg(".wh.gone")]),
        tar_of([reg("gone/sub/again", b"y", mtime=T2)]),
    ]
    world.unpack(layers, resolver=resolver, check=True)
    ro = os.stat(world.root / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and ro.st_mtime == T1
    assert (world.root / "ro" / "added").read_bytes() == b"x"
    for d in ["gone", "gone/sub"]:
        st = os.stat(world.root / d)
        assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_mtime != T1, d


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_a_later_directory_entry_replaces_the_attributes(world, resolver):
    # Upper layers repeat the directories above their files. The last entry for a directory
    # decides its mode, owner, times and xattrs, whether or not it changes anything; one that
    # changes nothing but its time must still leave that time.
    owner = 1000 if IS_ROOT else 0
    layers = [
        tar_of([dir_("same", mtime=T1), reg("same/f", b"1", mtime=T1),
                dir_("attr", mtime=T1, xattrs={"user.k": "v"}),
                dir_("owned", mtime=T1), dir_("moded", mode=0o700, mtime=T1),
                dir_("replaced", mtime=T1), dir_("again", mtime=T1)]),
        tar_of([dir_("same", mtime=T2), reg("same/g", b"2", mtime=T1),
                dir_("attr", mtime=T2), dir_("owned", uid=owner, gid=owner, mtime=T2),
                dir_("moded", mode=0o750, mtime=T2), reg("replaced", b"file", mtime=T2),
                dir_("again", mtime=T2)]),
        tar_of([dir_("again", mtime=T1 + 7), reg(".wh.replaced")]),
        tar_of([dir_("replaced", mode=0o711, mtime=T2), dir_("same", mtime=T2)]),
    ]
    world.unpack(layers, resolver=resolver, check=True)
    r = world.root
    for d in ["same", "attr", "owned", "moded"]:
        assert os.stat(r / d).st_mtime == T2, d
    assert sorted(os.listdir(r / "same")) == ["f", "g"]
    assert "user.k" not in os.listxattr(r / "attr")
    if IS_ROOT:
        assert (os.stat(r / "owned").st_uid, os.stat(r / "owned").st_gid) == (owner, owner)
    assert stat.S_IMODE(os.stat(r / "moded").st_mode) == 0o750
    st = os.stat(r / "replaced")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime == T2
    assert os.stat(r / "again").st_mtime == T1 + 7


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_files_written_on_the_writer_thread_keep_the_entry_order(world, resolver):
    # Small files are written on a thread of their own while later entries are applied. Whatever
    # a later entry does to the same name (replace it, make it a directory, link to it, remove
    # the directory above it), also through a symlink to its directory, the tree must be what
    # applying the entries one by one gives.
    many = [reg(f"many/f{i:03}", b"content %d" % i, mtime=T1) for i in range(300)]
    layers = [
        tar_of([dir_("usr"), dir_("usr/lib"), sym("lib", "usr/lib"), reg("old-file", b"old"),
                dir_("old-dir"), reg("old-dir/inner", b"i"), sym("old-link", "usr"),
                dir_("lowdir"), reg("lowdir/f", b"lower")]),
        tar_of([dir_("many")] + many + [
            reg("lib/z1", b"1"), reg("usr/lib/z2", b"2"),          # both paths to usr/lib cached
            reg("lib/a", b"file first"), dir_("usr/lib/a"), reg("usr/lib/a/inside", b"in"),
            reg("lib/b", b"first"), reg("usr/lib/b", b"second"),
            reg("old-file", b"new", mode=0o600), reg("old-dir", b"was a dir"), reg("old-link", b"was a link"),
            reg("x", b"x"), dir_("x"), reg("x/y", b"y"),
            dir_("d"), reg("d/f", b"f"), reg("d", b"d is a file now"),
            dir_("e"), reg("e/f", b"f"), sym("e", "usr"),
            reg("h", b"linked"), link("h2", "h"),
            reg("big", b"B" * (3 << 20)), reg("lowdir/f", b"upper", mtime=T2),
        ])]
    world.unpack(layers, resolver=resolver, check=True)
    r = world.root
    for i in range(300):
        f = r / "many" / f"f{i:03}"
        assert f.read_bytes() == b"content %d" % i and os.stat(f).st_mtime == T1
    assert (r / "lib").is_symlink()
    assert (r / "usr/lib/a").is_dir() and (r / "usr/lib/a/inside").read_bytes() == b"in"
    assert (r / "usr/lib/b").read_bytes() == b"second"
    assert (r / "old-file").read_bytes() == b"new" and stat.S_IMODE(os.stat(r / "old-file").st_mode) == 0o600
    assert (r / "old-dir").read_bytes() == b"was a dir"
    assert not (r / "old-link").is_symlink() and (r / "old-link").read_bytes() == b"was a link"
    assert (r / "x").is_dir() and (r / "x/y").read_bytes() == b"y"
    assert (r / "d").read_bytes() == b"d is a file now"
    assert (r / "e").is_symlink() and os.readlink(r / "e") == "usr"
    assert os.stat(r / "h").st_ino == os.stat(r / "h2").st_ino and (r / "h2").read_bytes() == b"linked"
    assert (r / "big").stat().st_size == 3 << 20
    assert (r / "lowdir/f").read_bytes() == b"upper" and os.stat(r / "lowdir/f").st_mtime == T2
    assert not partial_files(r)


def test_target_must_be_empty_unless_forced(world):
    (world.root / "existing").write_text("x")
    proc = world.unpack([tar_of([reg("f", b"1")])])
    assert proc.returncode == 1 and "not empty" in proc.stderr
    proc = world.unpack([tar_of([reg("f", b"1")])], extra=["--force"], check=True)
    assert listing(world.root) == ["existing", "f"]
    assert proc.stdout == "" and "unpacked" in proc.stderr


def archive_of(layout: Path, archive: Path, layers, **kw) -> Path:
    """An oci-archive at `archive` of the layout write_layout makes of `layers` at `layout`."""
    write_layout(layout, layers, **kw)
    with tarfile.open(archive, "w") as t:
        for p in sorted(layout.rglob("*")):
            t.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return archive


def json_or_none(path: Path):
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        return None


def test_unpack_from_oci_archive(world, tmp_path):
    archive = archive_of(world.layout, tmp_path / "image.tar", [tar_of([reg("hello", b"from an archive")])], tag="v1")
    world.ocibuild("unpack", f"oci-archive:{archive}:v1", world.root)
    assert (world.root / "hello").read_bytes() == b"from an archive"


# ---------------------------------------------------------------------------------------------
# Oracles: an image built by buildah, unpacked by ocibuild, umoci and oci-image-tool


def tree(root: Path):
    """Path → (type, mode, uid, gid, content digest | link target | rdev), plus hard-link groups."""
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
            entries[rel] = (kind, mode, st.st_uid, st.st_gid, extra)
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return entries, groups


@pytest.fixture(scope="module")
def buildah_image(tmp_path_factory, busybox_layout):
    """Two layers on busybox made by buildah: deletes (whiteouts), an emptied and refilled dir
    (opaque marker or whiteouts), hard links (also to a lower layer's file), setuid, sticky,
    owners, symlinks."""
    if not IS_ROOT:
        pytest.skip("buildah with the vfs driver and chroot isolation runs as root here")
    need("buildah")
    work = tmp_path_factory.mktemp("buildah")
    b = ["buildah", "--root", work / "c-root", "--runroot", work / "c-runroot", "--storage-driver", "vfs"]
    bb = "/bin/busybox"
    step1 = " && ".join([
        f"{bb} rm /etc/base-release",
        f"{bb} rm -rf /var/log", f"{bb} mkdir -p /var/log", f"{bb} echo new > /var/log/new",
        f"{bb} mkdir -p /data /usr/bin /home/u", f"{bb} echo hello > /data/a", f"{bb} ln /data/a /data/b",
        f"{bb} echo s > /usr/bin/suid", f"{bb} chmod 4755 /usr/bin/suid",
        f"{bb} echo g > /usr/bin/sgid", f"{bb} chmod 2711 /usr/bin/sgid",
        f"{bb} mkdir /sticky", f"{bb} chmod 1777 /sticky",
        f"{bb} ln -s ../data/a /usr/bin/link-a", f"{bb} ln -s /nonexistent /dangling",
        f"{bb} chown 1000:1000 /data/a", f"{bb} chown 123:456 /home/u", f"{bb} chmod 0750 /home/u",
        f"{bb} mkdir /ro", f"{bb} echo r > /ro/f", f"{bb} chmod 0555 /ro",
    ])
    step2 = " && ".join([
        f"{bb} ln /bin/busybox /usr/bin/bb-hardlink",  # a hard link to a lower layer's file
        f"{bb} rm /data/b", f"{bb} rm -rf /sticky", f"{bb} mkdir /sticky", f"{bb} touch /sticky/again",
        f"{bb} chmod 1777 /sticky", f"{bb} rm /bin/ls",
    ])
    run([*b, "from", "--name", "w1", f"oci:{busybox_layout}:1"])
    run([*b, "run", "--isolation", "chroot", "w1", "--", bb, "sh", "-c", step1])
    run([*b, "commit", "--timestamp", "0", "w1", "ocibuild-test-img1"])
    run([*b, "from", "--name", "w2", "ocibuild-test-img1"])
    run([*b, "run", "--isolation", "chroot", "w2", "--", bb, "sh", "-c", step2])
    run([*b, "commit", "--timestamp", "0", "w2", "ocibuild-test-img2"])
    layout = work / "oci"
    run([*b, "push", "ocibuild-test-img2", f"oci:{layout}:img"])
    yield layout
    run([*b, "rm", "--all"], check=False)
    run([*b, "rmi", "--all", "--force"], check=False)


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_matches_umoci_and_oci_image_tool(buildah_image, tmp_path, ocibuild, resolver):
    need("umoci")
    need("oci-image-tool")
    ours = tmp_path / "ours"
    extra = ["--no-openat2"] if resolver == "walk" else []
    ocibuild("unpack", f"oci:{buildah_image}:img", ours, *extra)
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{buildah_image}:img", bundle])
    theirs = tmp_path / "oit"
    run(["oci-image-tool", "unpack", "--ref", "name=img", buildah_image, theirs])

    mine, my_groups = tree(ours)
    umoci, umoci_groups = tree(bundle / "rootfs")
    oit, oit_groups = tree(theirs)
    # The image really exercises the rules.
    assert "etc/base-release" not in mine and "bin/ls" not in mine and "data/b" not in mine
    assert mine["var/log/new"][0] == stat.S_IFREG and "var/log/old.log" not in mine
    assert mine["usr/bin/suid"][1] == 0o4755 and mine["sticky"][1] == 0o1777 and mine["ro"][1] == 0o555
    assert mine["data/a"][2:4] == (1000, 1000) and mine["home/u"][2:4] == (123, 456)
    assert not [p for p in mine if ".wh." in p]
    assert mine == umoci, diff_trees(mine, umoci)
    assert my_groups == umoci_groups
    assert_like_oci_image_tool(mine, my_groups, oit, oit_groups)


def assert_like_oci_image_tool(mine, my_groups, oit, oit_groups):
    # oci-image-tool does not restore owners and its modes go through the umask (it extracts like
    # an unprivileged tar): compare what it does keep.
    umask = os.umask(0)
    os.umask(umask)

    def kept(t):
        return {p: (v[0], None if v[1] is None else v[1] & ~umask, v[4]) for p, v in t.items()}

    assert kept(mine) == kept(oit), diff_trees(kept(mine), kept(oit))
    assert my_groups == oit_groups


@pytest.mark.skipif(not IS_ROOT, reason="umoci keeps owners only as root")
@pytest.mark.parametrize("resolver", RESOLVERS)
def test_handmade_layers_match_umoci_and_oci_image_tool(tmp_path, ocibuild, resolver):
    """Opaque markers (before and after the layer's own entries), whiteouts of files and trees, hard
    links within a layer and to a lower layer's file, owners, special modes."""
    need("umoci")
    need("oci-image-tool")
    layers = [
        tar_of([dir_("a"), reg("a/keep", b"k"), reg("a/gone", b"g"), dir_("a/tree"), reg("a/tree/x"),
                dir_("o"), reg("o/lower"), dir_("o/sub"), reg("o/sub/lower"), dir_("p"), reg("p/lower"),
                dir_("bin"), reg("bin/tool", b"tool", mode=0o755), reg("data", b"d", uid=1000, gid=100),
                dir_("ro", mode=0o555), reg("ro/f", b"r", mode=0o444)]),
        tar_of([dir_("a"), reg("a/.wh.gone"), reg("a/.wh.tree"),
                dir_("o"), reg("o/.wh..wh..opq"), reg("o/new", b"n"),
                dir_("p"), reg("p/mine", b"m"), reg("p/.wh..wh..opq"),
                dir_("usr"), link("usr/tool", "bin/tool"), reg("usr/suid", b"s", mode=0o4755, uid=0, gid=0),
                reg("usr/sgid", b"g", mode=0o2755, gid=50), dir_("sticky", mode=0o1777),
                reg("usr/own", b"o", uid=123, gid=456, mode=0o640), link("usr/own2", "usr/own"),
                sym("usr/rel", "../bin/tool"), sym("usr/abs", "/bin/tool", uid=5, gid=6),
                dir_("ro", mode=0o555), reg("ro/g", b"more", mode=0o444)]),
    ]
    layout = tmp_path / "layout"
    write_layout(layout, layers, tag="t")
    ours = tmp_path / "ours"
    ocibuild("unpack", f"oci:{layout}:t", ours, *(["--no-openat2"] if resolver == "walk" else []))
    run(["umoci", "unpack", "--image", f"{layout}:t", tmp_path / "bundle"])
    run(["oci-image-tool", "unpack", "--ref", "name=t", layout, tmp_path / "oit"])
    mine, my_groups = tree(ours)
    umoci, umoci_groups = tree(tmp_path / "bundle" / "rootfs")
    oit, oit_groups = tree(tmp_path / "oit")
    assert "o/lower" not in mine and "o/new" in mine and "p/mine" in mine and "a/tree" not in mine
    assert ["bin/tool", "usr/tool"] in my_groups
    assert mine == umoci, diff_trees(mine, umoci)
    assert my_groups == umoci_groups
    # oci-image-tool 1.0.0-rc1 drops opaque markers without hiding what lower layers put in the
    # directory, so it is compared outside the two opaque directories only.
    assert {"o/lower", "p/lower"} <= set(oit)

    def outside_opaque(t):
        return {k: v for k, v in t.items() if k.split("/")[0] not in ("o", "p")}

    assert_like_oci_image_tool(outside_opaque(mine), my_groups, outside_opaque(oit), oit_groups)


def diff_trees(a, b):
    keys = sorted(set(a) | set(b))
    return "\n".join(f"{k}: {a.get(k)} != {b.get(k)}" for k in keys if a.get(k) != b.get(k))[:4000]


# ---------------------------------------------------------------------------------------------
# Rootless: an unprivileged user unpacks


TEST_USER = "ocibuild-test"


def decode_rootless(value: bytes):
    """user.rootlesscontainers: protobuf Resource {uint32 uid = 1; uint32 gid = 2}; absent = 0."""
    out, i = {1: 0, 2: 0}, 0
    while i < len(value):
        key, i = _varint(value, i)
        assert key & 7 == 0, value
        v, i = _varint(value, i)
        out[key >> 3] = 0 if v == 0xFFFFFFFF else v
    return out[1], out[2]


def _varint(b, i):
    v = shift = 0
    while True:
        v |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return v, i


@pytest.fixture(scope="module")
def test_user():
    if not IS_ROOT:
        pytest.skip("creating a user needs root")
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        run(["useradd", "-m", "-s", "/bin/sh", TEST_USER])
        pw = pwd.getpwnam(TEST_USER)
    return pw


@pytest.fixture
def user_dir(test_user):
    """A folder the test user owns, outside pytest's root-only tmp dirs, with a copy of ocibuild."""
    d = Path(tempfile.mkdtemp(prefix="ocibuild-rootless-"))
    os.chmod(d, 0o755)
    shutil.copy(ocibuild_path(), d / "ocibuild")
    os.chown(d, test_user.pw_uid, test_user.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_as(user, cmd, check=True):
    env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "OCIBUILD_STORE": ""}
    return run(["runuser", "-u", user.pw_name, "--", "env", *[f"{k}={v}" for k, v in env.items()], *cmd], check=check)


ROOTLESS_LAYERS = [
    [dir_("etc"), reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
     dir_("home"), dir_("home/alice", mode=0o700, uid=1000, gid=1000),
     reg("home/alice/notes", b"hi", mode=0o600, uid=1000, gid=1000),
     reg("only-gid", b"g", gid=5), reg("only-uid", b"u", uid=123),
     dir_("ro", mode=0o555), reg("ro/f", b"1", mode=0o444), reg("nomode", b"n", mode=0o000, uid=7, gid=7),
     reg("usr-bin-su", b"su", mode=0o4755), sym("link", "etc/passwd", uid=9, gid=9),
     dir_("dev"), chardev("dev/null", 1, 3), chardev("dev/zero", 1, 5), fifo("fifo", uid=2, gid=2),
     dir_("locked", mode=0o000), reg("locked/inside", b"x", mode=0o400)],
    [dir_("ro", mode=0o555), reg("ro/g", b"2"), reg("ro/.wh.f"),
     link("hard", "etc/passwd"), reg("locked/.wh.inside"), reg("locked/new", b"y"),
     dir_("home/alice", mode=0o700, uid=1000, gid=1000), reg("home/alice/.wh..wh..opq"),
     reg("home/alice/fresh", b"f", uid=1000, gid=1000)],
]


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_rootless_unpack(test_user, user_dir, resolver):
    layout = user_dir / "layout"
    ref = write_layout(layout, [tar_of(entries) for entries in ROOTLESS_LAYERS])
    for p in [layout, *layout.rglob("*")]:
        os.chown(p, test_user.pw_uid, test_user.pw_gid)
    root = user_dir / "root"
    cmd = [user_dir / "ocibuild", "unpack", "--store", user_dir / "store", ref, root]
    if resolver == "walk":
        cmd.append("--no-openat2")
    proc = run_as(test_user, cmd)
    assert "dev/null" in proc.stderr and "dev/zero" in proc.stderr and "device node" in proc.stderr

    def st(p):
        return os.lstat(root / p)

    # Every file belongs to the user; the layers' owners live in user.rootlesscontainers.
    for p in [root, *root.rglob("*")]:
        assert os.lstat(p).st_uid == test_user.pw_uid, p
    assert not [p for p in root.rglob("*") if stat.S_ISCHR(os.lstat(p).st_mode) or stat.S_ISBLK(os.lstat(p).st_mode)]
    assert stat.S_ISFIFO(st("fifo").st_mode)

    def owner(p):
        try:
            return decode_rootless(os.getxattr(root / p, "user.rootlesscontainers", follow_symlinks=False))
        except OSError:
            return (0, 0)

    assert owner("home/alice") == (1000, 1000) and owner("home/alice/fresh") == (1000, 1000)
    assert owner("only-gid") == (0, 5) and owner("only-uid") == (123, 0) and owner("nomode") == (7, 7)
    assert "user.rootlesscontainers" not in os.listxattr(root / "etc" / "passwd")
    # Modes are the layers' own, restored after writing into read-only directories.
    mode = lambda p: stat.S_IMODE(st(p).st_mode)  # noqa: E731
    assert mode("ro") == 0o555 and mode("nomode") == 0 and mode("usr-bin-su") == 0o4755
    assert mode("locked") == 0 and mode("home/alice") == 0o700
    os.chmod(root / "locked", 0o700)  # root can read it anyway; keep the listing simple
    assert sorted(os.listdir(root / "ro")) == ["g"] and os.listdir(root / "locked") == ["new"]
    assert sorted(os.listdir(root / "home" / "alice")) == ["fresh"]
    assert os.stat(root / "hard").st_ino == os.stat(root / "etc" / "passwd").st_ino
