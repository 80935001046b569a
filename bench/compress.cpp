// bench_compress: compresses one file (a layer tar) with make_compressor into a counting sink and
// reports throughput and peak memory as one "key=value" line (bench/run.sh parses it). The same
// work as `pigz -6 <FILE | wc -c`, without the tar writer, hashing or store of bench_layer_write.
//
//   bench_compress FILE [--compression gzip|zstd] [--level N] [--threads N]
//                       [--generate-gb N]   (instead of FILE: N GiB of generated data, for memory)
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/sink.hpp"
#include "ocibuild/layer/compress.hpp"

namespace {

using namespace ocibuild;
using Clock = std::chrono::steady_clock;

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr,
                 "error: %s\nusage: bench_compress FILE [--compression gzip|zstd] [--level N] [--threads N] "
                 "[--generate-gb N]\n",
                 message);
    std::exit(2);
}

struct CountingSink : core::ByteSink {
    std::uint64_t bytes = 0;
    void write(const void*, std::size_t n) override { bytes += n; }
    using core::ByteSink::write;
};

/// 4 MiB of tar-like bytes: random runs, repeated symbols, zeros.
std::vector<char> generated_chunk() {
    std::mt19937 rng(1);
    std::vector<char> out;
    while (out.size() < (4u << 20)) {
        const unsigned kind = rng() % 3;
        const std::size_t len = 512 + rng() % 65536;
        for (std::size_t i = 0; i < len; ++i) {
            out.push_back(kind == 0   ? static_cast<char>(rng() & 0xff)
                          : kind == 1 ? static_cast<char>("symbol_name_table_"[i % 18] + (rng() % 4 == 0))
                                      : '\0');
        }
    }
    out.resize(4u << 20);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string file;
    layer::CompressionOptions options;
    options.kind = oci::Compression::gzip;
    long generate_gb = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage("missing value");
            return argv[++i];
        };
        if (arg == "--compression") {
            const std::string v = value();
            if (v == "gzip") {
                options.kind = oci::Compression::gzip;
            } else if (v == "zstd") {
                options.kind = oci::Compression::zstd;
            } else {
                usage("unknown compression");
            }
        } else if (arg == "--level") {
            options.level = std::atoi(value().c_str());
        } else if (arg == "--threads") {
            options.threads = std::atoi(value().c_str());
        } else if (arg == "--generate-gb") {
            generate_gb = std::atol(value().c_str());
        } else if (file.empty() && !arg.starts_with("-")) {
            file = arg;
        } else {
            usage("unexpected argument");
        }
    }
    if (file.empty() && generate_gb <= 0) usage("missing FILE");
    try {
        CountingSink sink;
        std::uint64_t in_bytes = 0;
        const auto t0 = Clock::now();
        auto compressor = layer::make_compressor(options, sink);
        if (generate_gb > 0) {
            const std::vector<char> chunk = generated_chunk();
            const std::uint64_t total = static_cast<std::uint64_t>(generate_gb) << 30;
            for (; in_bytes < total; in_bytes += chunk.size()) compressor->write(chunk.data(), chunk.size());
        } else {
            core::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd) core::throw_errno("open " + file);
            std::vector<char> buf(1 << 20);
            for (;;) {
                const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
                if (n < 0) core::throw_errno("read " + file);
                if (n == 0) break;
                compressor->write(buf.data(), static_cast<std::size_t>(n));
                in_bytes += static_cast<std::uint64_t>(n);
            }
        }
        compressor->finish();
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        rusage usage{};
        ::getrusage(RUSAGE_SELF, &usage);
        std::printf("in_bytes=%llu blob_bytes=%llu ratio=%.4f seconds=%.3f mb_per_s=%.1f cpu_s=%.2f peak_rss_kb=%ld\n",
                    static_cast<unsigned long long>(in_bytes), static_cast<unsigned long long>(sink.bytes),
                    in_bytes > 0 ? static_cast<double>(sink.bytes) / static_cast<double>(in_bytes) : 0.0, secs,
                    static_cast<double>(in_bytes) / 1e6 / secs,
                    static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6,
                    usage.ru_maxrss);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
