#include "ocibuild/layer/layer_writer.hpp"

#include <utility>

namespace ocibuild::layer {
namespace {

/// Hashes and counts the uncompressed tar (the diff_id) on its way to the compressor.
class DiffIdTee final : public core::ByteSink {
public:
    explicit DiffIdTee(core::ByteSink& next) : next_(next) {}

    void write(const void* data, std::size_t size) override {
        hasher_.update(data, size);
        next_.write(data, size);
    }
    void finish() override { next_.finish(); }

    [[nodiscard]] std::uint64_t bytes() const noexcept { return hasher_.bytes(); }
    [[nodiscard]] core::Digest digest() { return hasher_.finish(); }

private:
    core::ByteSink& next_;
    core::Sha256 hasher_;
};

}  // namespace

LayerBlob write_layer(const store::Store& store, std::vector<TarEntry> entries, std::int64_t epoch,
                      const CompressionOptions& compression) {
    // tar → diff_id tee → compressor → blob writer (which hashes the compressed bytes itself).
    // Every stage streams, so memory stays flat whatever the layer's size. If anything throws, the
    // BlobWriter's destructor removes its temporary file and nothing becomes visible.
    store::BlobWriter blob = store.ingest();
    const std::unique_ptr<core::ByteSink> compressor = make_compressor(compression, blob);
    DiffIdTee tee(*compressor);
    write_tar(std::move(entries), epoch, tee);  // finishes tee → compressor → blob

    LayerBlob result;
    result.uncompressed_size = tee.bytes();
    result.diff_id = tee.digest();
    result.descriptor = blob.commit(oci::media_type::oci_layer_type(compression.kind));
    return result;
}

}  // namespace ocibuild::layer
