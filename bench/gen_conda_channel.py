#!/usr/bin/env python3
"""Generates a deterministic synthetic conda channel at conda-forge's scale, for solver benchmarks.

Shape (defaults): about 480k records in linux-64 (~300 MB of repodata.json) and 190k in noarch,
about 25k package names with a long-tailed number of versions and builds per name, written the
way conda-forge's index writes them (sorted keys, indent 1, old artifacts under "packages" as
.tar.bz2 and newer ones under "packages.conda", a few "removed" entries).

Two populations:
- a PyTorch stack written out by hand (python 3.6-3.13 incl. pypy and free-threaded builds,
  pytorch/libtorch with CUDA and CPU builds, torchvision, torchaudio, triton, the CUDA 12 and 13
  component libraries, cudnn, nccl, blas variants (mkl/openblas), numpy, scipy, scikit-learn,
  pandas, matplotlib with pyside6/Qt6 and its X11 tree, tensorboard with grpc/protobuf/abseil...).
  Every package has a version history; each build pins its dependencies as its run_exports would
  at the time it was built, so the newest build of the newest version pins the newest versions.
  A few traps make the solve more than "take the newest": python 3.13 exists but the torch
  family has no 3.13 builds; pytorch 2.7.0 exists only as CUDA 13 builds (cuda-version 13.0
  constrains __cuda >=13) and CPU builds; torchvision 0.22 / torchaudio 2.7 need pytorch 2.7;
  libprotobuf, libabseil and mkl have newer versions than the stack's pins allow; pysocks and
  sympy have __unix / __win noarch variants; libblas/libcblas/liblapack mkl builds are selected
  through `libblas * *mkl` and constrains; old records depend on libgcc-ng, newer on libgcc and
  __glibc; old versions of stack packages depend on names that later left the stack.
- filler: generated names (C libraries, python extensions, R packages, noarch python/R/generic)
  whose depends point at earlier names (biased to a popular few) and at the core of the stack.

Output: <out>/<channel>/{linux-64,noarch}/repodata.json and repodata.json.zst (zstd CLI).
Output depends only on the arguments.

Usage: gen_conda_channel.py --out DIR [--channel synth-forge] [--seed 1]
           [--linux-records 480000] [--noarch-records 190000] [--zstd-level 3]
"""
import argparse
import bisect
import hashlib
import math
import os
import random
import subprocess
import sys
import time

T0_MS = 1_483_228_800_000   # 2017-01-01: time fraction 0
T1_MS = 1_790_812_800_000   # 2026-10-01: time fraction 1
GLIBC = "__glibc >=2.17,<3.0.a0"
GLIBC_CUDA = "__glibc >=2.28,<3.0.a0"
GLIBC_SINCE = 0.75    # conda-forge's sysroot 2.17 builds started to carry __glibc
LIBGCC_SINCE = 0.80   # libgcc replaced libgcc-ng in run_exports
CONDA_SINCE = 0.55    # artifacts newer than this are .conda, older .tar.bz2

# Python minors: (minor, first time, last time of new ext builds, patch count)
PY_MINORS = [(6, 0.00, 0.35, 15), (7, 0.05, 0.60, 17), (8, 0.25, 0.80, 20), (9, 0.40, 1.0, 21),
             (10, 0.50, 1.0, 16), (11, 0.62, 1.0, 11), (12, 0.74, 1.0, 8), (13, 0.86, 1.0, 3)]
PYPY = [(9, "3.9.18", "7.3.15", 0.55), (10, "3.10.14", "7.3.17", 0.75)]

LICENSES = [("MIT", "MIT", 30), ("BSD-3-Clause", "BSD", 22), ("Apache-2.0", "APACHE", 18),
            ("GPL-3.0-or-later", "GPL3", 6), ("LGPL-2.1-or-later", "LGPL", 4), ("MPL-2.0", "MOZILLA", 2),
            ("BSD-2-Clause", "BSD", 5), ("GPL-2.0-or-later", "GPL2", 5), ("ISC", "ISC", 2),
            ("Zlib", "OTHER", 1), ("PSF-2.0", "PSF", 1), ("LicenseRef-Proprietary", "PROPRIETARY", 1)]
LICENSE_CHOICES = [(spdx, fam) for spdx, fam, w in LICENSES for _ in range(w)]


def hsh(*parts):
    """A stable 7-hex build hash, the same for every member of a family built together."""
    return "h" + hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()[:7]


def vnums(version):
    """Leading numeric components of a version string ("2.9.0.post0" -> [2, 9, 0])."""
    out = []
    for part in version.replace("_", ".").split("."):
        digits = ""
        for ch in part:
            if ch.isdigit():
                digits += ch
            else:
                break
        if not digits:
            break
        out.append(int(digits))
        if len(digits) != len(part):
            break
    return out or [0]


def pin(style, name, v):
    """A depends entry as a run_export of `name` built at version `v` would write it."""
    n = vnums(v)
    while len(n) < 3:
        n.append(0)
    if style == "x":
        return f"{name} >={v},<{n[0] + 1}.0a0"
    if style == "xy":
        return f"{name} >={v},<{n[0]}.{n[1] + 1}.0a0"
    if style == "xyz":
        return f"{name} >={v},<{n[0]}.{n[1]}.{n[2] + 1}.0a0"
    if style == "lb":
        return f"{name} >={n[0]}"
    if style == "lbv":
        return f"{name} >={v}"
    if style == "lbxy" or style == "old":
        return f"{name} >={n[0]}.{n[1]}"
    if style == "star":
        return f"{name} {n[0]}.{n[1]}.*"
    if style == "np":
        return "numpy >=1.23,<3" if n[0] >= 2 else f"numpy >=1.{max(11, n[1] - 2)},<2.0a0"
    return name


def history(latest, count, rng):
    """`count` plausible versions ascending, ending at `latest`."""
    nums = vnums(latest)
    tail = latest[len(".".join(map(str, nums))):] if latest.startswith(".".join(map(str, nums))) else ""
    width = max(len(nums), 2)
    cur = nums + [0] * (width - len(nums))
    out = [latest]
    while len(out) < count:
        cur = list(cur)
        i = width - 1
        while i >= 0 and cur[i] == 0:
            i -= 1
        if i < 0:
            break
        cur[i] -= 1
        for j in range(i + 1, width):
            cur[j] = rng.choice((0, 1, 2, 3, 4, 5, 9, 12)) if j == i + 1 else rng.randint(0, 3)
        if all(c == 0 for c in cur[:2]) and width >= 2:
            break
        out.append(".".join(map(str, cur)))
    out.reverse()
    if tail:
        out[-1] = latest
    return out


class Pkg:
    """One package name: its versions with the time each appeared, and how it is built."""
    __slots__ = ("name", "kind", "versions", "times", "extra", "pin", "deps", "cons", "py_max",
                 "py_min", "builds", "lic", "family", "auto", "size_mu", "hist", "pypy", "ft",
                 "variants", "build_fn", "deps_fn", "track")

    def __init__(self, name, kind, versions, times, pin="x", deps=(), cons=(), extra=()):
        self.name, self.kind, self.versions, self.times = name, kind, versions, times
        self.extra = list(extra)
        self.pin, self.deps, self.cons = pin, list(deps), list(cons)
        self.py_max, self.py_min = 13, 6
        self.builds = None      # build numbers per version (list of ints), filled by the generator
        self.lic = ("BSD-3-Clause", "BSD")
        self.family = None
        self.auto = True        # add libgcc / __glibc automatically for linux-64 kinds
        self.size_mu = 13.0
        self.hist = []          # (dep spec, until time): dependencies dropped later
        self.pypy = False
        self.ft = False
        self.variants = None
        self.build_fn = None
        self.deps_fn = None
        self.track = None

    def version_at(self, t):
        i = bisect.bisect_right(self.times, t) - 1
        return self.versions[max(i, 0)]


class Channel:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pkgs = {}
        self.order = []
        self.records = {"linux-64": {}, "noarch": {}}   # fn -> rendered JSON (without key)
        self.counts = {"linux-64": 0, "noarch": 0}
        self.removed = {"linux-64": [], "noarch": []}
        self.nstack = 0

    def add(self, pkg):
        if pkg.name in self.pkgs:
            raise SystemExit(f"duplicate package {pkg.name}")
        self.pkgs[pkg.name] = pkg
        self.order.append(pkg)
        return pkg


