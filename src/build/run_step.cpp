#include "run_step.hpp"

#include <unistd.h>

#include <functional>
#include <optional>
#include <system_error>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/layer/diff.hpp"

namespace ocibuild::build::detail {

namespace {
using core::Error;
using core::ErrorCategory;
namespace fs = std::filesystem;

// Removes a tree, including folders a step chmod'ed to 0 (opened up first).
void remove_scratch(const fs::path& path) noexcept {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (!ec) return;
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code ec2;
        if (it->is_directory(ec2) && !it->is_symlink(ec2))
            fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec2);
    }
    fs::remove_all(path, ec);
}

// Scratch folders of a step: removed however the step ends, through `as_owner` when its files
// belong to subordinate ids (the caller could not remove them).
class StepDir {
public:
    StepDir(const fs::path& parent, layer::AsTreeOwner as_owner) : as_owner_(std::move(as_owner)) {
        fs::create_directories(parent);
        path_ = parent / ("step-" + core::unique_suffix());
        fs::create_directory(path_);
    }
    ~StepDir() {
        if (as_owner_) {
            try {
                as_owner_([this] { remove_scratch(path_); });
            } catch (...) {  // a destructor must not throw: what is left goes below, or stays
            }
        }
        remove_scratch(path_);
    }
    StepDir(const StepDir&) = delete;
    StepDir& operator=(const StepDir&) = delete;
    [[nodiscard]] const fs::path& path() const { return path_; }

private:
    fs::path path_;
    layer::AsTreeOwner as_owner_;
};

// A LayerBlob made in a user namespace, on its way back to the build.
std::string encode_blob(const layer::LayerBlob& blob) {
    return blob.descriptor.media_type + '\n' + blob.descriptor.digest.str() + '\n' +
           std::to_string(blob.descriptor.size) + '\n' + blob.diff_id.str() + '\n' +
           std::to_string(blob.uncompressed_size) + '\n';
}

layer::LayerBlob decode_blob(const std::string& text) {
    std::vector<std::string> lines;
    for (std::size_t at = 0; at < text.size();) {
        auto eol = text.find('\n', at);
        if (eol == std::string::npos) break;
        lines.push_back(text.substr(at, eol - at));
        at = eol + 1;
    }
    if (lines.size() != 5) throw Error(ErrorCategory::internal, "malformed layer description from the user namespace");
    layer::LayerBlob blob;
    blob.descriptor.media_type = lines[0];
    blob.descriptor.digest = core::Digest::must_parse(lines[1]);
    blob.descriptor.size = std::stoll(lines[2]);
    blob.diff_id = core::Digest::must_parse(lines[3]);
    blob.uncompressed_size = std::stoull(lines[4]);
    return blob;
}

// The folder of extracted layers. Real owners are host ids under one particular map: another map
// (a changed /etc/subuid) needs other trees, and xattr-owned trees must never be taken for them.
fs::path extraction_root(const fs::path& work, const sandbox::IdMaps& ids, bool real_owners) {
    if (!real_owners) return work / "layers";
    std::string map_text;
    for (const auto* maps : {&ids.uids, &ids.gids}) {
        for (const auto& m : *maps)
            map_text += std::to_string(m.inside) + ' ' + std::to_string(m.outside) + ' ' + std::to_string(m.count) + '\n';
        map_text += '\n';
    }
    return work / ("layers-idmapped-" + std::string(core::Digest::of(map_text).hex().substr(0, 16)));
}

std::string describe_command(const recipe::RunStep& step) {
    if (!step.command.empty()) return step.command;
    std::string s;
    for (const auto& a : step.argv) s += (s.empty() ? "" : " ") + a;
    return s;
}

// A cache mount's folder: one per target path, shared by every build on this machine.
fs::path cache_mount_dir(const fs::path& work, const std::string& target) {
    auto digest = core::Digest::of(target);
    return work / "cache-mounts" / std::string(digest.hex().substr(0, 24));
}
}  // namespace

RunContext::RunContext(const store::Store& store, const BuildOptions& options)
    : store_(store), options_(options), work_(options.work_dir), ids_(sandbox::detect_id_maps()) {
    if (work_.empty()) throw Error(ErrorCategory::internal, "run steps need a work directory");
    fs::create_directories(work_ / "tmp");
    overlay_ = sandbox::overlay_available(work_ / "tmp");
    const bool root = ::geteuid() == 0;
    // Rootless with subordinate ids, trees are written and read as root of a user namespace with
    // the sandbox's map: files get their real owners (host: subordinate ids), and every file the
    // step wrote can be read, whatever its mode. Without them, owners live in an xattr.
    real_owners_ = !root && ids_.full();
    if (real_owners_) {
        as_owner_ = [this](const std::function<void()>& work) {
            (void)sandbox::run_in_user_namespace(ids_, [&work] {
                work();
                return std::string();
            });
        };
    }
    layer::ApplyOptions apply;
    apply.ownership = root || real_owners_ ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
    apply.create_devices = root;  // device nodes need the host's root, not a namespace's
    // Lowerdirs must carry the opaque markers the sandbox's overlay mount reads.
    apply.user_xattr_overlay = sandbox::uses_user_namespace(ids_);
    apply.warn = options.log;
    cache_ = std::make_unique<layer::ExtractionCache>(extraction_root(work_, ids_, real_owners_), apply, as_owner_);
}

