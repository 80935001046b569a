#include "ocibuild/oci/descriptor.hpp"

#include "ocibuild/core/error.hpp"

namespace ocibuild::oci {

void to_json(nlohmann::json& j, const Descriptor& d) {
    j = nlohmann::json::object();
    j["mediaType"] = d.media_type;
    j["digest"] = d.digest.str();
    j["size"] = d.size;
    if (!d.urls.empty()) j["urls"] = d.urls;
    if (!d.annotations.empty()) j["annotations"] = d.annotations;
    if (d.platform) j["platform"] = *d.platform;
    if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
}

void from_json(const nlohmann::json& j, Descriptor& d) {
    using core::Error;
    using core::ErrorCategory;
    if (!j.is_object()) throw Error(ErrorCategory::invalid_input, "descriptor must be an object");
    auto need = [&](const char* key) -> const nlohmann::json& {
        auto it = j.find(key);
        if (it == j.end()) throw Error(ErrorCategory::invalid_input, std::string("descriptor lacks \"") + key + "\"");
        return *it;
    };
    const auto& mt = need("mediaType");
    const auto& digest = need("digest");
    const auto& size = need("size");
    if (!mt.is_string() || !digest.is_string() || !size.is_number_integer())
        throw Error(ErrorCategory::invalid_input, "descriptor has a field of the wrong type");
    d.media_type = mt.get<std::string>();
    d.digest = core::Digest::must_parse(digest.get<std::string>());
    d.size = size.get<std::int64_t>();
    if (d.size < 0) throw Error(ErrorCategory::invalid_input, "descriptor " + d.digest.str() + " has a negative size");
    d.urls = j.contains("urls") ? j.at("urls").get<std::vector<std::string>>() : std::vector<std::string>{};
    d.annotations = j.contains("annotations") ? j.at("annotations").get<Annotations>() : Annotations{};
    if (j.contains("platform")) d.platform = j.at("platform").get<Platform>();
    else d.platform.reset();
    d.artifact_type = j.value("artifactType", "");
}

}  // namespace ocibuild::oci