# --------------------------------------------------------------------------------------------
# The PyTorch stack. Columns: name kind latest versions pin [options] : depends
# kinds: c = linux-64 library, py = linux-64 python extension, nap = noarch python,
#        nag = noarch generic. pin = how dependents pin it (see pin()).
# depends: name (pinned by the dependency's own style), name:style, or a literal with ~ for
#          spaces; a suffix @T means "since time T", @-T means "until time T".
# options: x=V,V (versions newer than anything in the stack pins), py<=N (last python minor),
#          noauto (no libgcc/__glibc), age=T (first version's time), pypy, ft.
STACK = r"""
ca-certificates c 2024.12.14 30 none noauto :
ld_impl_linux-64 c 2.43 12 lbv noauto : __glibc~>=2.17,<3.0.a0@0.75
bzip2 c 1.0.8 4 x :
libzlib c 1.3.1 6 x : !zlib~<0.0a0@-0.5
zlib c 1.3.1 8 x : libzlib:xyz
libexpat c 2.6.4 12 x : !expat~2.6.4.*@-0.3
libffi c 3.4.6 6 x :
liblzma c 5.6.3 10 x :
libnsl c 2.0.1 3 xy :
libsqlite c 3.47.2 30 x : libzlib
libuuid c 2.38.1 5 x :
libxcrypt c 4.4.36 6 lbv :
ncurses c 6.5 8 x :
openssl c 3.4.0 40 x : ca-certificates
readline c 8.2 5 x : ncurses
tk c 8.6.13 6 xy : libzlib
libmpdec c 4.0.0 2 x age=0.85 :
tzdata nag 2024b 25 none :
pip nap 24.3.1 45 none : setuptools wheel
setuptools nap 75.6.0 80 old :
wheel nap 0.45.1 20 old :
pypy3.9 c 7.3.15 5 xy : libffi libzlib openssl ncurses bzip2 liblzma libsqlite tk expat:none@-0.6
pypy3.10 c 7.3.17 3 xy age=0.7 : libffi libzlib openssl ncurses bzip2 liblzma libsqlite tk
expat c 2.6.4 12 x : libexpat:xyz
llvm-openmp c 19.1.6 30 lbv noauto : __glibc~>=2.17,<3.0.a0@0.75 libzlib
libiconv c 1.17 4 x :
icu c 75.1 10 x : libstdcxx
libxml2 c 2.13.5 30 xy : libiconv liblzma libzlib icu
libhwloc c 2.11.2 15 x : libstdcxx libxml2
tbb c 2021.13.0 12 star : libhwloc libstdcxx
mkl c 2024.2.2 14 x x=2025.0.1 noauto : _openmp_mutex~*~*_llvm _openmp_mutex~>=4.5 llvm-openmp tbb
libopenblas c 0.3.28 25 x : libgfortran5:lbv libgfortran:none@0.8 libgfortran-ng:none@-0.8 !openblas~<0.0a0@-0.2
numpy py 2.2.1 70 np ft pypy : libstdcxx libblas libcblas liblapack
scipy py 1.14.1 40 old pypy : libstdcxx libgfortran5:lbv libgfortran:none@0.8 libblas libcblas liblapack numpy:np
joblib nap 1.4.2 25 old : setuptools
threadpoolctl nap 3.5.0 12 old :
scikit-learn py 1.6.0 35 old : libstdcxx _openmp_mutex:lbv joblib numpy:np scipy threadpoolctl
six nap 1.17.0 10 old :
python-dateutil nap 2.9.0.post0 12 old : six
pytz nap 2024.2 30 old :
python-tzdata nap 2024.2 14 old :
pandas py 2.2.3 45 old pypy : libstdcxx numpy:np python-dateutil python-tzdata pytz
cycler nap 0.12.1 6 old :
munkres nap 1.1.4 1 old :
libbrotlicommon c 1.1.0 4 xyz :
libbrotlidec c 1.1.0 4 xyz : libbrotlicommon:xyz
libbrotlienc c 1.1.0 4 xyz : libbrotlicommon:xyz
brotli-bin c 1.1.0 4 xyz : libbrotlidec:xyz libbrotlienc:xyz
brotli c 1.1.0 4 xyz : brotli-bin:xyz libbrotlidec:xyz libbrotlienc:xyz
brotli-python py 1.1.0 4 old pypy : libstdcxx
unicodedata2 py 15.1.0 10 old pypy :
fonttools py 4.55.3 70 old pypy : brotli-python munkres unicodedata2
kiwisolver py 1.4.7 14 old pypy : libstdcxx
packaging nap 24.2 25 old :
libjpeg-turbo c 3.0.0 6 x : !jpeg~<0.0.0a@0.6
libpng c 1.6.44 14 xy : libzlib
freetype c 2.12.1 6 x : libpng libzlib
libdeflate c 1.23 12 xy :
lerc c 4.0.0 3 x : libstdcxx
zstd c 1.5.6 10 xy : libzlib libstdcxx
libwebp-base c 1.5.0 10 x :
libtiff c 4.7.0 10 xy : lerc libdeflate libjpeg-turbo liblzma libwebp-base libzlib zstd libstdcxx
lcms2 c 2.16 6 x : libjpeg-turbo libtiff
openjpeg c 2.5.3 8 x : libpng libstdcxx libtiff libzlib
pthread-stubs c 0.4 2 none :
xorg-libxau c 1.0.12 5 x :
xorg-libxdmcp c 1.1.5 4 x :
libxcb c 1.17.0 8 x : pthread-stubs xorg-libxau xorg-libxdmcp
pillow py 11.0.0 50 old pypy : freetype lcms2 libjpeg-turbo libtiff libwebp-base libxcb openjpeg tk libzlib
pyparsing nap 3.2.0 25 old :
qhull c 2020.2 2 xy : libstdcxx
certifi nap 2024.12.14 30 old :
contourpy py 1.3.1 12 old pypy : libstdcxx numpy:np
tornado py 6.4.2 20 old pypy :
matplotlib-base py 3.10.0 45 xyz : certifi contourpy cycler fonttools freetype kiwisolver libstdcxx numpy:np packaging pillow pyparsing python-dateutil qhull tk
libglvnd c 1.7.0 3 xyz :
xorg-libx11 c 1.8.10 10 x : libxcb
xorg-libice c 1.1.2 4 x :
xorg-libsm c 1.2.5 4 x : libuuid xorg-libice
xorg-libxext c 1.3.6 4 x : xorg-libx11
xorg-libxfixes c 6.0.1 3 x : xorg-libx11
xorg-libxrender c 0.9.12 3 x : xorg-libx11
xorg-libxi c 1.8.2 3 x : xorg-libx11 xorg-libxext xorg-libxfixes
xorg-libxtst c 1.2.5 3 x : xorg-libx11 xorg-libxext xorg-libxi
xorg-libxrandr c 1.5.4 3 x : xorg-libx11 xorg-libxext xorg-libxrender
xorg-libxcomposite c 0.4.6 3 x : xorg-libx11 xorg-libxfixes
xorg-libxcursor c 1.2.3 3 x : xorg-libx11 xorg-libxfixes xorg-libxrender
xorg-libxdamage c 1.1.6 3 x : xorg-libx11 xorg-libxext xorg-libxfixes
xorg-libxxf86vm c 1.1.6 3 x : xorg-libx11 xorg-libxext
libglx c 1.7.0 3 xyz : libglvnd:xyz xorg-libx11
libgl c 1.7.0 3 xyz : libglvnd:xyz libglx:xyz
libegl c 1.7.0 3 xyz : libglvnd:xyz
libopengl c 1.7.0 3 xyz : libglvnd:xyz
xcb-util c 0.4.1 3 xy : libxcb
xcb-util-image c 0.4.0 3 xy : libxcb xcb-util
xcb-util-renderutil c 0.3.10 3 xy : libxcb
xcb-util-keysyms c 0.4.1 3 xy : libxcb
xcb-util-wm c 0.4.2 3 xy : libxcb
xcb-util-cursor c 0.1.5 3 xy : libxcb xcb-util-image xcb-util-renderutil
xkeyboard-config c 2.43 10 x : xorg-libx11
libxkbcommon c 1.7.0 12 x : libstdcxx libxcb libxml2 xkeyboard-config
pixman c 0.44.2 10 x : libstdcxx
graphite2 c 1.3.13 2 x : libstdcxx
pcre2 c 10.44 8 xy : bzip2 libzlib
libglib c 2.82.2 30 x : libffi libiconv libzlib pcre2
fontconfig c 2.15.0 6 x : freetype libexpat libuuid libzlib
cairo c 1.18.2 6 x : fontconfig freetype icu libexpat libglib libpng libstdcxx libxcb libzlib pixman xorg-libice xorg-libsm xorg-libx11 xorg-libxext xorg-libxrender
harfbuzz c 10.1.0 40 x : cairo freetype graphite2 icu libexpat libglib libstdcxx libzlib
dbus c 1.13.6 2 x : libexpat libglib
double-conversion c 3.3.0 4 x : libstdcxx
alsa-lib c 1.2.13 10 xy :
keyutils c 1.6.1 2 x :
libedit c 3.1.20191231 3 x : ncurses
krb5 c 1.21.3 10 xy : keyutils libedit openssl libstdcxx
libcups c 2.3.3 3 xy : krb5 libzlib libstdcxx
libpciaccess c 0.18 3 xy :
libdrm c 2.4.124 20 x : libpciaccess
libntlm c 1.8 2 x :
cyrus-sasl c 2.1.27 3 xy : krb5 libntlm openssl libstdcxx
openldap c 2.6.9 10 xy : cyrus-sasl krb5 openssl libstdcxx
libpq c 17.2 25 x : icu krb5 openldap openssl
libllvm19 c 19.1.6 6 xy : libxml2 libzlib zstd libstdcxx
libclang-cpp19.1 c 19.1.6 6 xy : libllvm19 libstdcxx
libclang13 c 19.1.6 6 lbv : libllvm19 libstdcxx
mysql-common c 9.0.1 12 xyz : openssl libstdcxx
mysql-libs c 9.0.1 12 xy : mysql-common:xyz openssl libzlib zstd libstdcxx
wayland c 1.23.1 10 x : libexpat libffi libstdcxx
libxslt c 1.1.39 4 xy : libxml2
qt6-main c 6.8.1 15 xyz : alsa-lib dbus double-conversion fontconfig freetype harfbuzz icu krb5 libclang-cpp19.1 libclang13 libcups libdrm libegl libgl libglib libjpeg-turbo libllvm19 libpng libpq libsqlite libtiff libwebp-base libxcb libxkbcommon libxml2 libzlib mysql-libs openssl pcre2 wayland xcb-util xcb-util-cursor xcb-util-image xcb-util-keysyms xcb-util-renderutil xcb-util-wm xorg-libice xorg-libsm xorg-libx11 xorg-libxcomposite xorg-libxcursor xorg-libxdamage xorg-libxext xorg-libxrandr xorg-libxtst xorg-libxxf86vm zstd libstdcxx
pyside6 py 6.8.1 15 lbxy age=0.6 : libclang13 libegl libgl libopengl libxml2 libxslt qt6-main:xyz libstdcxx
matplotlib py 3.10.0 45 xyz : matplotlib-base:xyz pyside6:lbxy@0.85 tornado
absl-py nap 2.1.0 20 old :
markdown nap 3.6 20 old :
markupsafe py 3.0.2 20 old pypy :
werkzeug nap 3.1.3 25 old : markupsafe
c-ares c 1.34.4 20 x :
libabseil c 20240722.0 8 x x=20250127.0 : libstdcxx
libprotobuf c 5.28.3 25 xyz x=5.29.3 : libabseil libstdcxx libzlib
libre2-11 c 2024.07.02 6 lbv age=0.7 : libabseil libstdcxx
re2 c 2024.07.02 6 xyz age=0.7 : libre2-11:xyz
libgrpc c 1.67.1 30 xyz : c-ares libabseil libprotobuf libre2-11 re2 libstdcxx libzlib openssl
grpcio py 1.67.1 30 old : libgrpc:xyz libstdcxx libzlib
protobuf py 5.28.3 25 old : libstdcxx libabseil
tensorboard-data-server py 0.7.0 4 xy age=0.6 : openssl
tensorboard nap 2.18.0 40 old : absl-py grpcio markdown numpy~>=1.12.0 packaging protobuf~>=3.19.6,!=4.24.0 setuptools six tensorboard-data-server~>=0.7.0,<0.8.0 werkzeug
gmp c 6.3.0 5 x : libstdcxx
mpfr c 4.2.1 5 x : gmp
mpc c 1.3.1 4 x : gmp mpfr
gmpy2 py 2.1.5 10 old pypy : gmp mpc mpfr
mpmath nap 1.3.0 8 old :
sympy nap 1.13.3 20 old :
pysocks nap 1.7.1 6 old :
filelock nap 3.16.1 40 old :
fsspec nap 2024.12.0 50 old :
jinja2 nap 3.1.5 25 old : markupsafe
networkx nap 3.4.2 30 old :
typing_extensions nap 4.12.2 30 old :
typing-extensions nap 4.12.2 30 none : typing_extensions:xyz
optree py 0.13.1 12 old age=0.7 : libstdcxx typing-extensions~>=4.5
pybind11-abi nag 4 2 none :
sleef c 3.7 4 x age=0.7 : _openmp_mutex:lbv libstdcxx
libuv c 1.49.2 20 x :
hpack nap 4.0.0 3 old :
hyperframe nap 6.0.1 4 old :
h2 nap 4.1.0 4 old : hpack~>=4.0,<5 hyperframe~>=6.0,<7
pycparser nap 2.22 5 old :
cffi py 1.17.1 15 old pypy : libffi pycparser
zstandard py 0.23.0 12 old pypy : cffi zstd
idna nap 3.10 12 old :
charset-normalizer nap 3.4.1 25 old :
urllib3 nap 2.3.0 40 old : brotli-python h2~>=4,<5 pysocks~>=1.5.6,<2.0,!=1.5.7 zstandard
requests nap 2.32.3 30 old : certifi charset-normalizer~>=2,<4 idna~>=2.5,<4 urllib3~>=1.21.1,<3
libnl c 3.11.0 4 x :
rdma-core c 54.0 8 x : libnl libstdcxx
"""