std::vector<fs::path> RunContext::lowerdirs(const oci::ImageManifest& manifest, const oci::ImageConfig& config) {
    std::vector<fs::path> dirs;
    for (std::size_t i = 0; i < manifest.layers.size(); ++i)
        dirs.push_back(cache_->get(store_, manifest.layers[i], config.diff_ids.at(i)));
    std::reverse(dirs.begin(), dirs.end());  // overlay wants the top-most first
    // The same layer twice (two steps that changed the same things, e.g. two empty layers) is one
    // cache folder, which overlay refuses to stack twice (ELOOP). Only the top-most copy matters:
    // everything the lower copy adds, removes or makes opaque, the upper copy does again above it.
    std::vector<fs::path> unique;
    for (const auto& d : dirs)
        if (std::find(unique.begin(), unique.end(), d) == unique.end()) unique.push_back(d);
    return unique;
}

layer::LayerBlob RunContext::run(const recipe::RunStep& step, const oci::ImageManifest& manifest,
                                 const oci::ImageConfig& config, std::string_view label) {
    StepDir dir(work_ / "tmp", as_owner_);
    sandbox::RunSpec spec;
    spec.argv = step.argv;
    oci::ContainerConfig with_step_env = config.config;
    for (const auto& [k, v] : step.env) with_step_env.set_env(k, v);
    spec.env = std::move(with_step_env.env);
    spec.cwd = !step.workdir.empty() ? step.workdir : !config.config.working_dir.empty() ? config.config.working_dir : "/";
    spec.user = !step.user.empty() ? step.user : config.config.user;
    spec.network = step.network != "none";
    spec.shm_bytes = step.shm_bytes;
    spec.timeout = std::chrono::seconds(step.timeout_seconds);
    for (const auto& target : step.caches) {
        auto host = cache_mount_dir(work_, target);
        fs::create_directories(host);
        spec.binds.push_back(sandbox::BindMount{host, target, false});
    }
    for (const auto& b : step.binds) spec.binds.push_back(sandbox::BindMount{b.source, b.to, true});

    auto lowers = lowerdirs(manifest, config);
    // Owners as the image sees them. In a user namespace with the sandbox's map, stat already
    // gives the sandbox's ids; otherwise host ids are mapped back (the caller is root there).
    layer::OwnerMap owners;
    if (!real_owners_) {
        owners = [this](std::uint32_t uid, std::uint32_t gid) {
            return std::pair{ids_.to_sandbox_uid(uid).value_or(65534), ids_.to_sandbox_gid(gid).value_or(65534)};
        };
    }
    // The step's changes → a layer in the store, as the owner of its files.
    auto make_layer = [&](const std::function<std::vector<layer::TarEntry>()>& diff) {
        if (!real_owners_) return layer::write_layer(store_, diff(), options_.epoch, options_.compression);
        // Blobs written there belong to the caller: root in the namespace is the caller.
        return decode_blob(sandbox::run_in_user_namespace(ids_, [&] {
            return encode_blob(layer::write_layer(store_, diff(), options_.epoch, options_.compression));
        }));
    };
    std::optional<layer::LayerBlob> blob;
    sandbox::RunResult result;
    if (overlay_ && !lowers.empty()) {
        spec.lowerdirs = lowers;
        spec.upperdir = dir.path() / "upper";
        spec.workdir = dir.path() / "work";
        fs::create_directory(spec.upperdir);
        fs::create_directory(spec.workdir);
        result = sandbox::run(spec, ids_, options_.cancel);
        if (result.exit_code == 0)
            blob = make_layer([&] { return layer::diff_overlay_upper(spec.upperdir, owners); });
    } else {
        // No overlay (or nothing below): a private copy of the tree, then a diff of two trees.
        auto before = dir.path() / "before";
        spec.rootfs = dir.path() / "rootfs";
        fs::create_directory(before);
        fs::create_directory(spec.rootfs);
        layer::ApplyOptions apply;
        apply.mode = layer::ApplyMode::merge;
        apply.ownership = ::geteuid() == 0 || real_owners_ ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
        apply.create_devices = ::geteuid() == 0;
        auto copy_trees = [&] {
            for (const auto& root : {before, spec.rootfs}) {
                layer::TreeApplier tree(root, apply);
                for (const auto& l : manifest.layers) {
                    auto fd = store_.open_blob(l.digest);
                    (void)tree.apply(fd.get(), "layer " + l.digest.str());
                }
                tree.finish();
            }
        };
        if (as_owner_) {
            as_owner_(copy_trees);
        } else {
            copy_trees();
        }
        result = sandbox::run(spec, ids_, options_.cancel);
        if (result.exit_code == 0)
            blob = make_layer([&] { return layer::diff_trees(before, spec.rootfs, owners); });
    }

    if (result.exit_code != 0) {
        std::string how = result.timed_out   ? "timed out after " + std::to_string(step.timeout_seconds) + " s"
                          : result.cancelled ? "was cancelled"
                          : result.signal    ? "was killed by signal " + std::to_string(result.signal)
                                             : "failed with exit code " + std::to_string(result.exit_code);
        throw Error(ErrorCategory::invalid_input,
                    std::string(label) + ": run \"" + describe_command(step) + "\" " + how);
    }
    return *blob;
}

}  // namespace ocibuild::build::detail
