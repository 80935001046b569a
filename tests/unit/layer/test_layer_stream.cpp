// The pull-mode layer decoder (src/layer/layer_stream.cpp): gzip through ISA-L's isal_inflate,
// from every gzip writer we meet, concatenated members, header flags, trailer checks, truncation,
// and any slicing of the compressed input (pipes fed in small pieces).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "../../../src/layer/layer_stream.hpp"
#include "helpers.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace layer_test;

namespace {

std::string sample_bytes(std::size_t size, std::uint32_t seed = 11) {
    std::mt19937 rng(seed);
    std::string out;
    out.reserve(size + 70000);
    while (out.size() < size) {
        const std::size_t len = 100 + rng() % 60000;
        switch (rng() % 4) {
            case 0:
                for (std::size_t i = 0; i < len; ++i) out.push_back(static_cast<char>(rng() & 0xff));
                break;
            case 1: out.append(len, '\0'); break;
            case 2:
                for (std::size_t i = 0; i < len; ++i) out.push_back("abcdefgh"[rng() % 8]);
                break;
            default:
                while (out.size() < size + len && out.size() < size) {
                    out += "int function_" + std::to_string(rng() % 3000) + "(void);\n";
                    if (rng() % 40 == 0) break;
                }
                break;
        }
    }
    out.resize(size);
    return out;
}

struct Decoded {
    std::string plain;
    core::Digest digest;
    layer::detail::BlobRead blob;
};

/// Sources hash the blob's own bytes too unless told otherwise: every decode checks both digests.
const layer::detail::SourceOptions both_digests{.hash_plain = true, .hash_blob = true};

Decoded drain(layer::detail::PlainSource& source) {
    Decoded d;
    for (auto chunk = source.next(); !chunk.empty(); chunk = source.next()) d.plain.append(chunk.data(), chunk.size());
    auto digests = source.finish();
    d.digest = digests.plain;
    d.blob = digests.blob;
    return d;
}

/// Through a memfd: blobs over 4 MiB take the read-ahead thread, smaller ones the caller's.
Decoded decode_file(std::string_view blob) {
    auto fd = memfd_of(blob);
    auto source = layer::detail::open_plain_source(fd.get(), "layer sha256:test", both_digests);
    return drain(*source);
}

/// Through a pipe written in pieces of 1..`max_piece` bytes, so that every header, block and
/// trailer is split across reads.
Decoded decode_pipe(std::string_view blob, std::size_t max_piece, std::uint32_t seed = 3) {
    ::signal(SIGPIPE, SIG_IGN);  // the reader gives up early on bad input
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    core::UniqueFd rd(fds[0]);
    std::thread writer([w = fds[1], blob, max_piece, seed] {
        std::mt19937 rng(seed);
        std::size_t pos = 0;
        while (pos < blob.size()) {
            const std::size_t n = std::min<std::size_t>(blob.size() - pos, 1 + rng() % max_piece);
            const ssize_t k = ::write(w, blob.data() + pos, n);
            if (k <= 0) break;
            pos += static_cast<std::size_t>(k);
        }
        ::close(w);
    });
    Decoded d;
    try {
        auto source = layer::detail::open_plain_source(rd.get(), "layer sha256:test", both_digests);
        d = drain(*source);
    } catch (...) {
        rd.reset();
        writer.join();
        throw;
    }
    writer.join();
    return d;
}

void check_decodes(std::string_view blob, const std::string& plain) {
    const auto expected = core::Digest::of(plain);
    const auto blob_digest = core::Digest::of(blob);
    const auto check = [&](const Decoded& d) {
        CHECK(d.plain.size() == plain.size());
        CHECK(d.plain == plain);
        CHECK(d.digest == expected);
        CHECK(d.blob.bytes == blob.size());
        CHECK(d.blob.digest == blob_digest);
    };
    check(decode_file(blob));
    check(decode_pipe(blob, 4096));
    if (blob.size() < (std::size_t{1} << 20)) check(decode_pipe(blob, 7));
}

std::string ocibuild_gzip(const std::string& data, int level) {
    StringSink sink;
    auto c = layer::make_compressor({oci::Compression::gzip, level, 2}, sink);
    c->write(data.data(), data.size());
    c->finish();
    return sink.data;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    REQUIRE(out.good());
}

bool have(const char* tool) {
    return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

/// `tool` run over a file holding `data` (the file name goes into FNAME); the .gz bytes.
std::string external_gzip(const std::string& command, const std::string& data) {
    core::TempDir dir;
    const auto in = dir.path() / "layer.tar";
    write_file(in, data);
    const std::string line = command + " '" + in.string() + "'";
    REQUIRE(std::system(line.c_str()) == 0);
    return read_file(dir.path() / "layer.tar.gz");
}

void put32(std::string& s, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

/// A gzip member written by hand: raw deflate from zlib, the header fields asked for.
std::string handmade_gzip(const std::string& data, bool extra, bool name, bool comment, bool hcrc) {
    std::string out = {'\x1f', '\x8b', '\x08', '\0', '\0', '\0', '\0', '\0', '\0', '\x03'};
    unsigned char flags = 0;
    if (hcrc) flags |= 0x02;
    if (extra) flags |= 0x04;
    if (name) flags |= 0x08;
    if (comment) flags |= 0x10;
    out[3] = static_cast<char>(flags);
    if (extra) {
        const std::string field = "AB\x05\0hello";  // subfield "AB", 5 bytes
        out.push_back(static_cast<char>(field.size()));
        out.push_back('\0');
        out += field;
    }
    if (name) out += std::string("layer.tar") + '\0';
    if (comment) out += std::string("a comment") + '\0';
    if (hcrc) {
        const auto crc = crc32(0, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size()));
        out.push_back(static_cast<char>(crc & 0xff));
        out.push_back(static_cast<char>((crc >> 8) & 0xff));
    }
    z_stream z{};
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string body(deflateBound(&z, data.size()) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    z.next_out = reinterpret_cast<Bytef*>(body.data());
    z.avail_out = static_cast<uInt>(body.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    body.resize(z.total_out);
    deflateEnd(&z);
    out += body;
    put32(out, static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()))));
    put32(out, static_cast<std::uint32_t>(data.size()));
    return out;
}

void check_rejected(std::string_view blob, const char* fragment) {
    for (int via = 0; via < 2; ++via) {
        try {
            if (via == 0) (void)decode_file(blob);
            else (void)decode_pipe(blob, 1000);
            FAIL("decoded without an error");
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            const std::string message = e.what();
            CHECK_MESSAGE(message.find("layer sha256:test") != std::string::npos, message);
            CHECK_MESSAGE(message.find(fragment) != std::string::npos, message);
        }
    }
}

}  // namespace

