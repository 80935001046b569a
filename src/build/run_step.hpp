#pragma once
// Internal to the build module: one `run` step, from the image so far to a new layer.
#include <memory>
#include <string_view>

#include "ocibuild/build/builder.hpp"
#include "ocibuild/layer/extract_cache.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

namespace ocibuild::build::detail {

/// What run steps of one build share: the extraction cache, id maps, and whether overlay works.
class RunContext {
public:
    RunContext(const store::Store& store, const BuildOptions& options);

    /// Runs `step` on top of `manifest`'s layers with `config`'s environment; returns the layer of
    /// its changes. A failing command throws core::Error naming `label`, the command and its exit
    /// code; nothing of the step is kept.
    [[nodiscard]] layer::LayerBlob run(const recipe::RunStep& step, const oci::ImageManifest& manifest,
                                       const oci::ImageConfig& config, std::string_view label);

private:
    std::vector<std::filesystem::path> lowerdirs(const oci::ImageManifest& manifest, const oci::ImageConfig& config);

    const store::Store& store_;
    const BuildOptions& options_;
    std::filesystem::path work_;
    sandbox::IdMaps ids_;
    bool overlay_;
    /// Rootless with subordinate ids: trees hold real owners and are handled through as_owner_
    /// (root of a user namespace with ids_); empty otherwise.
    bool real_owners_ = false;
    layer::AsTreeOwner as_owner_;
    std::unique_ptr<layer::ExtractionCache> cache_;
};

}  // namespace ocibuild::build::detail