NUMPY_VERSIONS = [f"1.{m}.{k}" for m in range(11, 27) for k in range(2 + m % 3)] + \
    ["2.0.0", "2.0.1", "2.0.2", "2.1.0", "2.1.1", "2.1.2", "2.1.3", "2.2.0", "2.2.1"]
CUDA_RELEASES = [("12.0", 0.72), ("12.1", 0.76), ("12.2", 0.79), ("12.3", 0.82), ("12.4", 0.86),
                 ("12.5", 0.89), ("12.6", 0.92), ("12.8", 0.96), ("12.9", 0.99)]
CUDA_EXTRA = "13.0"
# component: (major under CUDA 12, minor offset, noarch _linux-64 subpackage)
CUDA_COMPONENTS = {
    "cuda-cudart": (12, 0, True), "cuda-cupti": (12, 0, False), "cuda-nvrtc": (12, 0, False),
    "cuda-nvtx": (12, 0, False), "cuda-cuobjdump": (12, 0, False), "cuda-nvdisasm": (12, 0, False),
    "libcublas": (12, 0, False), "libcufft": (11, 0, False), "libcurand": (10, 3, False),
    "libcusolver": (11, 4, False), "libcusparse": (12, 0, False), "libnvjitlink": (12, 0, False),
    "libcufile": (1, 5, False),
}
CUDA_COMPONENT_DEPS = {
    "libcusolver": ["libcublas", "libcusparse", "libnvjitlink"],
    "libcusparse": ["libnvjitlink"],
    "libcufile": ["rdma-core"],
}


def parse_stack(ch):
    rng = ch.rng
    for line in STACK.strip().splitlines():
        head, _, deps = line.partition(":")
        fields = head.split()
        name, kind, latest, nver, pinstyle = fields[0], fields[1], fields[2], int(fields[3]), fields[4]
        opts = fields[5:]
        extra, age, py_max, auto, pypy, ft = [], None, 13, True, False, False
        for o in opts:
            if o.startswith("x="):
                extra = o[2:].split(",")
            elif o.startswith("age="):
                age = float(o[4:])
            elif o.startswith("py<="):
                py_max = int(o[4:])
            elif o == "noauto":
                auto = False
            elif o == "pypy":
                pypy = True
            elif o == "ft":
                ft = True
        versions = NUMPY_VERSIONS if name == "numpy" else history(latest, nver, rng)
        start = age if age is not None else rng.uniform(0.0, 0.5)
        times = spread(start, len(versions))
        p = ch.add(Pkg(name, kind, versions, times, pinstyle, [], [], extra))
        p.deps = [parse_dep(d) for d in deps.split()]
        p.auto, p.py_max, p.pypy, p.ft = auto, py_max, pypy, ft
        p.lic = rng.choice(LICENSE_CHOICES)


def spread(start, n):
    if n == 1:
        return [start]
    return [start + (0.97 - start) * i / (n - 1) for i in range(n)]


def parse_dep(text):
    since, until = 0.0, 2.0
    if "@" in text:
        text, _, when = text.rpartition("@")
        if when.startswith("-"):
            until = float(when[1:])
        else:
            since = float(when)
    text = text.replace("~", " ")
    if text.startswith("!"):   # a constrains entry
        return ("con", text[1:], None, since, until)
    if " " in text:
        return ("lit", text, None, since, until)
    name, _, style = text.partition(":")
    return ("pkg", name, style or None, since, until)


