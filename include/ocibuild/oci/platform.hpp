#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ocibuild/core/result.hpp"

namespace ocibuild::oci {

struct Platform {
    std::string os;
    std::string architecture;
    std::string variant;
    std::string os_version;
    std::vector<std::string> os_features;

    /// "os/arch[/variant]", e.g. "linux/amd64", "linux/arm64/v8".
    [[nodiscard]] static Result<Platform> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    /// os, architecture and variant agree (an empty arm64 variant counts as v8).
    [[nodiscard]] bool matches(const Platform& wanted) const;
    bool operator==(const Platform&) const = default;
};

void to_json(nlohmann::json& j, const Platform& p);
void from_json(const nlohmann::json& j, Platform& p);

}  // namespace ocibuild::oci
