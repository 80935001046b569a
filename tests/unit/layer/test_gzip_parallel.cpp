// The parallel gzip compressor (src/layer/gzip_parallel.cpp): same bytes for any thread count and
// any write slicing, readable by every common decoder, bounded memory.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "helpers.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace layer_test;

namespace {

// gzip::block_size in src/layer/gzip_parallel.hpp (private to the library).
constexpr std::size_t block = 256 * 1024;

layer::CompressionOptions gz(int level, int threads) { return {oci::Compression::gzip, level, threads}; }

/// Like a layer tar: incompressible runs, binary-like bytes, zero padding and text, in pieces of
/// varied length so that block boundaries fall everywhere.
std::string mixed_bytes(std::size_t size, std::uint32_t seed = 7) {
    std::mt19937 rng(seed);
    std::string out;
    out.reserve(size + (1 << 20));
    while (out.size() < size) {
        const std::size_t len = 1000 + rng() % 300000;
        switch (rng() % 4) {
            case 0:
                for (std::size_t i = 0; i < len; ++i) out.push_back(static_cast<char>(rng() & 0xff));
                break;
            case 1: out += compressible_bytes(len, rng()); break;
            case 2: out.append(len, '\0'); break;
            default:
                while (out.size() < size && len > 0) {
                    out += "static inline int cuda_function_" + std::to_string(rng() % 5000) + "(void *ptr, size_t n);\n";
                    if (rng() % 64 == 0) break;
                }
                break;
        }
    }
    out.resize(size);
    return out;
}

bool have(const char* tool) {
    return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
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

/// Runs `command` (through sh) with IN and OUT set to the two paths; returns its stdout file's bytes.
std::string run_decoder(const std::string& command, const std::filesystem::path& in, const std::filesystem::path& out) {
    const std::string line = "IN='" + in.string() + "' OUT='" + out.string() + "'; " + command;
    const int rc = std::system(line.c_str());
    CHECK_MESSAGE(rc == 0, command);
    return rc == 0 ? read_file(out) : std::string();
}

/// kB from a "Name:   123 kB" line of /proc/self/status.
long status_kb(const char* name) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name, 0) == 0) return std::atol(line.c_str() + std::strlen(name));
    }
    return -1;
}

struct NullSink : core::ByteSink {
    std::uint64_t bytes = 0;
    void write(const void*, std::size_t n) override { bytes += n; }
    using core::ByteSink::write;
};

}  // namespace

TEST_CASE("parallel gzip: the bytes do not depend on the thread count or the write sizes") {
    const std::string data = mixed_bytes(20 << 20);
    const std::string one = compress(gz(0, 1), data);
    CHECK(compress(gz(0, 2), data) == one);
    CHECK(compress(gz(0, 4), data) == one);
    CHECK(compress(gz(0, 0), data) == one);  // hardware concurrency
    CHECK(compress(gz(0, 3), data, 4096) == one);
    CHECK(compress(gz(0, 2), data, block - 1) == one);
    CHECK(compress(gz(0, 4), data, block + 1) == one);
    CHECK(compress(gz(2, 2), data) == one);  // 2 is the default
    CHECK(compress(gz(0, 2), data) == one);  // and again: determinism across runs
    CHECK(one.size() < data.size() * 6 / 10);
    CHECK(decompress(one) == data);
    CHECK(decompress(one, 65537) == data);

    // The zlib levels, on less data (zlib -6 runs at ~45 MB/s).
    const std::string small = data.substr(0, 4 << 20);
    for (int level : {3, 6, 9}) {
        CAPTURE(level);
        const std::string z1 = compress(gz(level, 1), small);
        CHECK(compress(gz(level, 4), small, 100'003) == z1);
        CHECK(decompress(z1) == small);
    }
    // ISA-L level 1.
    const std::string i1 = compress(gz(1, 1), small);
    CHECK(compress(gz(1, 3), small, 7777) == i1);
    CHECK(decompress(i1) == small);
}

TEST_CASE("parallel gzip: levels map to distinct streams; headers are fixed") {
    const std::string data = mixed_bytes(1 << 20, 11);
    std::vector<std::string> streams;
    for (int level = 1; level <= 9; ++level) {
        CAPTURE(level);
        streams.push_back(compress(gz(level, 2), data));
        CHECK(decompress(streams.back()) == data);
        // ID1 ID2 CM FLG, MTIME 0, XFL (4 for level 1, 2 for level 9, else 0), OS 255.
        const std::string xfl = level == 1 ? "\x04" : level == 9 ? "\x02" : std::string(1, '\0');
        CHECK(streams.back().substr(0, 10) == std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8) + xfl + "\xff");
    }
    CHECK(streams[0] != streams[1]);  // ISA-L 1, 2
    CHECK(streams[1] != streams[2]);  // ISA-L 2, zlib 3
    CHECK(streams[5] != streams[8]);  // zlib 6, 9
    CHECK(compress(gz(0, 1), data) == streams[1]);  // default = level 2
}

TEST_CASE("parallel gzip: small inputs and block edges") {
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{100}, block - 1, block, block + 1, 2 * block,
                             2 * block + 1, 3 * block - 7}) {
        for (int level : {0, 1, 6}) {
            CAPTURE(size);
            CAPTURE(level);
            const std::string data = mixed_bytes(size, static_cast<std::uint32_t>(size));
            const std::string one = compress(gz(level, 1), data);
            CHECK(compress(gz(level, 4), data) == one);
            CHECK(compress(gz(level, 2), data, 1000) == one);
            CHECK(decompress(one) == data);
            // Trailer: CRC-32 and ISIZE, little-endian.
            REQUIRE(one.size() >= 18);
            const auto crc = static_cast<std::uint32_t>(
                crc32(0, reinterpret_cast<const unsigned char*>(data.data()), static_cast<uInt>(data.size())));
            std::uint32_t stored_crc = 0, stored_size = 0;
            for (int i = 0; i < 4; ++i) {
                stored_crc |= static_cast<std::uint32_t>(static_cast<unsigned char>(one[one.size() - 8 + i])) << (8 * i);
                stored_size |= static_cast<std::uint32_t>(static_cast<unsigned char>(one[one.size() - 4 + i])) << (8 * i);
            }
            CHECK(stored_crc == crc);
            CHECK(stored_size == data.size());
        }
    }
}