def add_special(ch):
    """Families whose members share builds, and packages with hand-written build strings."""
    rng = ch.rng
    # GCC runtime: one build string per (version, build number) shared by the whole family.
    gcc_versions = ["7.5.0", "9.3.0", "10.3.0", "11.2.0", "12.2.0", "13.2.0", "14.1.0", "14.2.0"]
    gcc_times = [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95]
    mutex = ch.add(Pkg("_libgcc_mutex", "c", ["0.1"], [0.0], "none"))
    mutex.auto = False
    mutex.builds = [[0]]
    mutex.build_fn = lambda p, v, bn, py: "conda_forge"
    omp = ch.add(Pkg("_openmp_mutex", "c", ["4.5"], [0.0], "lbv"))
    omp.auto = False
    omp.variants = [("1_gnu", 1, "libgomp >=7.5.0"), ("2_gnu", 2, "libgomp >=7.5.0"),
                    ("1_llvm", 1, "llvm-openmp >=9.0.1"), ("2_kmp_llvm", 2, "llvm-openmp >=9.0.1")]
    gcc = {
        "libgcc": (["_libgcc_mutex 0.1 conda_forge", "_openmp_mutex >=4.5"], ["libgomp {v} {b}", "libgcc-ng =={v}=*_{bn}"]),
        "libgcc-ng": (["libgcc {v} {b}"], []),
        "libgomp": (["_libgcc_mutex 0.1 conda_forge"], []),
        "libstdcxx": (["libgcc {v} {b}"], []),
        "libstdcxx-ng": (["libstdcxx {v} {b}"], []),
        "libgfortran5": (["libgcc >={v}"], ["libgfortran {v} *_{bn}"]),
        "libgfortran": (["libgfortran5 {v} {b}"], []),
        "libgfortran-ng": (["libgfortran {v} {b}"], []),
    }
    for name, (deps, cons) in gcc.items():
        p = ch.add(Pkg(name, "c", gcc_versions, gcc_times, "lb"))
        p.auto = False
        p.family = "gcc"
        p.builds = [[0, 1, 2] if v != "7.5.0" else [17, 18, 19] for v in gcc_versions]
        p.build_fn = lambda p, v, bn, py: f"{hsh('gcc', v, bn)}_{bn}"
        p.deps_fn = (lambda deps, cons: lambda p, v, bn, t: (
            [d.format(v=v, b=f"{hsh('gcc', v, bn)}_{bn}", bn=bn) for d in deps],
            [c.format(v=v, b=f"{hsh('gcc', v, bn)}_{bn}", bn=bn) for c in cons]))(deps, cons)
        p.lic = ("GPL-3.0-only WITH GCC-exception-3.1", "GPL")
    # BLAS: libblas/libcblas/liblapack/liblapacke share build strings, per variant.
    blas_versions, blas_times = ["3.8.0", "3.9.0"], [0.0, 0.3]
    blas_builds = [list(range(0, 21)), list(range(0, 27))]
    members = ["libblas", "libcblas", "liblapack", "liblapacke"]
    for name in members:
        p = ch.add(Pkg(name, "c", blas_versions, blas_times, "x"))
        p.auto = False
        p.builds = blas_builds
        p.variants = ["openblas", "mkl"]
        p.lic = ("BSD-3-Clause", "BSD")

        def blas_build(p, v, bn, variant):
            return f"{bn}_{hsh('blas', v, bn, variant)}_{variant}"
        p.build_fn = blas_build

        def blas_deps(p, v, bn, t, variant, name=name):
            build = f"{bn}_{hsh('blas', v, bn, variant)}_{variant}"
            if name == "libblas":
                impl = ch.pkgs["libopenblas" if variant == "openblas" else "mkl"]
                deps = [pin("x", impl.name, impl.version_at(t))]
                cons = [f"{m} {v} {bn}*_{variant}" for m in members[1:]] + [f"blas * {variant}"]
            else:
                deps = [f"libblas {v} {build}"]
                cons = [f"{m} {v} {bn}*_{variant}" for m in members[1:] if m != name] + [f"blas * {variant}"]
                if name in ("liblapacke",):
                    deps += [f"libcblas {v} {build}", f"liblapack {v} {build}"]
            return deps, cons
        p.deps_fn = blas_deps
    # python_abi: one version per minor, build numbers 0..5 per ABI tag.
    abi_versions = [f"3.{m}" for m, *_ in PY_MINORS]
    abi_times = [t for _, t, _, _ in PY_MINORS]
    abi = ch.add(Pkg("python_abi", "c", abi_versions, abi_times, "none"))
    abi.auto = False
    abi.lic = ("BSD-3-Clause", "BSD")
    abi.builds = [list(range(6)) for _ in abi_versions]
    abi.build_fn = lambda p, v, bn, tag: f"{bn}_{tag}"
    # cuda-version and the CUDA components.
    rel_versions = [r for r, _ in CUDA_RELEASES]
    rel_times = [t for _, t in CUDA_RELEASES]
    cv = ch.add(Pkg("cuda-version", "nag", ["10.2", "11.2", "11.8"] + rel_versions,
                    [0.3, 0.5, 0.65] + rel_times, "xy", extra=[CUDA_EXTRA]))
    cv.builds = None
    cv.deps_fn = lambda p, v, bn, t: ([], [f"__cuda >={vnums(v)[0]}", f"cudatoolkit {v}|{v}.*"])
    cv.lic = ("LicenseRef-NVIDIA-End-User-License-Agreement", "PROPRIETARY")
    tk = ch.add(Pkg("cudatoolkit", "c", ["10.2.89", "11.2.2", "11.8.0"], [0.3, 0.5, 0.65], "xy"))
    tk.deps = [("lit", "__cuda >=11", None, 0.5, 2.0)]
    tk.lic = cv.lic
    for comp, (major, off, has_sub) in CUDA_COMPONENTS.items():
        versions, extra = [], []
        for i, (rel, _) in enumerate(CUDA_RELEASES):
            minor = int(rel.split(".")[1])
            versions.append(f"{major}.{minor + off}.{40 + 7 * i + len(comp)}" if comp != "libcublas"
                            else f"{major}.{minor}.{i + 1}.{2 + i}")
        extra.append(f"{major + 1}.0.{30 + len(comp)}" if comp != "libcublas" else f"{major + 1}.0.1.1")
        p = ch.add(Pkg(comp, "c", versions, rel_times, "x", extra=extra))
        p.lic = cv.lic
        p.size_mu = 17.5
        p.deps = [("lit", GLIBC_CUDA, None, 0.0, 2.0)] + [("pkg", d, None, 0, 2.0) for d in CUDA_COMPONENT_DEPS.get(comp, [])]
        p.deps += [("pkg", "libstdcxx", None, 0, 2.0), ("pkg", "libgcc", None, 0, 2.0)]
        p.auto = False
        p.deps_fn = cuda_component_deps(ch, comp, has_sub)
        if has_sub:
            sub = ch.add(Pkg(comp + "_linux-64", "nag", versions, rel_times, "none", extra=extra))
            sub.deps_fn = cuda_component_deps(ch, None, False)
            sub.lic = cv.lic
    for name, latest, n in (("cudnn", "9.3.0.75", 12), ("nccl", "2.23.4.1", 20)):
        p = ch.add(Pkg(name, "c", history(latest, n, rng), spread(0.45, n), "x"))
        p.lic = cv.lic
        p.size_mu = 19.0
        p.deps = [("lit", GLIBC_CUDA, None, 0.0, 2.0), ("pkg", "libstdcxx", None, 0, 2.0), ("pkg", "libgcc", None, 0, 2.0)]
        p.auto = False
        if name == "cudnn":
            p.deps += [("pkg", "cuda-nvrtc", None, 0.72, 2.0), ("pkg", "libcublas", None, 0.72, 2.0),
                       ("pkg", "libzlib", None, 0, 2.0)]

        def cudnn_deps(p, v, bn, t):
            if t < 0.72:
                return [f"cudatoolkit {vnums(cv.version_at(t))[0]}.*"], []
            return ["cuda-version >=12,<13.0a0"], []
        p.deps_fn = cudnn_deps
    magma = ch.add(Pkg("libmagma", "c", history("2.8.0", 8, rng), spread(0.5, 8), "xyz"))
    magma.deps = [parse_dep(d) for d in "cuda-cudart@0.72 libcublas@0.72 libcusparse@0.72 _openmp_mutex:lbv libstdcxx libblas libcblas liblapack".split()]
    magma.deps_fn = lambda p, v, bn, t: ([f"cudatoolkit {vnums(cv.version_at(t))[0]}.*"] if t < 0.72 else
                                         [pin("xy", "cuda-version", cv.version_at(t))], [])
    magma.lic = ("BSD-3-Clause", "BSD")
    add_torch(ch)
    # conda-forge's microarchitecture levels select on __archspec with bracket specs and regexes.
    march = ch.add(Pkg("_x86_64-microarch-level", "c", ["1", "2", "3", "4"], [0.9, 0.9, 0.9, 0.9], "lbv"))
    march.auto = False
    march.lic = ("BSD-3-Clause", "BSD")
    levels = {2: "x86_64_v2|nehalem|westmere|sandybridge|ivybridge|silvermont",
              3: "x86_64_v3|haswell|broadwell|skylake|zen|zen2|zen3",
              4: "x86_64_v4|skylake_avx512|cascadelake|icelake|sapphirerapids|zen4"}
    march.deps_fn = lambda p, v, bn, t: (
        ["__archspec 1 x86_64"] if v == "1" else
        [f"__archspec[version='1.*', build='^({'|'.join(levels[k] for k in range(int(v), 5))})$']"], [])


def cuda_component_deps(ch, comp, has_sub):
    def deps(p, v, bn, t):
        rel = cv_release_of(p, v)
        out = [pin("xy", "cuda-version", rel)]
        if has_sub:
            out.append(f"{comp}_linux-64 {v}.*")
        return out, []
    return deps


