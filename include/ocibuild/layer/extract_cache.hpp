#pragma once
// Each layer extracted once, into <root>/<diff_id hex>/, in overlay form (ApplyMode::overlay), and
// reused by every later build as an overlayfs lowerdir. Safe for concurrent builds: a layer is
// extracted into a private temporary folder and renamed into place only when complete (with a
// lock file so two builds don't both do the work); an interrupted extraction is never used and
// is swept later.
#include <filesystem>
#include <functional>
#include <vector>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/layer/apply.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::layer {

/// Runs `work` with the identity that owns the cache's trees. The build passes a user namespace
/// with the sandbox's subordinate id map here when trees are extracted with their real owners
/// (Ownership::preserve, rootless): only root in that namespace may chown, and remove what it made.
/// Empty: in this process.
using AsTreeOwner = std::function<void(const std::function<void()>& work)>;

class ExtractionCache {
public:
    /// `root` is created when missing. `options.mode` is forced to overlay. Extraction, and the
    /// removal of unfinished or stale temporary trees, run through `as_owner` when it is set.
    /// Trees of different ownership (xattr owners, real owners under another id map) must not
    /// share a root.
    ExtractionCache(std::filesystem::path root, ApplyOptions options, AsTreeOwner as_owner = {});

    /// The folder holding `layer` (a blob in `store`, uncompressed digest `diff_id`), extracting
    /// it first when needed. The tar's sha256 is checked against diff_id while extracting.
    [[nodiscard]] std::filesystem::path get(const store::Store& store, const oci::Descriptor& layer,
                                            const core::Digest& diff_id);

    [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

private:
    std::filesystem::path root_;
    ApplyOptions options_;
    AsTreeOwner as_owner_;
};

}  // namespace ocibuild::layer
