#pragma once
// Canonical JSON: one byte form for one object, so digests are stable. Keys sorted bytewise
// (nlohmann's default object is a std::map), no insignificant whitespace, UTF-8 kept as is.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ocibuild::oci {

[[nodiscard]] std::string canonical_dump(const nlohmann::json& j);
/// Parses JSON; a syntax error becomes core::Error(invalid_input) naming `what` and the byte offset.
[[nodiscard]] nlohmann::json parse_json(std::string_view text, std::string_view what);

}  // namespace ocibuild::oci