def cv_release_of(p, v):
    if v in p.extra:
        return CUDA_EXTRA
    return CUDA_RELEASES[p.versions.index(v)][0]


TORCH_VERSIONS = ["1.8.0", "1.9.1", "1.10.2", "1.11.0", "1.12.1", "1.13.1", "2.0.0", "2.0.1", "2.1.0",
                  "2.1.2", "2.3.0", "2.3.1", "2.4.0", "2.4.1", "2.5.1", "2.6.0"]
TORCH_EXTRA = "2.7.0"


def torch_variant_cuda(v):
    """The CUDA variants pytorch `v` was built with (None = CPU)."""
    if v == TORCH_EXTRA:
        return [None, "130"]
    n = vnums(v)
    if n < [2, 1]:
        return [None, "118"]
    if n < [2, 6]:
        return [None, "120"]
    return [None, "126"]


def add_torch(ch):
    rng = ch.rng
    times = spread(0.35, len(TORCH_VERSIONS))
    lt = ch.add(Pkg("libtorch", "c", TORCH_VERSIONS, times, "xyz", extra=[TORCH_EXTRA]))
    pt = ch.add(Pkg("pytorch", "py", TORCH_VERSIONS, times, "xyz", extra=[TORCH_EXTRA]))
    pt.py_max = 12
    for p in (lt, pt):
        p.lic = ("BSD-3-Clause", "BSD")
        p.size_mu = 19.5
        p.builds = [[0, 1] if i % 2 else [0] for i in range(len(TORCH_VERSIONS))] + [[0]]
        p.variants = "torch"
        p.auto = False
    gpu = ch.add(Pkg("pytorch-gpu", "c", TORCH_VERSIONS[6:], times[6:], "none", extra=[TORCH_EXTRA]))
    cpu = ch.add(Pkg("pytorch-cpu", "c", TORCH_VERSIONS[6:], times[6:], "none", extra=[TORCH_EXTRA]))
    gpu.auto = cpu.auto = False
    gpu.deps_fn = lambda p, v, bn, t: ([f"pytorch {v} cuda*"], [])
    cpu.deps_fn = lambda p, v, bn, t: ([f"pytorch {v} cpu*"], [])
    gpu.build_fn = lambda p, v, bn, py: f"cuda{torch_variant_cuda(v)[1]}{hsh('pytorch-gpu', v, bn)}_{bn}"
    cpu.build_fn = lambda p, v, bn, py: f"cpu{hsh('pytorch-cpu', v, bn)}_{bn}"
    tri = ch.add(Pkg("triton", "py", history("3.2.0", 8, rng), spread(0.8, 8), "star", extra=["3.3.0"]))
    tri.py_max = 12
    tri.lic = ("MIT", "MIT")
    tri.size_mu = 18.5
    tri.deps = [parse_dep(d) for d in
                "__glibc~>=2.28,<3.0.a0 libgcc cuda-cuobjdump cuda-cudart cuda-cupti cuda-nvdisasm libstdcxx libzlib zstd setuptools filelock".split()]
    tri.deps_fn = lambda p, v, bn, t: (["cuda-version >=13.0,<14" if v == "3.3.0" else "cuda-version >=12.6,<13"], [])
    tri.auto = False
    tri.build_fn = lambda p, v, bn, py: f"cuda{'130' if v == '3.3.0' else '126'}py3{py}{hsh('triton', v, bn, py)}_{bn}"
    for name, extra in (("torchvision", "0.22.0"), ("torchaudio", "2.7.0")):
        vs = [torchvision_version(v) for v in TORCH_VERSIONS] if name == "torchvision" else TORCH_VERSIONS[:]
        p = ch.add(Pkg(name, "py", vs, times, "none", extra=[extra]))
        p.py_max = 12
        p.lic = ("BSD-3-Clause", "BSD")
        p.size_mu = 16.0
        p.variants = "torchdep"
        p.builds = [[0, 1] if i % 3 == 2 else [0] for i in range(len(vs))] + [[0, 1]]
        p.auto = False


def torchvision_version(v):
    n = vnums(v)
    return f"0.{n[1] + (1 if n[0] == 1 else 15)}.{n[2]}"


def torch_deps(ch, p, v, bn, t, cu, py):
    """depends/constrains of libtorch and pytorch."""
    at = lambda name, style=None: pin(style or ch.pkgs[name].pin, name, ch.pkgs[name].version_at(t))
    deps = [GLIBC_CUDA if cu else GLIBC, "_openmp_mutex >=4.5", at("libgcc"), at("libstdcxx"),
            at("mkl"), "libblas * *mkl", at("libcblas"), at("liblapack"), at("libuv"), at("sleef"),
            at("libabseil"), at("libprotobuf")]
    if v == TORCH_EXTRA:
        deps = [("libprotobuf >=5.29.3,<5.29.4.0a0" if d.startswith("libprotobuf") else d) for d in deps]
        deps = [("libabseil >=20250127.0,<20250128.0a0" if d.startswith("libabseil") else d) for d in deps]
    if cu == "118":
        deps += ["cudatoolkit >=11.8,<12", "cudnn >=8.8.0.121,<9.0a0", "nccl >=2.18.1.1,<3.0a0", "__cuda"]
    elif cu:
        rel = "13.0" if cu == "130" else f"12.{int(cu[2:])}"
        pick = (lambda c: ch.pkgs[c].extra[0]) if cu == "130" else (
            lambda c: ch.pkgs[c].versions[[r for r, _ in CUDA_RELEASES].index(rel)] if rel in [r for r, _ in CUDA_RELEASES]
            else ch.pkgs[c].versions[0])
        deps += ["__cuda", f"cuda-version >={rel},<{vnums(rel)[0] + 1}"]
        for c in ("cuda-cudart", "cuda-cupti", "cuda-nvrtc", "cuda-nvtx", "libcublas", "libcufft", "libcufile",
                  "libcurand", "libcusolver", "libcusparse"):
            deps.append(pin("x", c, pick(c)))
        deps += [at("cudnn"), at("nccl"), at("libmagma")]
    if p.name == "pytorch":
        lt_build = torch_build(ch.pkgs["libtorch"], v, bn, cu, None)
        deps += [f"libtorch {v} {lt_build}", f"python >=3.{py},<3.{py + 1}.0a0", f"python_abi 3.{py}.* *_cp3{py}",
                 "filelock", "fsspec", "jinja2", "networkx", at("numpy", "np"), "optree >=0.13.0" if t > 0.8 else "typing_extensions",
                 "pybind11-abi ==4", "setuptools <76" if t > 0.8 else "setuptools", "sympy >=1.13.1,!=1.13.2",
                 "typing_extensions >=4.10.0"]
        if cu and cu != "118":
            deps.append("triton 3.3.0.*" if v == TORCH_EXTRA else "triton 3.2.0.*")
        kind = "gpu" if cu else "cpu"
        other = "cpu" if cu else "gpu"
        cons = [f"pytorch-{kind} =={v}", f"pytorch-{other} ==99999999"]
        return deps, cons
    return deps, []


def torch_build(p, v, bn, cu, py):
    variant = f"cuda{cu}_mkl" if cu else "cpu_mkl"
    number = bn + (200 if cu else 0)
    if py is None:
        return f"{variant}_{hsh(p.name, v, bn, cu)}_{number}"
    return f"{variant}_py3{py}_{hsh(p.name, v, bn, cu, py)}_{number}"


# --------------------------------------------------------------------------------------------
# Filler names.
SYL = ("ka ra to mi no su be la vo chi de ga pi lo fu ne zo tra ble xen qua dro vin mar sel pol "
       "kit rum sto bar fen lix mor gal tep wiz yar hob nix ost pra cor dun elm fir gro hal").split()
NOARCH_PREFIXES = ["", "", "", "", "py", "types-", "pytest-", "sphinx-", "jupyterlab-", "mkdocs-",
                   "django-", "flake8-", "napari-", "sphinxcontrib-", "ros-humble-"]


def filler_name(rng, kind, taken):
    while True:
        word = "".join(rng.choice(SYL) for _ in range(rng.choice((2, 2, 3, 3, 4))))
        if rng.random() < 0.25:
            word += "-" + "".join(rng.choice(SYL) for _ in range(2))
        if kind == "c":
            name = rng.choice(("lib", "lib", "", "", "xorg-", "gst-")) + word
        elif kind == "py":
            name = rng.choice(("", "", "py", "python-")) + word
        elif kind in ("r", "nar"):
            name = "r-" + word
        elif kind == "nag":
            name = rng.choice(("font-", "", "")) + word + rng.choice(("-data", "", "-docs"))
        else:
            name = rng.choice(NOARCH_PREFIXES) + word
        if name not in taken:
            taken.add(name)
            return name


def lognormal_int(rng, mu, sigma, lo, hi):
    return max(lo, min(hi, int(math.exp(rng.gauss(mu, sigma)))))


