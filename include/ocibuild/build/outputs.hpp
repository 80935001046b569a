#pragma once
// Where a built image goes: an OCI layout directory, an oci-archive, or a docker-archive that
// `docker load` and `podman load` accept.
#include <filesystem>
#include <string>
#include <string_view>

#include "ocibuild/core/result.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::build {

struct OutputSpec {
    enum class Kind { oci_layout, oci_archive, docker_archive };
    Kind kind = Kind::oci_layout;
    std::filesystem::path path;
    /// oci / oci-archive: the ref.name tag; docker-archive: a "name:tag" reference.
    std::string tag;

    /// "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE[:NAME:TAG]".
    [[nodiscard]] static Result<OutputSpec> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
};

/// Writes the image `manifest` (with its config and layers, all in `store`) to `out`. `default_tag`
/// is used when the spec has none (for docker-archive: a full name:tag, may be empty).
/// Files appear atomically; an existing layout keeps its other images.
void write_output(const store::Store& store, const oci::Descriptor& manifest, const OutputSpec& out,
                  std::string_view default_tag);

}  // namespace ocibuild::build
