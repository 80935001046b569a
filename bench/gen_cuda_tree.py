#!/usr/bin/env python3
"""Generates a deterministic file tree shaped like an nvidia/cuda *-devel image layer.

Shape (fractions of --size-mb):
  ~78%  large shared libraries under usr/local/cuda-12.4/targets/x86_64-linux/lib, each with the
        usual symlink chain libfoo.so -> libfoo.so.12 -> libfoo.so.12.4.127, plus a few static .a
  ~10%  thousands of small C/C++ headers under .../include
  ~6%   executables under usr/local/cuda-12.4/bin and nvvm/bin
  ~6%   small text files under usr/share/doc and usr/share/man (many tiny ones)
plus the top-level symlinks (usr/local/cuda -> cuda-12.4, lib64 -> targets/x86_64-linux/lib).

Binary content imitates ELF: a mix of skewed-random "code" bytes, symbol-name string tables,
zero padding and incompressible (already compressed) sections, giving a gzip -6 ratio of about
0.4. Every block is generated fresh, so no compressor sees long-distance repeats that real
binaries would not have. Output depends only on --size-mb and --seed.

Usage: gen_cuda_tree.py --out DIR [--size-mb 300] [--seed 1]
"""
import argparse
import os
import random
import shutil
import sys

MTIME = 1_700_000_000
BLOCK = 16 * 1024

# Library names and their weight in the library budget (roughly as in CUDA 12.4).
LIBRARIES = [
    ("libcublasLt", 30), ("libcublas", 6), ("libcufft", 14), ("libcusparse", 12), ("libcusolver", 9),
    ("libcurand", 4), ("libnppif", 3), ("libnppig", 2), ("libnppist", 1), ("libnppc", 1),
    ("libnvrtc", 4), ("libnvrtc-builtins", 1), ("libnvJitLink", 3), ("libcudart", 1), ("libcupti", 2),
    ("libnvperf_host", 2), ("libcufftw", 1), ("libnvToolsExt", 1), ("libnvjpeg", 1), ("libcusolverMg", 2),
]
STATIC_LIBS = [("libcudart_static.a", 1), ("libcublas_static.a", 3), ("libcufft_static.a", 2)]
EXECUTABLES = ["nvcc", "ptxas", "cuobjdump", "nvdisasm", "nvlink", "fatbinary", "cudafe++", "nvprune",
               "cu++filt", "bin2c", "compute-sanitizer", "cicc", "nvprof", "ncu-cli"]
WORDS = ("cuda cublas cufft cusparse stream event kernel launch device host memory alloc free copy async "
         "handle status error context module function grid block thread warp shared global const "
         "texture surface graph node exec capture pool attribute pointer range vector matrix batched "
         "strided gemm gemv trsm syrk axpy scal dot nrm2 plan exec forward inverse complex real double "
         "float half bfloat16 int8 uint32 size_t workspace descriptor algorithm heuristic preference "
         "layout transpose epilogue bias relu gelu scale alpha beta leading dimension").split()


def skew_table(rng):
    """A 256-entry table mapping uniform bytes to an x86-code-like skewed distribution."""
    table = bytearray()
    common = [0x00, 0xff, 0x48, 0x89, 0x8b, 0x0f, 0xe8, 0x24, 0x44, 0x4c, 0x85, 0xc0, 0x74, 0x75,
              0x83, 0xc4, 0x01, 0x08, 0x10, 0x20]
    for i, b in enumerate(common):
        table += bytes([b]) * (20 if i < 2 else 8)
    while len(table) < 256:
        table.append(rng.randrange(256))
    return bytes(table[:256])