def add_filler(ch, linux_target, noarch_target):
    """Adds filler names until the expected record counts reach the targets."""
    rng = ch.rng
    taken = set(ch.pkgs)
    est = {"linux-64": 0, "noarch": 0}
    for p in ch.order:
        est[subdir_of(p)] += estimate_records(p)
    # R core, as filler's R packages need one.
    rv = ["3.5.1", "3.6.3", "4.0.5", "4.1.3", "4.2.3", "4.3.3", "4.4.2"]
    rb = ch.add(Pkg("r-base", "c", rv, spread(0.0, len(rv)), "xy"))
    rb.deps = [parse_dep(d) for d in "libstdcxx libgfortran5:lbv libblas liblapack readline ncurses libzlib liblzma bzip2 pcre2 icu libiconv".split()]
    rb.builds = [[0, 1, 2, 3] for _ in rv]
    rb.lic = ("GPL-2.0-or-later", "GPL2")
    pools = {"c": [n for n in ("libzlib", "openssl", "zstd", "bzip2", "liblzma", "libxml2", "libpng", "icu",
                               "libiconv", "libffi", "ncurses", "libjpeg-turbo", "libtiff", "freetype",
                               "libglib", "libabseil", "libprotobuf", "libcurl", "krb5", "libuuid")],
             "pyside": ["numpy", "packaging", "six", "requests", "setuptools", "typing_extensions", "pyyaml",
                        "jinja2", "python-dateutil", "pytz", "pandas", "scipy", "matplotlib-base", "attrs",
                        "click", "tqdm"],
             "r": ["r-base"]}
    for core in ("libcurl", "pyyaml", "attrs", "click", "tqdm"):
        if core not in ch.pkgs:
            kind = "c" if core == "libcurl" else ("py" if core == "pyyaml" else "nap")
            n = rng.randint(15, 60)
            latest = f"{rng.randint(1, 8)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
            p = ch.add(Pkg(core, kind, history(latest, n, rng), None, "x" if kind == "c" else "old"))
            p.times = spread(rng.uniform(0, 0.5), len(p.versions))
            p.deps = [parse_dep("libzlib"), parse_dep("openssl")] if kind == "c" else []
            p.lic = rng.choice(LICENSE_CHOICES)
            p.pypy = kind == "py"
            est[subdir_of(p)] += estimate_records(p)
    filler = {"c": [], "py": [], "r": [], "nap": [], "nar": [], "nag": []}
    linux_kinds = ["c"] * 45 + ["py"] * 40 + ["r"] * 15
    noarch_kinds = ["nap"] * 80 + ["nar"] * 12 + ["nag"] * 8
    while est["linux-64"] < linux_target or est["noarch"] < noarch_target:
        if est["linux-64"] < linux_target and (est["noarch"] >= noarch_target or rng.random() < 0.42):
            kind = rng.choice(linux_kinds)
            nver = lognormal_int(rng, 2.0, 1.1, 1, 300)
        else:
            kind = rng.choice(noarch_kinds)
            nver = lognormal_int(rng, 1.75, 1.0, 1, 200)
        name = filler_name(rng, kind, taken)
        latest = (f"{rng.choice((0, 0, 1, 1, 2, 3, 4, 5, 7, 10, 22, 2023, 2024))}.{rng.randint(0, 25)}"
                  + (f".{rng.randint(0, 12)}" if rng.random() < 0.7 else ""))
        if kind in ("r", "nar") and rng.random() < 0.5:
            latest = latest.replace(".", "_", 1) if rng.random() < 0.2 else latest
        versions = history(latest, nver, rng)
        start = rng.uniform(0.0, 0.95)
        p = ch.add(Pkg(name, kind if kind not in ("r", "nar") else ("py" if kind == "r" else "nag"), versions,
                       spread(start, len(versions)), rng.choice(("x", "x", "xy", "lbv", "none")) if kind == "c" else "old"))
        p.lic = rng.choice(LICENSE_CHOICES)
        p.size_mu = rng.uniform(9.0, 16.0)
        if kind == "r" or kind == "nar":
            p.variants = "r"
        p.pypy = kind == "py" and rng.random() < 0.2
        # depends: core libraries and earlier filler names, biased to the earliest (popular) ones.
        deps = []
        same = filler["nar" if kind in ("r", "nar") else ("c" if kind == "c" else "nap")]
        k = rng.choice((0, 1, 1, 2, 2, 3, 4, 5)) if kind != "c" else rng.choice((0, 0, 1, 1, 2, 3))
        for _ in range(k):
            if same and rng.random() < 0.8:
                deps.append(same[int(len(same) * rng.random() ** 4)])
            elif kind == "c" or kind == "py":
                deps.append(rng.choice(pools["c"]))
            elif kind == "nap":
                deps.append(rng.choice(pools["pyside"]))
        if kind == "c" and rng.random() < 0.5:
            deps.append("libstdcxx")
        if kind == "py" and rng.random() < 0.35:
            deps.append("numpy")
        if kind == "r" or kind == "nar":
            deps.append("r-base")
        if kind == "py" and filler["nap"]:
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                deps.append(filler["nap"][int(len(filler["nap"]) * rng.random() ** 4)])
        if kind == "nap" and rng.random() < 0.02:
            deps.append("__unix")
        seen = set()
        p.deps = []
        for d in deps:
            if d in seen or d == name:
                continue
            seen.add(d)
            since = rng.uniform(start, 1.0) if rng.random() < 0.2 else 0.0
            p.deps.append(("pkg", d, "np" if d == "numpy" else None, since, 2.0) if not d.startswith("__")
                          else ("lit", d, None, 0.0, 2.0))
        if rng.random() < 0.1:
            p.cons = [f"{rng.choice(list(ch.pkgs))} >=1.0"]
        if kind == "c" and rng.random() < 0.01:
            p.deps.append(("lit", f"_x86_64-microarch-level >={rng.choice((2, 3, 4))}", None, 0.9, 2.0))
        if kind in ("c", "py") and rng.random() < 0.03:
            p.track = rng.choice(("openblas_openmp", "blas_mkl", "pypy", "debug", "cuda"))
        filler[kind].append(name)
        est[subdir_of(p)] += estimate_records(p)
    return filler


def subdir_of(p):
    return "noarch" if p.kind in ("nap", "nag") else "linux-64"


def py_minors_at(p, t):
    return [m for m, first, last, _ in PY_MINORS if first <= t <= last + 0.02 and p.py_min <= m <= p.py_max]


def build_numbers(p, rng):
    if p.builds is None:
        nb = []
        for i in range(len(p.versions) + len(p.extra)):
            r = rng.random()
            nb.append([0] if r < 0.6 else ([0, 1] if r < 0.85 else [0, 1, 2, 3][:rng.randint(3, 4)]))
        p.builds = nb
    while len(p.builds) < len(p.versions) + len(p.extra):
        p.builds.append([0])
    return p.builds


def estimate_records(p):
    """Records emit_package will write for `p`, about (calibrated on the generator's output)."""
    n = len(p.versions) + len(p.extra)
    if p.kind == "py":
        per = 2.7 if p.variants == "r" else (9.4 if p.pypy else 7.0)
    else:
        per = 1.7
    return int(n * per)


# --------------------------------------------------------------------------------------------
# Rendering.
def render(ch, p, subdir, fn, build, bn, version, t, deps, cons, track=None, noarch=None):
    rng = ch.rng
    ts = T0_MS + int(min(t, 1.0) * (T1_MS - T0_MS)) + rng.randint(0, 86_400_000)
    size = int(math.exp(rng.gauss(p.size_mu, 1.0)))
    lic, fam = p.lic
    parts = ['{\n   "build": "', build, '",\n   "build_number": ', str(bn), ',\n']
    if cons:
        parts.append('   "constrains": [\n    "' + '",\n    "'.join(cons) + '"\n   ],\n')
    if deps:
        parts.append('   "depends": [\n    "' + '",\n    "'.join(deps) + '"\n   ],\n')
    else:
        parts.append('   "depends": [],\n')
    parts += ['   "license": "', lic, '",\n   "license_family": "', fam, '",\n   "md5": "',
              "%032x" % rng.getrandbits(128), '",\n   "name": "', p.name, '",\n']
    if noarch:
        parts += ['   "noarch": "', noarch, '",\n']
    parts += ['   "sha256": "', "%064x" % rng.getrandbits(256), '",\n   "size": ', str(size),
              ',\n   "subdir": "', subdir, '",\n   "timestamp": ', str(ts), ',\n']
    if track:
        parts += ['   "track_features": "', track, '",\n']
    parts += ['   "version": "', version, '"\n  }']
    text = "".join(parts)
    recs = ch.records[subdir]
    if t >= CONDA_SINCE:
        recs[fn + ".conda"] = text
        if rng.random() < 0.004:   # a few artifacts exist in both formats; .conda wins
            recs[fn + ".tar.bz2"] = text
    else:
        recs[fn + ".tar.bz2"] = text
    ch.counts[subdir] += 1


