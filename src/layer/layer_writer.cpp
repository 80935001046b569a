#include "ocibuild/layer/layer_writer.hpp"

#include <utility>

namespace ocibuild::layer {
namespace {

/// Hashes (unless told not to) and counts the uncompressed tar on its way to the compressor.
class DiffIdTee final : public core::ByteSink {
public:
    DiffIdTee(core::ByteSink& next, bool hash) : next_(next), hash_(hash) {}

    void write(const void* data, std::size_t size) override {
        if (hash_) hasher_.update(data, size);
        bytes_ += size;
        next_.write(data, size);
    }
    void finish() override { next_.finish(); }

    [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] core::Digest digest() { return hasher_.finish(); }

private:
    core::ByteSink& next_;
    bool hash_;
    core::Sha256 hasher_;
    std::uint64_t bytes_ = 0;
};

}  // namespace

LayerBlob write_layer(const store::Store& store, std::vector<TarEntry> entries, std::int64_t epoch,
                      const CompressionOptions& compression) {
    // tar → diff_id tee → compressor → blob writer (which hashes the compressed bytes itself).
    // Every stage streams, so memory stays flat whatever the layer's size. If anything throws, the
    // BlobWriter's destructor removes its temporary file and nothing becomes visible.
    store::BlobWriter blob = store.ingest();
    const std::unique_ptr<core::ByteSink> compressor = make_compressor(compression, blob);
    // An uncompressed blob is the tar itself: the store's digest is the diff_id, so hash once.
    const bool plain = compression.kind == oci::Compression::none;
    DiffIdTee tee(*compressor, !plain);
    write_tar(std::move(entries), epoch, tee);  // finishes tee → compressor → blob

    LayerBlob result;
    result.uncompressed_size = tee.bytes();
    result.descriptor = blob.commit(oci::media_type::oci_layer_type(compression.kind));
    result.diff_id = plain ? result.descriptor.digest : tee.digest();
    return result;
}

}  // namespace ocibuild::layer
