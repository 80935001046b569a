#include <doctest/doctest.h>

#include "helpers.hpp"

using namespace layer_test;

namespace {

std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

}  // namespace

TEST_CASE("gzip headers are fixed: MTIME 0, no name, OS 255") {
    const std::string data = compressible_bytes(100000);
    // ID1 ID2 CM FLG MTIME(4) XFL OS; XFL from the level as zlib sets it (4 for 1, 2 for 9, else 0).
    CHECK(hex(compress({oci::Compression::gzip, 0, 0}, data).substr(0, 10)) == "1f8b08000000000000ff");
    CHECK(hex(compress({oci::Compression::gzip, 6, 0}, data).substr(0, 10)) == "1f8b08000000000000ff");
    CHECK(hex(compress({oci::Compression::gzip, 9, 0}, data).substr(0, 10)) == "1f8b08000000000002ff");
    CHECK(hex(compress({oci::Compression::gzip, 1, 0}, data).substr(0, 10)) == "1f8b08000000000004ff");
    // The empty stream, byte for byte.
    CHECK(hex(compress({oci::Compression::gzip, 0, 0}, "")) == "1f8b08000000000000ff03000000000000000000");
}

TEST_CASE("gzip output is the same whatever the write sizes, and decompresses") {
    const std::string data = compressible_bytes(3'000'000);
    const std::string whole = compress({oci::Compression::gzip, 0, 0}, data);
    CHECK(compress({oci::Compression::gzip, 0, 0}, data, 4096) == whole);
    CHECK(compress({oci::Compression::gzip, 0, 0}, data, 1'000'003) == whole);
    CHECK(whole.size() < data.size() * 6 / 10);
    CHECK(decompress(whole) == data);
    CHECK(decompress(whole, 3) == data);
}

TEST_CASE("zstd output does not depend on the thread count") {
    const std::string data = compressible_bytes(20 << 20);
    const std::string one = compress({oci::Compression::zstd, 0, 1}, data);
    CHECK(compress({oci::Compression::zstd, 0, 2}, data) == one);
    CHECK(compress({oci::Compression::zstd, 0, 4}, data) == one);
    CHECK(compress({oci::Compression::zstd, 0, 2}, data, 65536 + 7) == one);
    CHECK(compress({oci::Compression::zstd, 0, 0}, data, 1 << 20) == one);  // hardware concurrency
    CHECK(one.size() < data.size() * 6 / 10);
    CHECK(decompress(one, 100'003) == data);
    // Frame header: magic, then a descriptor with no content size and no checksum.
    REQUIRE(one.size() > 5);
    CHECK(hex(one.substr(0, 4)) == "28b52ffd");
    const auto descriptor = static_cast<unsigned char>(one[4]);
    CHECK((descriptor & 0xc0) == 0);  // Frame_Content_Size_flag
    CHECK((descriptor & 0x04) == 0);  // Content_Checksum_flag
    // Another level gives other bytes (the level is part of the layer's identity).
    CHECK(compress({oci::Compression::zstd, 9, 2}, data.substr(0, 1 << 20)) !=
          compress({oci::Compression::zstd, 3, 2}, data.substr(0, 1 << 20)));
}

TEST_CASE("plain passthrough and format detection") {
    CHECK(compress({oci::Compression::none, 0, 0}, "plain tar") == "plain tar");
    CHECK(decompress("plain tar") == "plain tar");
    CHECK(decompress("ab") == "ab");  // shorter than any magic
    CHECK(decompress("") == "");
    CHECK(decompress(std::string("\x1f", 1)) == std::string("\x1f", 1));
    // Concatenated gzip members, as pigz or `cat a.gz b.gz` make.
    const std::string two = compress({oci::Compression::gzip, 0, 0}, "first ") +
                            compress({oci::Compression::gzip, 0, 0}, "second");
    CHECK(decompress(two) == "first second");
    // Concatenated zstd frames.
    const std::string frames = compress({oci::Compression::zstd, 0, 1}, "one ") + compress({oci::Compression::zstd, 0, 1}, "two");
    CHECK(decompress(frames, 3) == "one two");
}

TEST_CASE("corrupt or truncated compressed streams are errors") {
    const std::string data = compressible_bytes(200000);
    for (auto kind : {oci::Compression::gzip, oci::Compression::zstd}) {
        CAPTURE(oci::media_type::to_string(kind));
        const std::string blob = compress({kind, 0, 1}, data);
        try {
            (void)decompress(blob.substr(0, blob.size() / 2));
            FAIL("no error for a truncated stream");
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            CHECK(std::string(e.what()) == "truncated " + std::string(oci::media_type::to_string(kind)) + " stream");
        }
        std::string corrupt = blob;
        if (kind == oci::Compression::gzip) {
            for (std::size_t i = 20; i < 200; ++i) corrupt[i] = static_cast<char>(~corrupt[i]);  // CRC catches it
        } else {
            corrupt[6] = static_cast<char>(corrupt[6] | 0x06);  // first block header: reserved block type
        }
        CHECK_THROWS_AS((void)decompress(corrupt), core::Error);
    }
}

TEST_CASE("compression levels are checked") {
    StringSink out;
    CHECK_THROWS_WITH_AS((void)layer::make_compressor({oci::Compression::gzip, 10, 0}, out),
                         "gzip level must be 1 to 9, not 10", core::Error);
    CHECK_THROWS_AS((void)layer::make_compressor({oci::Compression::zstd, 99, 0}, out), core::Error);
    CHECK_THROWS_AS((void)layer::make_compressor({oci::Compression::zstd, -1, 0}, out), core::Error);
}
