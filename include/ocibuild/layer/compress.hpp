#pragma once
// Compressors as ByteSinks: bytes in, compressed bytes out to the next sink. One fixed
// implementation, level and framing per kind, so the same input always gives the same blob:
//  - gzip: zlib deflate, header with MTIME 0, no name, OS 255 (as Go writes it);
//  - zstd: libzstd with checksums off, level recorded; the output must not depend on thread count.
#include <memory>

#include "ocibuild/core/sink.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::layer {

struct CompressionOptions {
    oci::Compression kind = oci::Compression::gzip;
    int level = 0;    // 0 = the kind's default (gzip 6, zstd 3)
    int threads = 0;  // 0 = hardware concurrency
};

/// A sink that compresses into `next` (which must outlive it). finish() flushes and finishes next.
[[nodiscard]] std::unique_ptr<core::ByteSink> make_compressor(const CompressionOptions& options,
                                                              core::ByteSink& next);

/// A sink that decompresses gzip or zstd (detected from the magic bytes) or passes plain bytes.
[[nodiscard]] std::unique_ptr<core::ByteSink> make_decompressor(core::ByteSink& next);

}  // namespace ocibuild::layer
