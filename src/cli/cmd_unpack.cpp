// unpack: an image's layers applied in order into a directory (a root filesystem).
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include "common.hpp"
#include "ocibuild/build/base.hpp"
#include "ocibuild/build/outputs.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/layer/apply.hpp"
#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::cli {

namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorCategory;

/// Tar bytes of the next layer decoded at most while the current one is applied: memory that buys
/// the idle CPU of a layer of a few large files (the applying thread waits for inflate; peak RSS
/// about 100 MB with 64 MiB, which gains about 10% on the bench image of docs/benchmarks.md).
constexpr std::size_t decode_ahead_bytes = std::size_t{64} << 20;

struct UnpackArgs {
    std::string image;
    std::string dir;
    std::string platform;
    std::string store;
    bool force = false;
    bool quiet = false;
    bool no_openat2 = false;  // hidden: tests run the fallback resolver through the CLI too
    RegistryFlags registry;
};

/// Where the image is read from: a local OCI layout in place (as umoci does: nothing is copied into
/// the store, and each layer blob is checked against its size and digest before or while it is
/// applied; BlobChecks), or the store.
struct ImageSource {
    std::optional<store::Store> layout;
    oci::Descriptor top;  // index or manifest
};

/// The image: a layout read in place; an archive imported into `store`; a tag in the store; or
/// pulled from a registry, in that order.
ImageSource locate(UnpackArgs& args, const store::Store& store, const oci::Platform& platform) {
    const std::string& text = args.image;
    if (text.starts_with("oci:") || text.starts_with("oci-archive:")) {
        auto spec = build::OutputSpec::parse(text);
        if (!spec) throw UsageError("bad image location \"" + text + "\": " + spec.error().message);
        if (spec->kind == build::OutputSpec::Kind::oci_archive)
            return {std::nullopt, build::import_local_image(spec->path, spec->tag, true, store)};
        return core::with_context("reading " + spec->path.string(), [&] {
            auto layout = store::Store::open(spec->path, false);
            auto top = build::resolve_tag(layout.index(), spec->tag, spec->path.string());
            top.annotations.clear();
            return ImageSource{std::move(layout), std::move(top)};
        });
    }
    // A tag in the store (what `pull` and `build` leave there) needs no network.
    try {
        return {std::nullopt, store.resolve(text)};
    } catch (const Error& e) {
        if (e.category() != ErrorCategory::not_found) throw;
    }
    auto ref = parse_reference(text);
    args.registry.quiet = args.quiet;
    auto client = args.registry.make_client({ref.registry});
    return {std::nullopt, registry::pull(*client, ref, platform, store).manifest};
}

/// Checks a layout's layer blobs against their descriptors ahead of their turn, on a thread of its
/// own and in layer order, with CPU time nothing else wants (SCHED_IDLE; a layer of many small
/// files keeps the applying thread busy and leaves the inflating one waiting). A layer whose turn
/// comes first is claimed: its check, if under way, is dropped, and the blob is checked as it is
/// applied instead. Lock-free, so that the applying thread never waits for a starved checker.
class BlobChecks {
public:
    BlobChecks(const store::Store& layout, std::vector<oci::Descriptor> blobs)
        : layout_(layout), blobs_(std::move(blobs)), states_(blobs_.size()), errors_(blobs_.size()) {
        thread_ = std::thread([this] { check_all(); });
    }
    ~BlobChecks() {
        stopping_ = true;
        thread_.join();
    }
    BlobChecks(const BlobChecks&) = delete;
    BlobChecks& operator=(const BlobChecks&) = delete;

    /// Blob i's turn: checked_layout when its check passed (its failure is thrown), otherwise
    /// unchecked_layout, and the thread leaves it alone.
    layer::BlobSource claim(std::size_t i) {
        State state = states_[i].load();
        for (;;) {
            if (state == State::passed) return layer::BlobSource::checked_layout;
            if (state == State::failed) std::rethrow_exception(errors_[i]);  // written before `failed`
            if (states_[i].compare_exchange_weak(state, State::claimed)) return layer::BlobSource::unchecked_layout;
        }
    }

private:
    enum class State { waiting = 0, checking, passed, failed, claimed };

    void check_all() {
        const struct sched_param idle {};
        (void)::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &idle);
        for (std::size_t i = 0; i < blobs_.size() && !stopping_; ++i) {
            State state = State::waiting;
            if (!states_[i].compare_exchange_strong(state, State::checking)) continue;  // claimed
            std::exception_ptr error;
            try {
                if (!layout_.verify_blob(blobs_[i], [&] { return !stopping_ && states_[i] == State::checking; }))
                    continue;
            } catch (...) {
                error = std::current_exception();
            }
            errors_[i] = error;  // read by claim() only once it sees `failed`
            state = State::checking;
            (void)states_[i].compare_exchange_strong(state, error ? State::failed : State::passed);
        }
    }

    const store::Store& layout_;
    std::vector<oci::Descriptor> blobs_;
    std::vector<std::atomic<State>> states_;
    std::vector<std::exception_ptr> errors_;
    std::atomic<bool> stopping_ = false;
    std::thread thread_;
};

bool is_empty_dir(const fs::path& dir) { return fs::directory_iterator(dir) == fs::directory_iterator(); }

