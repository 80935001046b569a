#pragma once
// Shared by the bench programs that write one layer: `PROGRAM INPUT [--compression gzip|zstd|none]
// [--level N] [--threads N] [--store DIR]`, and a wall-clock helper.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ocibuild/layer/compress.hpp"

namespace ocibuild::bench {

using Clock = std::chrono::steady_clock;

struct LayerArgs {
    std::string input;  // the tree or upper dir
    layer::CompressionOptions compression;
    std::string store;
};

[[noreturn]] inline void usage(const char* program, const char* input_name, const char* message) {
    std::fprintf(stderr,
                 "error: %s\nusage: %s %s [--compression gzip|zstd|none] [--level N] [--threads N] [--store DIR]\n",
                 message, program, input_name);
    std::exit(2);
}

inline LayerArgs parse_layer_args(int argc, char** argv, const char* program, const char* input_name) {
    LayerArgs args;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(program, input_name, "missing value");
            return argv[++i];
        };
        if (arg == "--compression") {
            const std::string v = value();
            if (v == "gzip") args.compression.kind = oci::Compression::gzip;
            else if (v == "zstd") args.compression.kind = oci::Compression::zstd;
            else if (v == "none") args.compression.kind = oci::Compression::none;
            else usage(program, input_name, "unknown compression");
        } else if (arg == "--level") {
            args.compression.level = std::atoi(value().c_str());
        } else if (arg == "--threads") {
            args.compression.threads = std::atoi(value().c_str());
        } else if (arg == "--store") {
            args.store = value();
        } else if (args.input.empty() && !arg.starts_with("-")) {
            args.input = arg;
        } else {
            usage(program, input_name, "unexpected argument");
        }
    }
    if (args.input.empty()) usage(program, input_name, (std::string("missing ") + input_name).c_str());
    return args;
}

inline double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace ocibuild::bench
