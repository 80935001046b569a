#pragma once
// Private to src/layer: the parallel gzip compressor behind make_compressor(kind = gzip).
//
// Framing (pigz-style, one gzip member):
//   header 1f 8b 08 00 | MTIME 00000000 | XFL | OS ff
//   the input cut into fixed blocks of `block_size` bytes (the last one shorter, possibly empty);
//   each block deflated on its own, primed with the 32 KiB of input before it as the dictionary,
//   ending with a sync flush (an empty stored block, so the next block starts on a byte), the last
//   block ending the deflate stream instead;
//   trailer CRC-32 (the blocks' CRCs combined) | ISIZE.
// A block's bytes depend only on its input, its dictionary, the block size and the level, never on
// which thread compressed it or on how the caller sliced its writes, so any thread count gives the
// same blob. That is what keeps layer digests reproducible.
//
// Deflate engines, one per level (see docs/benchmarks.md, "Parallel gzip", for the measurements):
//   levels 1, 2: Intel ISA-L igzip (libisal 2.30), its levels 1 and 2, with a level buffer of 4096
//                tokens. Level 2 is the default. The token buffer size decides where ISA-L cuts
//                deflate blocks, so it is part of the format and fixed here.
//   levels 3..9: zlib deflate (1.2.13) at the same level, raw deflate, windowBits 15, memLevel 8,
//                default strategy.
// ISA-L level 3 is not offered: its output differs between CPUs (AVX-512, AVX2 and SSE code paths
// gave three different streams), while its levels 1 and 2 gave identical bytes on all three.
// ISA-L levels 1 and 2 need SSE4.2 (every x86-64 since 2008): without it ISA-L falls back to C code
// with another hash and other bytes.
#include <cstddef>
#include <memory>

#include "ocibuild/core/sink.hpp"

namespace ocibuild::layer::gzip {

/// Uncompressed bytes per block.
inline constexpr std::size_t block_size = 256 * 1024;

/// The level used when CompressionOptions::level is 0.
inline constexpr int default_level = 2;

/// `level` 1..9 (already checked). `threads` worker threads, at most 32 (more only cost memory);
/// 1 = compress on the caller's thread. At most 2 blocks per thread (~0.6 MB each) are in flight.
[[nodiscard]] std::unique_ptr<core::ByteSink> make_parallel_compressor(int level, int threads, core::ByteSink& next);

}  // namespace ocibuild::layer::gzip