def dep_strings(ch, p, t):
    out = []
    if p.auto and p.kind in ("c", "py"):
        g = ch.pkgs["libgcc"]
        if t >= LIBGCC_SINCE:
            out.append(pin("lb", "libgcc", g.version_at(t)))
        else:
            out.append(pin("lb", "libgcc-ng", g.version_at(t)))
        if t >= GLIBC_SINCE:
            out.append(GLIBC)
    for kind, what, style, since, until in p.deps:
        if not (since <= t < until):
            continue
        if kind == "lit":
            out.append(what)
            continue
        if kind == "con":
            continue
        d = ch.pkgs.get(what)
        if d is None:
            out.append(what)
            continue
        st = style or d.pin
        if st == "old":
            out.append(pin("lbxy", what, d.version_at(max(0.0, t - 0.3))))
        elif what in ("libstdcxx",) and t < LIBGCC_SINCE:
            out.append(pin("lb", "libstdcxx-ng", d.version_at(t)))
        else:
            out.append(pin(st, what, d.version_at(t)))
    for dep, until in p.hist:
        if t < until:
            out.append(dep)
    return out


def emit_package(ch, p):
    rng = ch.rng
    subdir = subdir_of(p)
    builds = build_numbers(p, rng)
    allv = p.versions + p.extra
    for i, v in enumerate(allv):
        t0 = p.times[i] if i < len(p.versions) else 1.0
        t1 = p.times[i + 1] if i + 1 < len(p.times) else 1.0
        nbs = builds[i]
        for j, bn in enumerate(nbs):
            t = t0 + (t1 - t0) * j / len(nbs)
            if i >= len(p.versions) - 1 and j == len(nbs) - 1:
                t = 1.0
            emit_build(ch, p, subdir, v, bn, t)


def python_pins(py, tag=None):
    if tag is None:
        return [f"python >=3.{py},<3.{py + 1}.0a0", f"python_abi 3.{py}.* *_cp3{py}"]
    if tag == "t":
        return [f"python >=3.{py},<3.{py + 1}.0a0 *_cp3{py}t", f"python_abi 3.{py}.* *_cp3{py}t"]
    return [f"python >=3.{py},<3.{py + 1}.0a0 *_pypy", f"python_abi 3.{py} *_pypy3{py}_pp73"]


def emit_build(ch, p, subdir, v, bn, t):
    name = p.name
    if p.variants == "torch":
        for cu in torch_variant_cuda(v):
            if name == "libtorch":
                deps, cons = torch_deps(ch, p, v, bn, t, cu, None)
                render_named(ch, p, subdir, torch_build(p, v, bn, cu, None), bn + (200 if cu else 0), v, t,
                             deps, cons)
            else:
                for py in py_minors_at(p, t) if v != TORCH_EXTRA else [10, 11, 12]:
                    if py < 8 and vnums(v) >= [2]:
                        continue
                    deps, cons = torch_deps(ch, p, v, bn, t, cu, py)
                    render_named(ch, p, subdir, torch_build(p, v, bn, cu, py), bn + (200 if cu else 0), v, t, deps, cons)
        return
    if p.variants == "torchdep":
        idx = (p.versions + p.extra).index(v)
        tv = (TORCH_VERSIONS + [TORCH_EXTRA])[idx]
        for cu in torch_variant_cuda(tv):
            for py in py_minors_at(p, t) if tv != TORCH_EXTRA else [10, 11, 12]:
                if py < 8 and vnums(tv) >= [2]:
                    continue
                tn = vnums(tv)
                deps = dep_strings(ch, p, t) + python_pins(py)
                deps += [GLIBC_CUDA if cu else GLIBC, pin("lb", "libgcc", ch.pkgs["libgcc"].version_at(t)),
                         pin("lb", "libstdcxx", ch.pkgs["libgcc"].version_at(t)),
                         f"pytorch {tn[0]}.{tn[1]}.* {'cuda' if cu else 'cpu'}*",
                         f"libtorch {tn[0]}.{tn[1]}.*", pin("np", "numpy", ch.pkgs["numpy"].version_at(t))]
                if name == "torchvision":
                    deps += [pin("x", "libjpeg-turbo", ch.pkgs["libjpeg-turbo"].version_at(t)),
                             pin("xy", "libpng", ch.pkgs["libpng"].version_at(t)),
                             pin("x", "libwebp-base", ch.pkgs["libwebp-base"].version_at(t)),
                             "pillow >=5.3.0,!=8.3.0,!=8.3.1", "requests"]
                if cu and cu != "118":
                    rel = "13.0" if cu == "130" else "12.6"
                    deps += ["__cuda", f"cuda-version >={rel},<{vnums(rel)[0] + 1}"]
                    for c in ("cuda-cudart", "libcublas", "libcusolver", "libcusparse"):
                        comp = ch.pkgs[c]
                        deps.append(pin("x", c, comp.extra[0] if cu == "130" else comp.versions[6]))
                elif cu:
                    deps += ["cudatoolkit >=11.8,<12", "__cuda"]
                variant = f"cuda{cu}" if cu else "cpu"
                build = f"{variant}_py3{py}{hsh(name, v, bn, cu, py)}_{bn + (200 if cu else 0)}"
                render_named(ch, p, subdir, build, bn + (200 if cu else 0), v, t, deps, [])
        return
    if p.name == "_openmp_mutex":
        for build, number, dep in p.variants:
            render_named(ch, p, subdir, build, number, v, 0.1 * number,
                         ["_libgcc_mutex 0.1 conda_forge", dep], [])
        return
    if p.name == "python_abi":
        py = vnums(v)[1]
        tags = [(f"cp3{py}", None, [f"python 3.{py}.* *_cpython"])]
        tags += [(f"pypy3{py}_pp73", "pypy", [f"python 3.{py}.* *_73_pypy"]) for m, *_ in PYPY if m == py]
        if py == 13:
            tags.append(("cp313t", None, ["python 3.13.* *_cp313t"]))
        for tag, track, cons in tags:
            render_named(ch, p, subdir, p.build_fn(p, v, bn, tag), bn, v, t, [], cons, track=track)
        return
    if isinstance(p.variants, list) and p.name.startswith("lib") and p.name[3:] in ("blas", "cblas", "lapack", "lapacke"):
        for variant in p.variants:
            deps, cons = p.deps_fn(p, v, bn, t, variant)
            deps = [GLIBC] + deps if t >= GLIBC_SINCE else deps
            render_named(ch, p, subdir, p.build_fn(p, v, bn, variant), bn, v, t, deps, cons)
        return
    deps = dep_strings(ch, p, t)
    cons = list(p.cons) + [what for kind, what, _, since, until in p.deps if kind == "con" and since <= t < until]
    if p.deps_fn:
        d, c = p.deps_fn(p, v, bn, t)
        deps += d
        cons += c
    noarch = None
    if p.kind == "nap":
        noarch = "python"
        minor = [m for m, first, last, _ in PY_MINORS if first <= max(t - 0.05, 0)]
        pmin = max(minor[-4] if len(minor) >= 4 else minor[0], 9 if t > 0.85 else 6)
        if p.name in ("pysocks", "sympy"):
            for plat, extra_dep in (("__unix", ["__unix"]), ("__win", ["__win"])):
                more = (["gmpy2 >=2.0.8", "mpmath >=0.19"] if p.name == "sympy" else [])
                more = [m for m in more if not (plat == "__win" and m.startswith("gmpy2"))]
                build = f"pyh{hsh(p.name, plat)[1:]}_{bn}"
                render_named(ch, p, subdir, build, bn, v, t, [f"python >=3.{pmin}"] + extra_dep + more + deps, cons,
                             noarch=noarch)
            return
        build = f"pyhd8ed1ab_{bn}"
        if (len(p.name) + bn) % 4 == 0:
            build = f"py{hsh(p.name, v, bn)}_{bn}"
        render_named(ch, p, subdir, build, bn, v, t, [f"python >=3.{pmin}"] + deps, cons, noarch=noarch)
        return
    if p.kind == "nag":
        noarch = "generic"
        if p.variants == "r":
            rbase = ch.pkgs["r-base"].version_at(t)
            rn = vnums(rbase)
            deps = [f"r-base >={rn[0]}.{rn[1]},<{rn[0]}.{rn[1] + 1}.0a0"] + [d for d in deps if not d.startswith("r-base")]
            build = f"r{rn[0]}{rn[1]}hc72bb7e_{bn}"
        else:
            build = p.build_fn(p, v, bn, None) if p.build_fn else f"{hsh(p.name, v, bn)}_{bn}"
        render_named(ch, p, subdir, build, bn, v, t, deps, cons, noarch=noarch)
        return
    if p.kind == "py":
        if p.variants == "r":
            rb = ch.pkgs["r-base"]
            for rbase in sorted({rb.version_at(t), rb.version_at(max(0.0, t - 0.12))}):
                rn = vnums(rbase)
                d = [f"r-base >={rn[0]}.{rn[1]},<{rn[0]}.{rn[1] + 1}.0a0"] + [x for x in deps if not x.startswith("r-base")]
                build = f"r{rn[0]}{rn[1]}{hsh(p.name, v, bn, rbase)}_{bn}"
                render_named(ch, p, subdir, build, bn, v, t, d, cons)
            return
        for py in py_minors_at(p, t):
            build = p.build_fn(p, v, bn, py) if p.build_fn else f"py3{py}{hsh(p.name, v, bn, py)}_{bn}"
            render_named(ch, p, subdir, build, bn, v, t, deps + python_pins(py), cons)
            if p.track and bn == 0:
                build = f"py3{py}{p.track}{hsh(p.name, v, bn, py, p.track)}_{bn}"
                render_named(ch, p, subdir, build, bn, v, t, deps + python_pins(py), cons, track=p.track)
        if p.pypy:
            for py, _, _, since in PYPY:
                if t >= since:
                    build = f"py3{py}{hsh(p.name, v, bn, 'pypy', py)}_{bn}"
                    render_named(ch, p, subdir, build, bn, v, t, deps + python_pins(py, "pypy"), cons)
        if p.ft and t >= 0.9:
            build = f"py313{hsh(p.name, v, bn, 'ft')}_{bn}"
            render_named(ch, p, subdir, build, bn, v, t, deps + python_pins(13, "t"), cons)
        return
    build = p.build_fn(p, v, bn, None) if p.build_fn else f"{hsh(p.name, v, bn)}_{bn}"
    render_named(ch, p, subdir, build, bn, v, t, deps, cons)
    if p.track and bn == 0:   # a deprioritised variant build beside the normal one
        build = f"{p.track}_{hsh(p.name, v, bn, p.track)}_{bn}"
        render_named(ch, p, subdir, build, bn, v, t, deps, cons, track=p.track)