TEST_CASE("layer stream: gzip from ocibuild's own compressor, levels 1, 2 and 6") {
    const std::string small = sample_bytes(300'000);
    const std::string large = sample_bytes(9'000'000, 5);  // > 4 MiB: the read-ahead thread
    for (int level : {1, 2, 6}) {
        CAPTURE(level);
        check_decodes(ocibuild_gzip(small, level), small);
        check_decodes(ocibuild_gzip(large, level), large);
    }
    check_decodes(ocibuild_gzip("", 2), "");
}

TEST_CASE("layer stream: gzip -6 and pigz") {
    const std::string data = sample_bytes(6'000'000, 9);
    if (have("gzip")) check_decodes(external_gzip("gzip -6 -k", data), data);
    if (have("pigz")) {
        check_decodes(external_gzip("pigz -6 -k -p 4", data), data);
        check_decodes(external_gzip("pigz -6 -k -i -p 4", data), data);
    }
}

TEST_CASE("layer stream: concatenated gzip members are all read") {
    const std::string a = sample_bytes(200'000, 21);
    const std::string b = sample_bytes(5'000'000, 22);
    check_decodes(ocibuild_gzip(a, 2) + ocibuild_gzip(b, 1), a + b);
    check_decodes(ocibuild_gzip(a, 2) + ocibuild_gzip("", 2) + ocibuild_gzip(a, 6), a + a);
    if (have("gzip")) check_decodes(external_gzip("gzip -6 -k", a) + external_gzip("gzip -1 -k", b), a + b);
    // Many tiny members: member ends land at every position in the input buffer.
    std::string blob;
    std::string plain;
    for (int i = 0; i < 200; ++i) {
        const std::string piece = sample_bytes(static_cast<std::size_t>(i * 37), static_cast<std::uint32_t>(i));
        blob += handmade_gzip(piece, i % 2 == 0, i % 3 == 0, i % 5 == 0, i % 7 == 0);
        plain += piece;
    }
    check_decodes(blob, plain);
}

TEST_CASE("layer stream: gzip header flags FEXTRA, FNAME, FCOMMENT, FHCRC") {
    const std::string data = sample_bytes(100'000, 31);
    for (int mask = 0; mask < 16; ++mask) {
        CAPTURE(mask);
        check_decodes(handmade_gzip(data, (mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0, (mask & 8) != 0), data);
    }
    std::string bad_hcrc = handmade_gzip(data, true, true, true, true);
    const std::size_t hcrc_at = bad_hcrc.find(std::string("a comment") + '\0') + 10;
    bad_hcrc[hcrc_at] = static_cast<char>(bad_hcrc[hcrc_at] ^ 0x55);
    check_rejected(bad_hcrc, "corrupt gzip stream");
}

TEST_CASE("layer stream: a wrong CRC32 or ISIZE in the trailer is an error naming the layer") {
    const std::string data = sample_bytes(5'000'000, 41);
    const std::string good = ocibuild_gzip(data, 2);
    std::string bad_crc = good;
    bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 1);
    check_rejected(bad_crc, "checksum mismatch");
    std::string bad_size = good;
    bad_size[bad_size.size() - 4] = static_cast<char>(bad_size[bad_size.size() - 4] ^ 1);
    check_rejected(bad_size, "checksum mismatch");
    // in the first of two members too
    const std::string small = sample_bytes(1000, 42);
    std::string first = ocibuild_gzip(small, 1);
    first[first.size() - 6] = static_cast<char>(first[first.size() - 6] ^ 0x80);
    check_rejected(first + ocibuild_gzip(small, 1), "checksum mismatch");
    // a corrupted deflate body
    std::string body = good;
    for (std::size_t i = 100; i < 200; ++i) body[i] = static_cast<char>(0xff);
    CHECK_THROWS_AS((void)decode_file(body), core::Error);
}

TEST_CASE("layer stream: a truncated gzip stream is an error") {
    const std::string data = sample_bytes(5'000'000, 51);
    const std::string good = ocibuild_gzip(data, 2);
    for (std::size_t cut : {std::size_t{5}, std::size_t{12}, good.size() / 3, good.size() - 9, good.size() - 8,
                            good.size() - 3, good.size() - 1}) {
        CAPTURE(cut);
        check_rejected(std::string_view(good).substr(0, cut), "truncated gzip stream");
    }
    // the second member cut short
    const std::string small = sample_bytes(1000, 52);
    const std::string two = ocibuild_gzip(small, 1) + ocibuild_gzip(small, 1);
    check_rejected(std::string_view(two).substr(0, two.size() - 2), "truncated gzip stream");
}

TEST_CASE("layer stream: bytes after the last gzip member are an error, as with zlib") {
    const std::string data = sample_bytes(100'000, 61);
    const std::string good = ocibuild_gzip(data, 2);
    check_rejected(good + "garbage after the stream", "corrupt gzip stream");
    check_rejected(good + std::string(1024, '\0'), "corrupt gzip stream");
    check_rejected(good + "\x1f", "truncated gzip stream");
}

TEST_CASE("layer stream: zstd and plain still pass through") {
    const std::string data = sample_bytes(6'000'000, 71);
    StringSink sink;
    auto c = layer::make_compressor({oci::Compression::zstd, 3, 2}, sink);
    c->write(data.data(), data.size());
    c->finish();
    check_decodes(sink.data, data);
    check_decodes(data, data);
}