TEST_CASE("parallel gzip: gzip, pigz and Python read the stream as one member") {
    const std::string data = mixed_bytes(6 << 20, 3);
    core::TempDir dir;
    const auto out = dir.path() / "out";
    for (int level : {0, 1, 6}) {
        CAPTURE(level);
        const std::string blob = compress(gz(level, 0), data);
        const auto in = dir.path() / "blob.gz";
        write_file(in, blob);
        // gzip is in every Debian install; pigz and python3 are test tools that may be missing.
        CHECK(run_decoder("gzip -dc <\"$IN\" >\"$OUT\"", in, out) == data);
        CHECK(run_decoder("gzip -tv \"$IN\" 2>/dev/null >\"$OUT\" && echo ok >\"$OUT\"", in, out) == "ok\n");
        if (have("pigz")) {
            CHECK(run_decoder("pigz -dc <\"$IN\" >\"$OUT\"", in, out) == data);
        } else {
            MESSAGE("pigz not installed: not checked");
        }
        if (have("python3")) {
            // gzip.decompress reads every member; GzipFile's first-member logic is the same code.
            CHECK(run_decoder("python3 -c 'import gzip,sys; d=open(sys.argv[1],\"rb\").read(); "
                              "sys.stdout.buffer.write(gzip.decompress(d))' \"$IN\" >\"$OUT\"",
                              in, out) == data);
            // zlib with gzip framing, stopping at the first member's end: must be the whole stream.
            CHECK(run_decoder("python3 -c 'import zlib,sys; d=zlib.decompressobj(31); "
                              "o=d.decompress(open(sys.argv[1],\"rb\").read()); "
                              "assert d.eof and not d.unused_data; sys.stdout.buffer.write(o)' \"$IN\" >\"$OUT\"",
                              in, out) == data);
        } else {
            MESSAGE("python3 not installed: not checked");
        }
    }
}

TEST_CASE("parallel gzip: pinned bytes (one fixed implementation per level)") {
    // If one of these changes, the same tree no longer gives the same gzip blob: a new ISA-L or
    // zlib, or a CPU where ISA-L takes a code path that emits other bytes (docs/benchmarks.md).
    // Such a change must be deliberate: it changes every gzip layer digest.
    const std::string data = mixed_bytes(3 << 20, 2024);
    CHECK(core::Digest::of(compress(gz(0, 2), data)).str() ==
          "sha256:4f543eda4094ccc06639f55070de409cc4fe96a6072f208941e508ec3dfc1e2e");
    CHECK(core::Digest::of(compress(gz(1, 2), data)).str() ==
          "sha256:30df5c46db45e344b27427ca47d605b047cb4caf58edbe77327897cfd81f0255");
    CHECK(core::Digest::of(compress(gz(6, 2), data)).str() ==
          "sha256:6750c8591efa965bf7875cdd14b39c035c1aa30233c9f25400360e781100b441");
    CHECK(compress(gz(0, 1), "") == std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x03\x00"
                                                 "\x00\x00\x00\x00\x00\x00\x00\x00",
                                                 20));
}

TEST_CASE("parallel gzip: a compressor dropped before finish stops its threads") {
    const std::string data = mixed_bytes(8 << 20, 5);
    StringSink out;
    {
        auto c = layer::make_compressor(gz(0, 4), out);
        c->write(data);
    }
    CHECK(out.finished == 0);
}

TEST_CASE("parallel gzip: memory stays flat on 1 GB") {
    // Peak RSS of this process, reset first (Linux ≥ 4.0: "5" > /proc/self/clear_refs), so that
    // the other tests' buffers do not hide the number (getrusage's ru_maxrss cannot be reset), and
    // the heap those tests freed given back first (else it would be reused unseen).
    ::malloc_trim(0);
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "5", 1) != 1) {
        if (fd >= 0) ::close(fd);
        MESSAGE("cannot reset the peak RSS (/proc/self/clear_refs): not checked");
        return;
    }
    ::close(fd);
    const long before_kb = status_kb("VmRSS:");
    const std::string chunk = mixed_bytes(4 << 20, 9);  // 4 MB of the growth
    NullSink sink;
    auto c = layer::make_compressor(gz(0, 0), sink);
    constexpr std::size_t total = std::size_t{1} << 30;
    for (std::size_t done = 0; done < total; done += chunk.size()) c->write(chunk);
    c->finish();
    const long peak_kb = status_kb("VmHWM:");
    REQUIRE(before_kb > 0);
    REQUIRE(peak_kb > 0);
    MESSAGE("1 GiB through gzip: RSS " << before_kb / 1024 << " MB before, peak " << peak_kb / 1024
                                         << " MB (4 MB of it the input chunk)");
    CHECK(peak_kb - before_kb < 64 * 1024);
    CHECK(sink.bytes > 0);
    CHECK(sink.bytes < total / 2);
}