def render_named(ch, p, subdir, build, bn, v, t, deps, cons, track=None, noarch=None):
    render(ch, p, subdir, f"{p.name}-{v}-{build}", build, bn, v, t, deps, cons, track=track, noarch=noarch)


def emit_python(ch):
    """python itself: CPython 3.6-3.13 (3.13 also free-threaded), PyPy 3.9/3.10."""
    p = Pkg("python", "c", [], [], "none")
    p.lic, p.size_mu, p.auto = ("Python-2.0", "PSF"), 17.0, False
    ch.add(p)
    libs = ["bzip2", "libexpat", "libffi", "liblzma", "libnsl", "libsqlite", "libuuid", "libxcrypt", "libzlib",
            "ncurses", "openssl", "readline", "tk"]
    for minor, first, last, patches in PY_MINORS:
        for k in range(patches):
            v = f"3.{minor}.{k}"
            t = first + (min(last, 1.0) - first) * k / max(patches - 1, 1)
            if minor >= 12 and k == patches - 1:
                t = 1.0
            for bn in ([0, 1] if k % 3 == 0 else [0]):
                deps = []
                if t >= GLIBC_SINCE:
                    deps.append(GLIBC)
                deps.append(pin("lb", "libgcc" if t >= LIBGCC_SINCE else "libgcc-ng", ch.pkgs["libgcc"].version_at(t)))
                deps.append(pin("lbv", "ld_impl_linux-64", ch.pkgs["ld_impl_linux-64"].version_at(t - 0.3)))
                for lib in libs:
                    d = ch.pkgs[lib]
                    deps.append(pin(d.pin, lib, d.version_at(t)))
                if minor >= 13:
                    deps.append(pin("x", "libmpdec", ch.pkgs["libmpdec"].version_at(t)))
                    deps.append(f"python_abi 3.{minor}.* *_cp3{minor}")
                    cons = []
                else:
                    cons = [f"python_abi 3.{minor}.* *_cp3{minor}"]
                deps += ["tzdata", "pip"] if t > 0.3 else ["pip"] if t > 0.1 else []
                build = f"{hsh('python', v, bn)}_{bn}_cpython"
                render_named(ch, p, "linux-64", build, bn, v, t, sorted(deps), cons)
                if minor == 13:
                    ft = [d.replace("*_cp313", "*_cp313t") for d in deps]
                    build = f"{hsh('python', v, bn, 't')}_{bn + 100}_cp313t"
                    render_named(ch, p, "linux-64", build, bn + 100, v, t, sorted(ft), [], track="freethreading")
    for minor, pyver, pypyver, since in PYPY:
        for bn in (0, 1):
            build = f"{bn}_73_pypy"
            deps = [f"pypy3.{minor} {pypyver}.*", f"python_abi 3.{minor} *_pypy3{minor}_pp73"]
            render_named(ch, p, "linux-64", build, bn, pyver, since + 0.1 * bn, deps, [], track="pypy")


def add_history(ch, filler, rng):
    """Old versions of stack packages depended on names that later left: the request's closure
    over all records is larger than its answer, as on conda-forge."""
    names = filler["c"] + filler["py"] + filler["nap"]
    for p in ch.order[:ch.nstack]:
        if p.name in ("python",) or not names or len(p.versions) < 4:
            continue
        if p.name.startswith("_") or p.family or rng.random() > 0.6:
            continue
        for _ in range(rng.choice((1, 1, 2, 3))):
            d = names[int(len(names) * rng.random() ** 1.5)]
            if subdir_of(ch.pkgs[d]) == "linux-64" and subdir_of(p) == "noarch":
                continue
            until = rng.uniform(p.times[0], p.times[0] + (1.0 - p.times[0]) * 0.6)
            p.hist.append((d, until))


def closure(ch, roots):
    """Names reachable from `roots` through any record's depends (what a lazy loader must read)."""
    deps_by_name = {}
    for subdir in ("linux-64", "noarch"):
        for text in ch.records[subdir].values():
            name = text[text.index('"name": "') + 9:]
            name = name[:name.index('"')]
            start = text.find('"depends": [\n')
            if start < 0:
                continue
            end = text.index("]", start)
            for line in text[start + 13:end].split("\n"):
                line = line.strip().strip(",").strip('"')
                if line:
                    deps_by_name.setdefault(name, set()).add(line.split(" ")[0])
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(deps_by_name.get(n, ()))
    return seen


def write_subdir(ch, outdir, subdir, zstd_level):
    os.makedirs(outdir, exist_ok=True)
    recs = ch.records[subdir]
    tar = sorted(fn for fn in recs if fn.endswith(".tar.bz2"))
    conda = sorted(fn for fn in recs if fn.endswith(".conda"))
    path = os.path.join(outdir, "repodata.json")
    with open(path + ".tmp", "w") as f:
        f.write('{\n "info": {\n  "subdir": "%s"\n },\n "packages": {\n' % subdir)
        f.write(",\n".join(f'  "{fn}": {recs[fn]}' for fn in tar))
        f.write('\n },\n "packages.conda": {\n')
        f.write(",\n".join(f'  "{fn}": {recs[fn]}' for fn in conda))
        f.write('\n },\n "removed": [\n')
        f.write(",\n".join('  "%s"' % fn for fn in sorted(ch.removed[subdir])))
        f.write('\n ],\n "repodata_version": 1\n}\n')
    os.replace(path + ".tmp", path)
    subprocess.run(["zstd", "-q", "-f", f"-{zstd_level}", "-T0", path, "-o", path + ".zst"], check=True)
    return os.path.getsize(path), os.path.getsize(path + ".zst"), len(tar), len(conda)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--channel", default="synth-forge")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--linux-records", type=int, default=480_000)
    ap.add_argument("--noarch-records", type=int, default=190_000)
    ap.add_argument("--zstd-level", type=int, default=3)
    ap.add_argument("--closure", nargs="*", default=None,
                    help="also print how many names are reachable from these names (slow)")
    args = ap.parse_args()
    started = time.time()
    ch = Channel(args.seed)
    parse_stack(ch)
    add_special(ch)
    ch.nstack = len(ch.order)
    filler = add_filler(ch, args.linux_records, args.noarch_records)
    add_history(ch, filler, ch.rng)
    emit_python(ch)
    for p in ch.order:
        if p.name != "python":
            emit_package(ch, p)
    for subdir in ("linux-64", "noarch"):
        fns = sorted(ch.records[subdir])
        for fn in ch.rng.sample(fns, 150):
            ch.removed[subdir].append(fn.rsplit("-", 1)[0] + "-" + "x" + fn.rsplit("-", 1)[1])
    names = {"linux-64": set(), "noarch": set()}
    for p in ch.order:
        names[subdir_of(p)].add(p.name)
    if args.closure:
        print(f"closure of {' '.join(args.closure)}: {len(closure(ch, args.closure))} names", file=sys.stderr)
    base = os.path.join(args.out, args.channel)
    for subdir in ("linux-64", "noarch"):
        size, zsize, ntar, nconda = write_subdir(ch, os.path.join(base, subdir), subdir, args.zstd_level)
        print(f"{subdir}: {ntar + nconda} records ({ntar} .tar.bz2, {nconda} .conda), "
              f"{len(names[subdir])} names, repodata.json {size / 1e6:.1f} MB, .zst {zsize / 1e6:.1f} MB",
              file=sys.stderr)
    print(f"names: {len(ch.pkgs)}; wrote {base} in {time.time() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
