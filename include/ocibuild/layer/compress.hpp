#pragma once
// Compressors as ByteSinks: bytes in, compressed bytes out to the next sink. One fixed
// implementation, level and framing per kind, so the same input always gives the same blob:
//  - gzip: one gzip member (header MTIME 0, no name, OS 255, as Go writes it) made of 256 KiB
//    blocks deflated in parallel, each primed with the previous 32 KiB and sync-flushed, so the
//    bytes do not depend on the thread count (see gzip_parallel.hpp): ISA-L level 2 by default
//    (level 1 also ISA-L), zlib for levels 3-9;
//  - zstd: libzstd with checksum and content size off, always in multithreaded mode (≥ 1 worker):
//    with libzstd 1.5.4, 1, 2 or 4 workers give the same bytes, 0 workers (single-threaded mode)
//    different ones, so `threads` changes speed only.
#include <memory>

#include "ocibuild/core/sink.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::layer {

struct CompressionOptions {
    oci::Compression kind = oci::Compression::gzip;
    int level = 0;    // 0 = the kind's default (gzip 2 = ISA-L level 2, zstd 3)
    int threads = 0;  // 0 = hardware concurrency
};

/// A sink that compresses into `next` (which must outlive it). finish() flushes and finishes next.
/// A level out of range (gzip 1..9, zstd 1..max) → core::Error(invalid_input).
[[nodiscard]] std::unique_ptr<core::ByteSink> make_compressor(const CompressionOptions& options,
                                                              core::ByteSink& next);

/// A sink that decompresses gzip (concatenated members too) or zstd (detected from the magic
/// bytes) or passes plain bytes. Corrupt or truncated input → core::Error(invalid_input), the
/// latter from finish().
[[nodiscard]] std::unique_ptr<core::ByteSink> make_decompressor(core::ByteSink& next);

}  // namespace ocibuild::layer
