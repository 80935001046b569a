#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::oci {

/// An OCI image manifest or a Docker schema2 manifest (same shape, different media types).
struct ImageManifest {
    std::string media_type{media_type::oci_manifest};
    std::string artifact_type;
    Descriptor config;
    std::vector<Descriptor> layers;
    std::optional<Descriptor> subject;
    Annotations annotations;

    /// Validates schemaVersion 2 and the media type; throws core::Error(invalid_input or unsupported
    /// for schema1) naming `what`.
    [[nodiscard]] static ImageManifest parse(std::string_view text, std::string_view what);
    [[nodiscard]] nlohmann::json to_json() const;
    /// Canonical bytes: the digest of a manifest is the digest of exactly these bytes.
    [[nodiscard]] std::string serialize() const;
};

/// An OCI image index or a Docker manifest list.
struct ImageIndex {
    std::string media_type{media_type::oci_index};
    std::vector<Descriptor> manifests;
    Annotations annotations;

    [[nodiscard]] static ImageIndex parse(std::string_view text, std::string_view what);
    [[nodiscard]] nlohmann::json to_json() const;
    [[nodiscard]] std::string serialize() const;

    /// The first manifest for `platform` (attestation entries skipped). Throws core::Error(not_found)
    /// "<what> has no image for linux/arm64 (available: linux/amd64, ...)".
    [[nodiscard]] const Descriptor& select(const Platform& platform, std::string_view what) const;
};

}  // namespace ocibuild::oci
