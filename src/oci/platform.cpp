#include "ocibuild/oci/platform.hpp"

#include <nlohmann/json.hpp>

#include "ocibuild/core/error.hpp"

namespace ocibuild::oci {

namespace {
bool valid_part(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return false;
    return true;
}
}  // namespace

Result<Platform> Platform::parse(std::string_view text) {
    Platform p;
    std::size_t start = 0;
    std::vector<std::string_view> parts;
    while (true) {
        auto slash = text.find('/', start);
        parts.push_back(text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    if (parts.size() < 2 || parts.size() > 3)
        return parse_fail("platform must look like os/arch[/variant], e.g. linux/amd64", 0);
    std::size_t offset = 0;
    for (auto part : parts) {
        if (!valid_part(part)) return parse_fail("bad platform component \"" + std::string(part) + "\"", offset);
        offset += part.size() + 1;
    }
    p.os = parts[0];
    p.architecture = parts[1];
    if (parts.size() == 3) p.variant = parts[2];
    return p;
}

std::string Platform::to_string() const {
    std::string s = os + "/" + architecture;
    if (!variant.empty()) s += "/" + variant;
    return s;
}

bool Platform::matches(const Platform& wanted) const {
    if (os != wanted.os || architecture != wanted.architecture) return false;
    if (wanted.variant.empty()) return true;
    auto norm = [&](const std::string& v) { return (v.empty() && architecture == "arm64") ? std::string("v8") : v; };
    return norm(variant) == norm(wanted.variant);
}

void to_json(nlohmann::json& j, const Platform& p) {
    j = nlohmann::json::object();
    j["architecture"] = p.architecture;
    j["os"] = p.os;
    if (!p.variant.empty()) j["variant"] = p.variant;
    if (!p.os_version.empty()) j["os.version"] = p.os_version;
    if (!p.os_features.empty()) j["os.features"] = p.os_features;
}

void from_json(const nlohmann::json& j, Platform& p) {
    if (!j.is_object()) throw core::Error(core::ErrorCategory::invalid_input, "platform must be an object");
    p.architecture = j.value("architecture", "");
    p.os = j.value("os", "");
    p.variant = j.value("variant", "");
    p.os_version = j.value("os.version", "");
    if (j.contains("os.features")) p.os_features = j.at("os.features").get<std::vector<std::string>>();
}

}  // namespace ocibuild::oci
