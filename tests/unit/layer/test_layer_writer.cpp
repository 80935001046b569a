#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/store/store.hpp"

using namespace layer_test;
namespace fs = std::filesystem;

namespace {

std::vector<TarEntry> layer_entries(const fs::path& dir) {
    const fs::path big = dir / "libbig.so";
    const std::string payload = compressible_bytes(2 << 20, 9);
    std::ofstream(big, std::ios::binary) << payload;
    TarEntry lib;
    lib.path = "usr/lib/libbig.so";
    lib.source = big;
    lib.size = static_cast<std::int64_t>(payload.size());
    lib.mtime = 1'800'000'000;  // clamped
    return {dir_entry("usr"), dir_entry("usr/lib"), lib, file_entry("usr/lib/README", "hello\n"),
            link_entry("usr/lib/libbig.so.1", "libbig.so")};
}

std::size_t files_in(const fs::path& dir) {
    if (!fs::exists(dir)) return 0;
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("write_layer stores the compressed blob and reports the tar's digest as diff_id") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");
    const auto entries = layer_entries(tmp.path());
    const std::int64_t epoch = 1'700'000'000;
    const std::string tar = tar_of(entries, epoch);

    for (auto kind : {oci::Compression::gzip, oci::Compression::zstd, oci::Compression::none}) {
        CAPTURE(oci::media_type::to_string(kind));
        const layer::LayerBlob blob = layer::write_layer(store, entries, epoch, {kind, 0, 2});
        CHECK(blob.descriptor.media_type == oci::media_type::oci_layer_type(kind));
        CHECK(blob.uncompressed_size == tar.size());
        CHECK(blob.diff_id == core::Digest::of(tar));

        // The stored bytes: named by their digest, and they decompress to the very same tar.
        REQUIRE(store.has(blob.descriptor.digest));
        const fs::path path = store.blob_path(blob.descriptor.digest);
        CHECK(fs::file_size(path) == static_cast<std::uintmax_t>(blob.descriptor.size));
        std::ifstream in(path, std::ios::binary);
        const std::string stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(core::Digest::of(stored) == blob.descriptor.digest);
        const std::string plain = decompress(stored, 70'000);
        CHECK(core::Digest::of(plain) == blob.diff_id);
        if (kind == oci::Compression::none) CHECK(blob.descriptor.digest == blob.diff_id);
        if (kind != oci::Compression::none) CHECK(stored.size() < tar.size());

        // Same inputs, same blob: also with another thread count.
        const layer::LayerBlob again = layer::write_layer(store, entries, epoch, {kind, 0, 1});
        CHECK(again.descriptor == blob.descriptor);
        CHECK(again.diff_id == blob.diff_id);
    }
    // A different epoch changes the clamped mtime, hence both digests.
    const auto later = layer::write_layer(store, entries, epoch + 1, {oci::Compression::gzip, 0, 0});
    CHECK(later.diff_id != core::Digest::of(tar));
}

TEST_CASE("a failed layer write leaves nothing behind") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");
    auto entries = layer_entries(tmp.path());
    entries[2].size += 1;  // the source "changed size"
    const std::size_t blobs_before = files_in(tmp.path() / "store/blobs/sha256");
    CHECK_THROWS_AS((void)layer::write_layer(store, entries, 0, {oci::Compression::gzip, 0, 0}), core::Error);
    CHECK(files_in(tmp.path() / "store/blobs/sha256") == blobs_before);
    CHECK(files_in(tmp.path() / "store/ingest") == 0);
}
