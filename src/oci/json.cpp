#include "ocibuild/oci/json.hpp"

#include "ocibuild/core/error.hpp"

namespace ocibuild::oci {

std::string canonical_dump(const nlohmann::json& j) {
    // Compact, sorted keys (std::map), invalid UTF-8 refused rather than replaced silently.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

nlohmann::json parse_json(std::string_view text, std::string_view what) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw core::Error(core::ErrorCategory::invalid_input,
                          std::string(what) + ": malformed JSON at byte " + std::to_string(e.byte));
    }
}

}  // namespace ocibuild::oci
