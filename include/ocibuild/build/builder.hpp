#pragma once
// Recipe → image in the store. Deciding (checks, plan) happens before doing: every unsupported
// step or base is reported before any blob is written.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "ocibuild/layer/compress.hpp"
#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/recipe/recipe.hpp"
#include "ocibuild/registry/client.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::build {

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

[[nodiscard]] BuiltImage build_image(const recipe::Recipe& recipe, const store::Store& store,
                                     const BuildOptions& options);

}  // namespace ocibuild::build
