// The ocibuild command. The only place that reads the environment, prints, and picks exit codes:
// 0 ok, 1 failure, 2 usage or recipe error.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ocibuild/build/builder.hpp"
#include "ocibuild/build/outputs.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/recipe/recipe.hpp"
#include "ocibuild/registry/reference.hpp"
#include "ocibuild/store/store.hpp"

#ifndef OCIBUILD_VERSION
#define OCIBUILD_VERSION "0.0.0"
#endif

namespace {

namespace fs = std::filesystem;
using namespace ocibuild;

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

class UsageError : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string env_or(const char* name, const std::string& fallback = {}) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// $OCIBUILD_STORE, else $XDG_DATA_HOME/ocibuild/store, else ~/.local/share/ocibuild/store.
fs::path default_store() {
    if (auto s = env_or("OCIBUILD_STORE"); !s.empty()) return s;
    if (auto x = env_or("XDG_DATA_HOME"); !x.empty()) return fs::path(x) / "ocibuild" / "store";
    auto home = env_or("HOME");
    if (home.empty()) throw UsageError("HOME is not set; pass --store DIR");
    return fs::path(home) / ".local" / "share" / "ocibuild" / "store";
}

// SOURCE_DATE_EPOCH when set (reproducible-builds.org); otherwise the fixed epoch 0, never the clock.
std::int64_t build_epoch(const std::string& flag) {
    std::string text = flag.empty() ? env_or("SOURCE_DATE_EPOCH") : flag;
    if (text.empty()) return 0;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || end == text.c_str() || *end != '\0' || v < 0 || v > 253402300799LL)
        throw UsageError("SOURCE_DATE_EPOCH must be a number of seconds since 1970, got \"" + text + "\"");
    return v;
}

struct BuildArgs {
    std::string recipe;
    std::vector<std::string> outputs;
    std::string store;
    std::string compression = "gzip";
    int level = 0;
    std::string timestamp;
    bool quiet = false;
};

int run_build(const BuildArgs& args) {
    auto recipe = recipe::parse_recipe(args.recipe);  // RecipeError → exit 2 before any work

    std::vector<build::OutputSpec> outputs;
    for (const auto& o : args.outputs) {
        auto spec = build::OutputSpec::parse(o);
        if (!spec)
            throw UsageError("bad --output \"" + o + "\": " + spec.error().message + " (at character " +
                             std::to_string(spec.error().offset + 1) + ")");
        outputs.push_back(*spec);
    }
    build::check_supported(recipe);  // unsupported steps fail before anything is written

    build::BuildOptions options;
    options.epoch = build_epoch(args.timestamp);
    if (args.compression == "gzip") options.compression.kind = oci::Compression::gzip;
    else if (args.compression == "zstd") options.compression.kind = oci::Compression::zstd;
    else throw UsageError("--compression must be gzip or zstd");
    options.compression.level = args.level;
    if (!args.quiet) options.log = [](std::string_view line) { std::cerr << line << '\n'; };

    auto store = store::Store::open(args.store.empty() ? default_store() : fs::path(args.store));
    auto image = build::build_image(recipe, store, options);

    // The image's own name:tag, used where an output names no tag.
    std::string first_tag = recipe.image.tags.empty() ? "latest" : recipe.image.tags.front();
    std::string full_name = recipe.image.name.empty() ? "" : recipe.image.name + ":" + first_tag;
    store.set_tag(full_name.empty() ? first_tag : full_name, image.manifest);
    for (const auto& out : outputs) {
        auto default_tag = out.kind == build::OutputSpec::Kind::docker_archive ? full_name : first_tag;
        build::write_output(store, image.manifest, out, default_tag);
        if (!args.quiet) std::cerr << "wrote " << out.to_string() << '\n';
    }
    std::cout << image.manifest.digest.str() << '\n';
    return exit_ok;
}

// `ocibuild RECIPE ...` is short for `ocibuild build RECIPE ...`.
std::vector<std::string> expand_short_form(int argc, char** argv, const CLI::App& app) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && !args[0].starts_with("-")) {
        bool verb = false;
        for (const auto* sub : app.get_subcommands({})) verb = verb || sub->get_name() == args[0];
        if (!verb) args.insert(args.begin(), "build");
    }
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ocibuild: build OCI images from declarative recipes, with no daemon and no root.\n"
                 "`ocibuild RECIPE` is short for `ocibuild build RECIPE`.",
                 "ocibuild"};
    app.set_version_flag("--version", std::string("ocibuild ") + OCIBUILD_VERSION);
    app.require_subcommand(1);

    BuildArgs build_args;
    auto* build_cmd = app.add_subcommand("build", "Build the image a recipe describes");
    build_cmd->add_option("recipe", build_args.recipe, "Recipe file (TOML)")->required();
    build_cmd->add_option("-o,--output", build_args.outputs,
                          "Where to write the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], "
                          "docker-archive:FILE[:NAME:TAG] (repeatable)");
    build_cmd->add_option("--store", build_args.store,
                          "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
    build_cmd->add_option("--compression", build_args.compression, "Layer compression: gzip (default) or zstd");
    build_cmd->add_option("--compression-level", build_args.level, "Compression level (default gzip 6, zstd 3)");
    build_cmd->add_option("--timestamp", build_args.timestamp,
                          "Build epoch in seconds (default $SOURCE_DATE_EPOCH, else 0)");
    build_cmd->add_flag("-q,--quiet", build_args.quiet, "Print only the image digest");

    try {
        auto args = expand_short_form(argc, argv, app);
        std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
        app.parse(args);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return exit_usage;
    }

    try {
        if (*build_cmd) return run_build(build_args);
    } catch (const recipe::RecipeError& e) {
        std::cerr << e.what();
        if (std::string_view(e.what()).ends_with("\n") == false) std::cerr << '\n';
        return exit_usage;
    } catch (const UsageError& e) {
        std::cerr << "error: " << e.what() << '\n';
        return exit_usage;
    } catch (const core::Error& e) {
        std::cerr << "error: " << e.what() << '\n';
        return exit_failure;
    } catch (const std::exception& e) {
        std::cerr << "error: internal: " << e.what() << '\n';
        return exit_failure;
    }
    return exit_usage;
}