class Content:
    """Deterministic generators for the kinds of bytes found in binaries and sources."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.table = skew_table(self.rng)

    def code(self, n):  # skewed i.i.d. bytes: entropy-codable, few LZ matches (gzip ~0.73)
        return self.rng.randbytes(n).translate(self.table)

    def strings(self, n):  # symbol tables and rodata strings (gzip ~0.23)
        out = []
        size = 0
        choice, randrange = self.rng.choice, self.rng.randrange
        while size < n:
            name = "_ZN4cuda" + choice(WORDS) + str(randrange(100)) + "_" + choice(WORDS) + choice(WORDS) + "Ev\0"
            out.append(name)
            size += len(name)
        return "".join(out).encode()[:n]

    def random(self, n):  # compressed sections, fatbins (incompressible)
        return self.rng.randbytes(n)

    def binary(self, size):
        """ELF-like bytes: a header, then blocks of code, strings, zeros and compressed data."""
        parts = [b"\x7fELF\x02\x01\x01" + b"\0" * 9]
        total = 16
        rnd = self.rng.random
        while total < size:
            n = min(BLOCK, size - total)
            r = rnd()
            if r < 0.38:
                block = self.code(n)
            elif r < 0.75:
                block = self.strings(n)
            elif r < 0.93:
                block = bytes(n)
            else:
                block = self.random(n)
            parts.append(block)
            total += n
        return b"".join(parts)[:size]

    def header(self, name, size):
        """A C header of about `size` bytes."""
        guard = name.upper().replace(".", "_").replace("/", "_")
        lines = [f"/*\n * Copyright 1993-2024 NVIDIA Corporation. All rights reserved.\n */\n",
                 f"#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n"]
        size_now = sum(map(len, lines))
        choice, randrange = self.rng.choice, self.rng.randrange
        while size_now < size:
            fn = "cuda" + choice(WORDS).capitalize() + choice(WORDS).capitalize() + f"_v{randrange(1, 4)}"
            args = ", ".join(f"{choice(['int', 'size_t', 'void *', 'const float *', 'cudaStream_t'])} "
                             f"{choice(WORDS)}{i}" for i in range(randrange(1, 6)))
            line = f"/** \\brief {choice(WORDS)} {choice(WORDS)} {choice(WORDS)}. */\nextern __host__ cudaError_t CUDARTAPI {fn}({args});\n\n"
            lines.append(line)
            size_now += len(line)
        lines.append(f"#endif /* {guard} */\n")
        return "".join(lines).encode()

    def text(self, size):
        choice = self.rng.choice
        words = [choice(WORDS) for _ in range(max(1, size // 7))]
        lines = [" ".join(words[i:i + 10]) for i in range(0, len(words), 10)]
        return ("\n".join(lines) + "\n").encode()[:size]


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def split(rng, total, weights):
    """Splits `total` bytes by weights, with +-20% jitter."""
    jittered = [w * (0.8 + 0.4 * rng.random()) for w in weights]
    s = sum(jittered)
    return [max(4096, int(total * w / s)) for w in jittered]


def generate(out, size_mb, seed):
    rng = random.Random(seed)
    content = Content(seed + 1)
    total = size_mb * 1024 * 1024
    cuda = os.path.join(out, "usr/local/cuda-12.4")
    lib = os.path.join(cuda, "targets/x86_64-linux/lib")
    inc = os.path.join(cuda, "targets/x86_64-linux/include")
    for d in (lib, inc, os.path.join(cuda, "bin"), os.path.join(cuda, "nvvm/bin"),
              os.path.join(out, "usr/share/doc"), os.path.join(out, "usr/share/man/man1"), os.path.join(out, "etc/ld.so.conf.d")):
        os.makedirs(d, exist_ok=True)
    os.symlink("cuda-12.4", os.path.join(out, "usr/local/cuda"))
    os.symlink("targets/x86_64-linux/lib", os.path.join(cuda, "lib64"))
    os.symlink("targets/x86_64-linux/include", os.path.join(cuda, "include"))
    write(os.path.join(out, "etc/ld.so.conf.d/000_cuda.conf"), b"/usr/local/cuda/targets/x86_64-linux/lib\n")

    lib_budget, static_budget = int(total * 0.70), int(total * 0.08)
    for (name, _), size in zip(LIBRARIES, split(rng, lib_budget, [w for _, w in LIBRARIES])):
        full = f"{name}.so.12.4.127"
        write(os.path.join(lib, full), content.binary(size), 0o755)
        os.symlink(full, os.path.join(lib, f"{name}.so.12"))
        os.symlink(f"{name}.so.12", os.path.join(lib, f"{name}.so"))
    for (name, _), size in zip(STATIC_LIBS, split(rng, static_budget, [w for _, w in STATIC_LIBS])):
        write(os.path.join(lib, name), content.binary(size))

    # Headers: ~10% of the size in files of 1-16 KiB (about 12 per MB), in a few subdirectories.
    budget = int(total * 0.10)
    subdirs = ["", "crt", "thrust/detail", "cub/block", "cub/device", "cuda/std/detail", "cooperative_groups"]
    for s in subdirs:
        os.makedirs(os.path.join(inc, s), exist_ok=True)
    i = 0
    while budget > 0:
        size = rng.randint(1024, 16 * 1024)
        name = os.path.join(rng.choice(subdirs), f"{rng.choice(WORDS)}_{i}.h")
        data = content.header(name, size)
        write(os.path.join(inc, name), data)
        budget -= len(data)
        i += 1

    for (name, size) in zip(EXECUTABLES, split(rng, int(total * 0.06), [1] * len(EXECUTABLES))):
        directory = "nvvm/bin" if name == "cicc" else "bin"
        write(os.path.join(cuda, directory, name), content.binary(size), 0o755)

    # Docs and man pages: many tiny files, like a base distribution's /usr/share.
    budget = int(total * 0.06)
    i = 0
    while budget > 0:
        pkg = f"cuda-{rng.choice(WORDS)}-{i // 4}"
        d = os.path.join(out, "usr/share/doc", pkg)
        os.makedirs(d, exist_ok=True)
        size = rng.randint(200, 6000)
        write(os.path.join(d, f"copyright{i % 4 or ''}"), content.text(size))
        if i % 3 == 0:
            write(os.path.join(out, "usr/share/man/man1", f"{pkg}.{i}.1"), content.text(size // 2))
        budget -= size + size // 6
        i += 1

    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(out, (MTIME, MTIME))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to create (must not exist)")
    parser.add_argument("--size-mb", type=int, default=300, help="approximate total size in MiB (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if os.path.exists(args.out):
        sys.exit(f"{args.out} already exists")
    tmp = args.out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    generate(tmp, args.size_mb, args.seed)
    os.rename(tmp, args.out)  # complete or absent


if __name__ == "__main__":
    main()
