#include "ocibuild/oci/manifest.hpp"

#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/json.hpp"

namespace ocibuild::oci {

namespace {
using core::Error;
using core::ErrorCategory;

// Runs a JSON decoding body, turning library exceptions into one invalid_input error naming `what`.
template <class Fn>
auto decode(std::string_view what, Fn&& fn) {
    try {
        return fn();
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": " + e.what());
    } catch (Error& e) {
        e.with_context(std::string(what));
        throw;
    }
}

void check_schema_version(const nlohmann::json& j) {
    if (!j.is_object()) throw Error(ErrorCategory::invalid_input, "not a JSON object");
    auto it = j.find("schemaVersion");
    if (it == j.end() || !it->is_number_integer())
        throw Error(ErrorCategory::invalid_input, "missing schemaVersion");
    if (it->get<int>() == 1)
        throw Error(ErrorCategory::unsupported,
                    "Docker schema 1 manifests are not supported (re-push the image with a current client)");
    if (it->get<int>() != 2)
        throw Error(ErrorCategory::invalid_input, "unsupported schemaVersion " + it->dump());
}
}  // namespace

ImageManifest ImageManifest::parse(std::string_view text, std::string_view what) {
    auto j = parse_json(text, what);
    return decode(what, [&] {
        check_schema_version(j);
        ImageManifest m;
        m.media_type = j.value("mediaType", std::string(media_type::oci_manifest));
        if (!media_type::is_manifest(m.media_type))
            throw Error(ErrorCategory::invalid_input, "mediaType \"" + m.media_type + "\" is not an image manifest");
        m.artifact_type = j.value("artifactType", "");
        m.config = j.at("config").get<Descriptor>();
        m.layers = j.at("layers").get<std::vector<Descriptor>>();
        if (j.contains("subject")) m.subject = j.at("subject").get<Descriptor>();
        if (j.contains("annotations")) m.annotations = j.at("annotations").get<Annotations>();
        return m;
    });
}

nlohmann::json ImageManifest::to_json() const {
    nlohmann::json j = nlohmann::json::object();
    j["schemaVersion"] = 2;
    j["mediaType"] = media_type;
    if (!artifact_type.empty()) j["artifactType"] = artifact_type;
    j["config"] = config;
    j["layers"] = nlohmann::json::array();
    for (const auto& l : layers) j["layers"].push_back(l);
    if (subject) j["subject"] = *subject;
    if (!annotations.empty()) j["annotations"] = annotations;
    return j;
}

std::string ImageManifest::serialize() const { return canonical_dump(to_json()); }

ImageIndex ImageIndex::parse(std::string_view text, std::string_view what) {
    auto j = parse_json(text, what);
    return decode(what, [&] {
        check_schema_version(j);
        ImageIndex idx;
        idx.media_type = j.value("mediaType", std::string(media_type::oci_index));
        if (!media_type::is_index(idx.media_type))
            throw Error(ErrorCategory::invalid_input, "mediaType \"" + idx.media_type + "\" is not an image index");
        idx.manifests = j.at("manifests").get<std::vector<Descriptor>>();
        if (j.contains("annotations")) idx.annotations = j.at("annotations").get<Annotations>();
        return idx;
    });
}

nlohmann::json ImageIndex::to_json() const {
    nlohmann::json j = nlohmann::json::object();
    j["schemaVersion"] = 2;
    j["mediaType"] = media_type;
    j["manifests"] = nlohmann::json::array();
    for (const auto& m : manifests) j["manifests"].push_back(m);
    if (!annotations.empty()) j["annotations"] = annotations;
    return j;
}

std::string ImageIndex::serialize() const { return canonical_dump(to_json()); }

const Descriptor& ImageIndex::select(const Platform& platform, std::string_view what) const {
    std::string available;
    for (const auto& m : manifests) {
        if (!m.platform || m.platform->os == "unknown") continue;  // BuildKit attestations
        if (m.platform->matches(platform)) return m;
        available += (available.empty() ? "" : ", ") + m.platform->to_string();
    }
    throw Error(ErrorCategory::not_found, std::string(what) + " has no image for " + platform.to_string() +
                                              " (available: " + (available.empty() ? "none" : available) + ")");
}

}  // namespace ocibuild::oci
