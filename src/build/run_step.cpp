#include "run_step.hpp"

#include <unistd.h>

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

// Scratch folders of a step: removed however the step ends. Files a step chmod'ed to 0 are made
// removable first.
class StepDir {
public:
    explicit StepDir(const fs::path& parent) {
        fs::create_directories(parent);
        path_ = parent / ("step-" + core::unique_suffix());
        fs::create_directory(path_);
    }
    ~StepDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
        if (ec) {
            for (auto it = fs::recursive_directory_iterator(path_, fs::directory_options::skip_permission_denied, ec);
                 !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
                std::error_code ec2;
                if (it->is_directory(ec2) && !it->is_symlink(ec2))
                    fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec2);
            }
            fs::remove_all(path_, ec);
        }
    }
    StepDir(const StepDir&) = delete;
    StepDir& operator=(const StepDir&) = delete;
    [[nodiscard]] const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

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
    layer::ApplyOptions apply;
    bool root = ::geteuid() == 0;
    apply.ownership = root ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
    apply.create_devices = root;
    // Lowerdirs must carry the opaque markers the sandbox's overlay mount reads.
    apply.user_xattr_overlay = sandbox::uses_user_namespace(ids_);
    apply.warn = options.log;
    cache_ = std::make_unique<layer::ExtractionCache>(work_ / "layers", apply);
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
    StepDir dir(work_ / "tmp");
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

    std::vector<layer::TarEntry> entries;
    auto lowers = lowerdirs(manifest, config);
    // Owners as the image sees them: the sandbox's ids, not the host's subordinate ones.
    layer::OwnerMap owners = [this](std::uint32_t uid, std::uint32_t gid) {
        return std::pair{ids_.to_sandbox_uid(uid).value_or(65534), ids_.to_sandbox_gid(gid).value_or(65534)};
    };
    sandbox::RunResult result;
    if (overlay_ && !lowers.empty()) {
        spec.lowerdirs = lowers;
        spec.upperdir = dir.path() / "upper";
        spec.workdir = dir.path() / "work";
        fs::create_directory(spec.upperdir);
        fs::create_directory(spec.workdir);
        result = sandbox::run(spec, ids_, options_.cancel);
        if (result.exit_code == 0) entries = layer::diff_overlay_upper(spec.upperdir, owners);
    } else {
        // No overlay (or nothing below): a private copy of the tree, then a diff of two trees.
        auto before = dir.path() / "before";
        spec.rootfs = dir.path() / "rootfs";
        fs::create_directory(before);
        fs::create_directory(spec.rootfs);
        layer::ApplyOptions apply;
        apply.mode = layer::ApplyMode::merge;
        apply.ownership = ::geteuid() == 0 ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
        apply.create_devices = ::geteuid() == 0;
        for (const auto& tree : {before, spec.rootfs}) {
            for (const auto& l : manifest.layers) {
                auto fd = store_.open_blob(l.digest);
                (void)layer::apply_layer(fd.get(), tree, apply, "layer " + l.digest.str());
            }
        }
        result = sandbox::run(spec, ids_, options_.cancel);
        if (result.exit_code == 0) entries = layer::diff_trees(before, spec.rootfs, owners);
    }

    if (result.exit_code != 0) {
        std::string how = result.timed_out   ? "timed out after " + std::to_string(step.timeout_seconds) + " s"
                          : result.cancelled ? "was cancelled"
                          : result.signal    ? "was killed by signal " + std::to_string(result.signal)
                                             : "failed with exit code " + std::to_string(result.exit_code);
        throw Error(ErrorCategory::invalid_input,
                    std::string(label) + ": run \"" + describe_command(step) + "\" " + how);
    }
    return layer::write_layer(store_, std::move(entries), options_.epoch, options_.compression);
}

}  // namespace ocibuild::build::detail
