#!/usr/bin/env python3
"""Writes the seed corpus of the layer apply fuzz target into tests/fuzz/corpus/ (committed).

The seeds are the shapes tests/integration/test_layer_apply.py checks: every entry kind, the OCI
whiteout rules, and the hostile layers (escapes, symlink tricks, bad whiteouts), plain and
compressed. Rerun after changing this file: python3 tests/fuzz/make_corpus.py
"""
import gzip
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus"
EPOCH = 1_700_000_000


def entry(name, kind=tarfile.REGTYPE, data=None, mode=0o644, **kw):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, EPOCH
    xattrs = kw.pop("xattrs", None)
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    for k, v in kw.items():
        setattr(ti, k, v)
    if kind == tarfile.REGTYPE:
        ti.size = len(data or b"")
    return ti, data


def reg(name, data=b"", **kw):
    return entry(name, data=data, **kw)


def dir_(name, mode=0o755, **kw):
    return entry(name, tarfile.DIRTYPE, mode=mode, **kw)


def sym(name, target):
    return entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def link(name, target):
    return entry(name, tarfile.LNKTYPE, linkname=target)


def tar_of(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue().rstrip(b"\0")
    # Keep the data's own padding and the two zero blocks that end the archive, not tarfile's
    # 10 KiB record padding: small seeds fuzz faster.
    return pad(raw)


def pad(raw):
    """To a whole number of 512-byte blocks, then the two zero blocks that end a tar."""
    return raw.ljust(-(-len(raw) // 512) * 512, b"\0") + b"\0" * 1024


SEEDS = {
    "kinds": [dir_("etc"), reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), dir_("tmp", mode=0o1777),
              reg("suid", b"s", mode=0o4755, uid=1000, gid=1000), sym("link", "etc/passwd"), link("hard", "suid"),
              entry("fifo", tarfile.FIFOTYPE), entry("null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
              reg("attr", b"a", xattrs={"user.k": "v", "security.capability": "x", "trusted.t": "t"}),
              dir_("ro", mode=0o555), reg("ro/f", b"f", mode=0o444)],
    "whiteouts": [dir_("a"), reg("a/keep"), reg("a/.wh.gone"), dir_("o"), reg("o/new"), reg("o/.wh..wh..opq"),
                  reg(".wh.a"), dir_("a"), reg("a/again")],
    "dotdot": [reg("../escape", b"x")],
    "dotdot-nested": [dir_("a"), reg("a/../../x", b"x")],
    "absolute": [reg("/abs/path", b"x"), link("/abs/l", "/abs/path")],
    "symlink-root": [sym("link", "/"), reg("link/etc/evil", b"x")],
    "symlink-up": [sym("link", "../../.."), reg("link/x", b"x"), dir_("link/d")],
    "symlink-swap": [dir_("d"), reg("d/first"), sym("d", "/tmp/outside"), reg("d/f", b"x")],
    "hardlink-escape": [link("pw", "/etc/passwd"), link("x", "../outside/secret"), link("y", "")],
    "whiteout-bad": [dir_("a"), reg("a/.wh..."), reg("a/.wh.."), reg(".wh.")],
    "whiteout-symlink": [sym("d", "/tmp"), reg("d/.wh.x"), sym("e", "../.."), reg("e/.wh..wh..opq")],
    "loop": [sym("a", "b"), sym("b", "a"), reg("a/x")],
    "replace": [reg("x", b"1"), dir_("x"), reg("x/y"), sym("x", "y"), reg("x", b"2"), dir_("d"), link("d", "x")],
    "root-entry": [dir_(".", mode=0o700), dir_("./", mode=0o755), sym(".", "/")],
}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    for name, entries in SEEDS.items():
        (OUT / f"{name}.tar").write_bytes(tar_of(entries))
    kinds = tar_of(SEEDS["kinds"])
    (OUT / "kinds.tar.gz").write_bytes(gzip.compress(kinds, mtime=0))
    zstd = shutil.which("zstd")
    if zstd:
        (OUT / "kinds.tar.zst").write_bytes(subprocess.run([zstd, "-q", "-c"], input=kinds, capture_output=True,
                                                           check=True).stdout)
    long_dir = "d" * 120
    names = [dir_(long_dir), reg(f"{long_dir}/" + "n" * 150, b"long"), sym("l", "t" * 200),
             reg(b"bad\xff".decode("utf-8", "surrogateescape"), b"b")]
    (OUT / "long-gnu.tar").write_bytes(tar_of(names, fmt=tarfile.GNU_FORMAT))
    (OUT / "long-pax.tar").write_bytes(tar_of(names))
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp, "holes")
        with open(f, "wb") as out:
            out.write(b"head")
            out.seek(1 << 16)
            out.write(b"tail")
            out.truncate(1 << 17)
        sparse = Path(tmp, "sparse.tar")
        # -b1: 512-byte records, so no record padding to trim.
        subprocess.run(["tar", "--sparse", "--format=posix", "-b1", "-C", tmp, "-cf", sparse, "holes"], check=True)
        (OUT / "sparse.tar").write_bytes(sparse.read_bytes())
    (OUT / "empty").write_bytes(b"")
    (OUT / "zeros.tar").write_bytes(b"\0" * 1024)


if __name__ == "__main__":
    main()
