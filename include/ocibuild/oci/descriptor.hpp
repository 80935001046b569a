#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/oci/platform.hpp"

namespace ocibuild::oci {

using Annotations = std::map<std::string, std::string>;

struct Descriptor {
    std::string media_type;
    core::Digest digest;
    std::int64_t size = 0;
    std::vector<std::string> urls;
    Annotations annotations;
    std::optional<Platform> platform;
    std::string artifact_type;

    bool operator==(const Descriptor&) const = default;
};

inline constexpr std::string_view annotation_ref_name = "org.opencontainers.image.ref.name";
inline constexpr std::string_view annotation_created = "org.opencontainers.image.created";
inline constexpr std::string_view annotation_base_name = "org.opencontainers.image.base.name";
inline constexpr std::string_view annotation_base_digest = "org.opencontainers.image.base.digest";

/// Throw core::Error(invalid_input) naming the missing or malformed field.
void to_json(nlohmann::json& j, const Descriptor& d);
void from_json(const nlohmann::json& j, Descriptor& d);

}  // namespace ocibuild::oci
