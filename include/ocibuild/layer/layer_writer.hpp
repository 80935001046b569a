#pragma once
// Entries → deterministic tar → diff_id hash → compressor → store, in one pass over the data.
#include <cstdint>
#include <vector>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/layer/compress.hpp"
#include "ocibuild/layer/tar_writer.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::layer {

struct LayerBlob {
    oci::Descriptor descriptor;  // compressed blob: OCI layer media type, digest, size
    core::Digest diff_id;        // sha256 of the uncompressed tar
    std::uint64_t uncompressed_size = 0;
};

/// Writes `entries` as a layer blob into `store`.
[[nodiscard]] LayerBlob write_layer(const store::Store& store, std::vector<TarEntry> entries,
                                    std::int64_t epoch, const CompressionOptions& compression);

}  // namespace ocibuild::layer
