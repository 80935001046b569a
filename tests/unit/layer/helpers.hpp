#pragma once
// Shared by the layer unit tests: in-memory sinks, tars in memfds, entry builders.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/sink.hpp"
#include "ocibuild/layer/compress.hpp"
#include "ocibuild/layer/tar_reader.hpp"
#include "ocibuild/layer/tar_writer.hpp"

namespace layer_test {

using namespace ocibuild;
using layer::EntryType;
using layer::TarEntry;

struct StringSink : core::ByteSink {
    std::string data;
    int finished = 0;
    void write(const void* p, std::size_t n) override { data.append(static_cast<const char*>(p), n); }
    using core::ByteSink::write;
    void finish() override { ++finished; }
};

inline std::string tar_of(std::vector<TarEntry> entries, std::int64_t epoch = 1'700'000'000) {
    StringSink sink;
    layer::write_tar(std::move(entries), epoch, sink);
    REQUIRE(sink.finished == 1);
    return sink.data;
}

/// A readable fd holding `bytes`, positioned at 0.
inline core::UniqueFd memfd_of(std::string_view bytes) {
    core::UniqueFd fd(::memfd_create("layer-test", MFD_CLOEXEC));
    REQUIRE(fd);
    core::write_all(fd.get(), bytes.data(), bytes.size(), "memfd");
    REQUIRE(::lseek(fd.get(), 0, SEEK_SET) == 0);
    return fd;
}

struct ReadBack {
    TarEntry entry;
    std::string content;
};

inline std::vector<ReadBack> read_back(std::string_view tar) {
    auto fd = memfd_of(tar);
    std::vector<ReadBack> out;
    layer::read_tar(fd.get(), "test tar", [&](const TarEntry& e, const layer::ContentReader& read) {
        StringSink s;
        read(s);
        out.push_back({e, s.data});
    });
    return out;
}

inline TarEntry file_entry(std::string path, std::string content, std::uint32_t mode = 0644) {
    TarEntry e;
    e.path = std::move(path);
    e.type = EntryType::regular;
    e.mode = mode;
    e.content = std::move(content);
    e.size = static_cast<std::int64_t>(e.content.size());
    e.mtime = 1'600'000'000;
    return e;
}

inline TarEntry dir_entry(std::string path, std::uint32_t mode = 0755) {
    TarEntry e;
    e.path = std::move(path);
    e.type = EntryType::directory;
    e.mode = mode;
    e.mtime = 1'600'000'000;
    return e;
}

inline TarEntry link_entry(std::string path, std::string target, EntryType type = EntryType::symlink) {
    TarEntry e;
    e.path = std::move(path);
    e.type = type;
    e.mode = 0777;
    e.link_target = std::move(target);
    e.mtime = 1'600'000'000;
    return e;
}

/// Bytes that compress like binaries: random runs mixed with repeated words (gzip ratio ~0.5).
inline std::string compressible_bytes(std::size_t size, std::uint32_t seed = 42) {
    std::mt19937 rng(seed);
    std::string out;
    out.reserve(size + 1024);
    while (out.size() < size) {
        if (rng() % 2 != 0) {
            for (int i = 0; i < 300; ++i) out.push_back(static_cast<char>(rng() & 0xff));
        } else {
            const std::string word = "symbol_" + std::to_string(rng() % 1000) + " ";
            for (int i = 0; i < 40; ++i) out += word;
        }
    }
    out.resize(size);
    return out;
}

/// Compresses `data` in one go (or in `chunk`-sized writes when non-zero).
inline std::string compress(const layer::CompressionOptions& options, std::string_view data, std::size_t chunk = 0) {
    StringSink out;
    auto c = layer::make_compressor(options, out);
    if (chunk == 0) chunk = data.size() + 1;
    for (std::size_t off = 0; off < data.size(); off += chunk) c->write(data.substr(off, chunk));
    c->finish();
    REQUIRE(out.finished == 1);
    return out.data;
}

inline std::string decompress(std::string_view data, std::size_t chunk = 0) {
    StringSink out;
    auto d = layer::make_decompressor(out);
    if (chunk == 0) chunk = data.size() + 1;
    for (std::size_t off = 0; off < data.size(); off += chunk) d->write(data.substr(off, chunk));
    d->finish();
    return out.data;
}

}  // namespace layer_test