int run_unpack(UnpackArgs& args) {
    const auto started = std::chrono::steady_clock::now();
    auto platform = platform_or_host(args.platform);
    auto store = open_store(args.store);

    const fs::path dir(args.dir);
    std::error_code ec;
    const bool existed = fs::exists(fs::symlink_status(dir));
    bool was_empty = true;
    if (existed) {
        if (!fs::is_directory(fs::symlink_status(dir)))
            throw Error(ErrorCategory::already_exists, args.dir + " exists and is not a directory");
        was_empty = is_empty_dir(dir);
        if (!args.force && !was_empty)
            throw Error(ErrorCategory::already_exists, args.dir + " is not empty (--force unpacks onto it anyway)");
    }

    const ImageSource located = locate(args, store, platform);
    const store::Store& source = located.layout ? *located.layout : store;
    const auto& top = located.top;
    auto manifest_desc = oci::media_type::is_index(top.media_type)
                             ? build::select_platform(source, top, platform, args.image)
                             : top;
    auto manifest = oci::ImageManifest::parse(source.read_verified(manifest_desc),
                                              "manifest " + manifest_desc.digest.str());
    auto config = oci::ImageConfig::parse(source.read_verified(manifest.config),
                                          "config " + manifest.config.digest.str());
    if (config.diff_ids.size() != manifest.layers.size())
        throw Error(ErrorCategory::invalid_input,
                    "image " + manifest_desc.digest.str() + " has " + std::to_string(manifest.layers.size()) +
                        " layers but its config lists " + std::to_string(config.diff_ids.size()) + " diff_ids");
    for (const auto& l : manifest.layers)
        if (!oci::media_type::is_layer(l.media_type))
            throw Error(ErrorCategory::unsupported,
                        "layer " + l.digest.str() + " has media type \"" + l.media_type + "\", not a layer");

    fs::create_directories(dir, ec);
    if (ec) throw Error(ErrorCategory::internal, "creating " + args.dir + ": " + ec.message());

    // As root the tree gets the layers' owners and device nodes; otherwise files stay ours and the
    // owners go into user.rootlesscontainers (as `umoci unpack --rootless` does).
    layer::ApplyOptions options;
    options.mode = layer::ApplyMode::merge;
    const bool root = ::geteuid() == 0;
    options.ownership = root ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
    options.create_devices = root;
    options.use_openat2 = !args.no_openat2;
    options.warn = [](std::string_view text) { std::cerr << "warning: " << text << '\n'; };

    std::optional<BlobChecks> checks;
    if (located.layout) checks.emplace(*located.layout, manifest.layers);

    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;
    try {
        layer::TreeApplier tree(dir, options);
        const auto open = [&](std::size_t i, std::size_t read_ahead) {
            const auto& l = manifest.layers[i];
            const std::string what = "layer " + std::to_string(i + 1) + "/" +
                                     std::to_string(manifest.layers.size()) + " (" + l.digest.str().substr(0, 19) +
                                     ")";
            const auto from = checks ? checks->claim(i) : layer::BlobSource::own_store;
            return tree.open_stored(source, l, config.diff_ids[i], what, from, read_ahead);
        };
        // Each layer's blob is decoded while the one before it is applied: a layer of many small
        // files leaves the decoding thread idle, one of a few large files the applying thread.
        std::optional<layer::StoredLayer> current;
        if (!manifest.layers.empty()) current.emplace(open(0, 0));
        for (std::size_t i = 0; i < manifest.layers.size(); ++i) {
            std::optional<layer::StoredLayer> next;
            if (i + 1 < manifest.layers.size()) next.emplace(open(i + 1, decode_ahead_bytes));
            const auto stats = tree.apply_stored(std::move(*current));
            entries += stats.entries;
            bytes += stats.bytes;
            current = std::move(next);
        }
        tree.finish();
    } catch (...) {
        // A tree that is only part of the image must not pass for the image: what this unpack
        // wrote goes (all of it, when the directory was new or empty).
        if (was_empty) {
            try {
                layer::clear_tree(dir);
                if (!existed) fs::remove(dir);
            } catch (const std::exception& e) {
                std::cerr << "warning: the partial tree in " << args.dir << " was not removed: " << e.what() << '\n';
            }
        }
        throw;
    }
    if (!args.quiet) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        char line[160];
        std::snprintf(line, sizeof line, "%zu layers, %llu entries, %.1f MB of files in %.2f s",
                      manifest.layers.size(), static_cast<unsigned long long>(entries),
                      static_cast<double>(bytes) / 1e6, secs);
        std::cerr << "unpacked " << args.image << " into " << args.dir << ": " << line << '\n';
    }
    return 0;
}

}  // namespace

Command add_unpack_command(CLI::App& app) {
    auto args = std::make_shared<UnpackArgs>();
    auto* cmd = app.add_subcommand("unpack", "Apply an image's layers into a directory (a root filesystem)");
    cmd->add_option("image", args->image,
                    "oci:DIR[:TAG], oci-archive:FILE[:TAG], a tag in the store, or a registry reference")
        ->required();
    cmd->add_option("dir", args->dir, "Directory to unpack into (created when missing; must be empty)")->required();
    cmd->add_option("--platform", args->platform, "os/arch[/variant] to pick from an index (default: this machine's)");
    cmd->add_option("--store", args->store, "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
    cmd->add_flag("--force", args->force, "Unpack onto a directory that is not empty");
    cmd->add_flag("-q,--quiet", args->quiet, "No progress or summary output");
    cmd->add_flag("--no-openat2", args->no_openat2, "Resolve paths without openat2 (testing)")->group("");
    args->registry.add_to(*cmd);
    return {cmd, [args] { return run_unpack(*args); }};
}

}  // namespace ocibuild::cli
