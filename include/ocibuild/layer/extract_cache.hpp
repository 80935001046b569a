#pragma once
// Each layer extracted once, into <root>/<diff_id hex>/, in overlay form (ApplyMode::overlay), and
// reused by every later build as an overlayfs lowerdir. Safe for concurrent builds: a layer is
// extracted into a private temporary folder and renamed into place only when complete (with a
// lock file so two builds don't both do the work); an interrupted extraction is never used and
// is swept later.
#include <filesystem>
#include <vector>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/layer/apply.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::layer {

class ExtractionCache {
public:
    /// `root` is created when missing. `options.mode` is forced to overlay.
    ExtractionCache(std::filesystem::path root, ApplyOptions options);

    /// The folder holding `layer` (a blob in `store`, uncompressed digest `diff_id`), extracting
    /// it first when needed. The tar's sha256 is checked against diff_id while extracting.
    [[nodiscard]] std::filesystem::path get(const store::Store& store, const oci::Descriptor& layer,
                                            const core::Digest& diff_id);

    [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

private:
    std::filesystem::path root_;
    ApplyOptions options_;
};

}  // namespace ocibuild::layer
