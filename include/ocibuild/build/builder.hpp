#pragma once
// Recipe → image in the store. Deciding (checks, plan) happens before doing: every unsupported
// step or base is reported before any blob is written.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/build/lock.hpp"
#include "ocibuild/layer/compress.hpp"
#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/recipe/recipe.hpp"
#include "ocibuild/registry/client.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::build {

/// Conda settings the command line gives, over the recipe's [conda].
struct CondaOptions {
    /// --channel-alias: replaces [conda] channel_alias when set.
    std::string channel_alias;
    /// --mirror PREFIX=URL: replaces the recipe's mirrors of the same prefix.
    std::map<std::string, std::vector<std::string>> mirrors;
    /// CONDA_OVERRIDE_<NAME> values the cli read ("CUDA" → "12.4"; "" removes the package).
    std::map<std::string, std::string> override_env;
};

struct BuildOptions {
    /// The build epoch: config/history "created", the created annotation, and the clamp for every
    /// file time in new layers. The CLI takes it from SOURCE_DATE_EPOCH, else 0; never the clock.
    std::int64_t epoch = 0;
    layer::CompressionOptions compression;
    /// Holds what builds keep between runs besides blobs: extracted layers (layers/), cache mounts
    /// (cache-mounts/) and step scratch space (tmp/). Needed by run steps.
    std::filesystem::path work_dir;
    /// Set by another thread (Ctrl-C) to stop a running step.
    const std::atomic<bool>* cancel = nullptr;
    /// Pulls registry bases; without one a registry base is an error.
    registry::RegistryClient* registry = nullptr;
    /// Progress lines ("[2/3] copy hello/ → /hello"); may be empty.
    std::function<void(std::string_view)> log;
    CondaOptions conda;
    /// The lock file; empty = lock_path_for(recipe.file). A step whose lock entry matches the
    /// recipe and base image uses the locked packages; others are solved and the lock rewritten.
    std::filesystem::path lock_file;
    /// --locked: a missing lock, or any entry that does not match, fails the build instead.
    bool locked = false;
};

struct BuiltImage {
    oci::Descriptor manifest;  // in the store
    oci::ImageManifest image_manifest;
    oci::ImageConfig config;
};

/// Throws core::Error(unsupported) naming the recipe position when the recipe needs something this
/// version cannot do yet. Called by build() first; exposed for `--dry-run`-like checks.
void check_supported(const recipe::Recipe& recipe);

/// `${VAR}` expanded against `env` ("KEY=value" list); unknown variables expand to "".
[[nodiscard]] std::string expand_vars(std::string_view value, const std::vector<std::string>& env);

/// `ocibuild lock`: loads the base image (pinning its digest) and resolves every conda step,
/// then writes the lock file (options.lock_file, else beside the recipe) and returns it.
/// With `update` names, the existing lock's packages other than those stay preferred (so only the
/// named ones move, and whatever their new versions need); without, every step is solved afresh.
/// Throws core::Error(not_found) when `update` is given and there is no lock, or a name is in no
/// locked step.
LockFile lock_recipe(const recipe::Recipe& recipe, const store::Store& store, const BuildOptions& options,
                     const std::vector<std::string>& update = {});

[[nodiscard]] BuiltImage build_image(const recipe::Recipe& recipe, const store::Store& store,
                                     const BuildOptions& options);

}  // namespace ocibuild::build
