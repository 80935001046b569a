#pragma once
// The image a build starts from: scratch, a local OCI layout, or an oci-archive. Its manifest,
// config and layers end up verified in the build's store.
#include <optional>
#include <string>

#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/recipe/recipe.hpp"
#include "ocibuild/registry/client.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::build {

struct BaseImage {
    oci::ImageManifest manifest;      // no layers for scratch
    oci::ImageConfig config;          // os/architecture set even for scratch
    std::optional<oci::Descriptor> descriptor;  // the manifest's descriptor; empty for scratch
    std::string name;                 // for the base.name annotation; empty for scratch
};

/// Loads `spec` for `platform` into `store` (blobs verified on the way in). An index picks the
/// manifest for `platform`, with an error listing what is available. Throws core::Error with the
/// recipe position as context.
[[nodiscard]] BaseImage load_base(const recipe::BaseSpec& spec, const oci::Platform& platform,
                                  const store::Store& store, registry::RegistryClient* registry);

/// Copies the image or index `top` of a local OCI layout (`path`, `tag`; archive when `archive`)
/// into `store`, every blob verified; an index brings the manifests it names that the source has.
/// Returns the top descriptor.
[[nodiscard]] oci::Descriptor import_local_image(const std::filesystem::path& path, std::string_view tag, bool archive,
                                                 const store::Store& store);

/// The entry of `index` tagged `tag` (the only entry when `tag` is empty); errors name `where` and
/// the tags it has.
[[nodiscard]] oci::Descriptor resolve_tag(const oci::ImageIndex& index, std::string_view tag, std::string_view where);

/// From a descriptor in `store` that may be an index: the manifest for `platform`.
[[nodiscard]] oci::Descriptor select_platform(const store::Store& store, const oci::Descriptor& desc,
                                              const oci::Platform& platform, std::string_view what);

}  // namespace ocibuild::build
