// bench_layer_write: writes a directory tree as one layer blob into a temporary store and reports
// throughput and peak memory as one "key=value" line (bench/run.sh parses it).
//
//   bench_layer_write TREE [--compression gzip|zstd|none] [--level N] [--threads N] [--store DIR]
//
// Timed phases: scan (walk + lstat of the tree) and write (tar → hash → compress → store, one pass,
// including the store's fsync and rename). MB/s = uncompressed tar bytes / (scan + write) seconds.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "bench_args.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/store/store.hpp"

namespace {

using namespace ocibuild;
using bench::Clock;
using bench::seconds_since;

bench::LayerArgs parse(int argc, char** argv) { return bench::parse_layer_args(argc, argv, "bench_layer_write", "TREE"); }

}  // namespace

int main(int argc, char** argv) {
    const auto args = parse(argc, argv);
    try {
        std::optional<core::TempDir> temp;
        std::string store_dir = args.store;
        if (store_dir.empty()) {
            temp.emplace();
            store_dir = (temp->path() / "store").string();
        }
        const auto store = store::Store::open(store_dir);

        const auto t0 = Clock::now();
        auto entries = layer::scan_tree(args.input, "");
        const double scan_s = seconds_since(t0);
        const std::size_t count = entries.size();

        const auto t1 = Clock::now();
        const layer::LayerBlob blob = layer::write_layer(store, std::move(entries), 1'700'000'000, args.compression);
        const double write_s = seconds_since(t1);
        const double total_s = scan_s + write_s;

        rusage usage{};
        ::getrusage(RUSAGE_SELF, &usage);
        const auto tar_bytes = static_cast<double>(blob.uncompressed_size);
        std::printf("compression=%s entries=%zu tar_bytes=%llu blob_bytes=%lld ratio=%.3f scan_s=%.3f write_s=%.3f "
                    "total_s=%.3f mb_per_s=%.1f cpu_s=%.2f peak_rss_kb=%ld digest=%s\n",
                    std::string(oci::media_type::to_string(args.compression.kind)).c_str(), count,
                    static_cast<unsigned long long>(blob.uncompressed_size), static_cast<long long>(blob.descriptor.size),
                    static_cast<double>(blob.descriptor.size) / tar_bytes, scan_s, write_s, total_s,
                    tar_bytes / 1e6 / total_s,
                    static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6,
                    usage.ru_maxrss, blob.descriptor.digest.str().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
