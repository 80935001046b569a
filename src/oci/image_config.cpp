#include "ocibuild/oci/image_config.hpp"

#include <ctime>

#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/json.hpp"

namespace ocibuild::oci {

namespace {
using core::Error;
using core::ErrorCategory;
using nlohmann::json;

// Docker writes {"80/tcp": {}} maps; null means absent.
std::set<std::string> key_set(const json& j, const char* key) {
    std::set<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    for (const auto& [k, v] : it->items()) out.insert(k);
    return out;
}

json as_key_map(const std::set<std::string>& keys) {
    json m = json::object();
    for (const auto& k : keys) m[k] = json::object();
    return m;
}

std::optional<std::vector<std::string>> string_list(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    return it->get<std::vector<std::string>>();
}

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    return it->get<std::string>();
}
}  // namespace

std::optional<std::string> ContainerConfig::get_env(std::string_view key) const {
    for (const auto& e : env) {
        auto eq = e.find('=');
        std::string_view k = eq == std::string::npos ? std::string_view(e) : std::string_view(e).substr(0, eq);
        if (k == key) return eq == std::string::npos ? std::string{} : e.substr(eq + 1);
    }
    return std::nullopt;
}

void ContainerConfig::set_env(std::string_view key, std::string_view value) {
    std::string entry = std::string(key) + "=" + std::string(value);
    for (auto& e : env) {
        auto eq = e.find('=');
        std::string_view k = eq == std::string::npos ? std::string_view(e) : std::string_view(e).substr(0, eq);
        if (k == key) {
            e = entry;
            return;
        }
    }
    env.push_back(std::move(entry));
}

ImageConfig ImageConfig::parse(std::string_view text, std::string_view what) {
    auto j = parse_json(text, what);
    try {
        if (!j.is_object()) throw Error(ErrorCategory::invalid_input, "not a JSON object");
        ImageConfig c;
        c.created = str(j, "created");
        c.author = str(j, "author");
        c.architecture = str(j, "architecture");
        c.os = str(j, "os");
        c.variant = str(j, "variant");
        c.os_version = str(j, "os.version");
        if (auto it = j.find("config"); it != j.end() && it->is_object()) {
            const json& cc = *it;
            c.config.user = str(cc, "User");
            c.config.exposed_ports = key_set(cc, "ExposedPorts");
            c.config.env = string_list(cc, "Env").value_or(std::vector<std::string>{});
            c.config.entrypoint = string_list(cc, "Entrypoint");
            c.config.cmd = string_list(cc, "Cmd");
            c.config.volumes = key_set(cc, "Volumes");
            c.config.working_dir = str(cc, "WorkingDir");
            if (auto l = cc.find("Labels"); l != cc.end() && !l->is_null())
                c.config.labels = l->get<std::map<std::string, std::string>>();
            c.config.stop_signal = str(cc, "StopSignal");
        }
        const json& rootfs = j.at("rootfs");
        if (str(rootfs, "type") != "layers")
            throw Error(ErrorCategory::invalid_input, "rootfs.type must be \"layers\"");
        for (const auto& d : rootfs.at("diff_ids")) c.diff_ids.push_back(core::Digest::must_parse(d.get<std::string>()));
        if (auto h = j.find("history"); h != j.end() && h->is_array()) {
            for (const auto& e : *h) {
                HistoryEntry he;
                he.created = str(e, "created");
                he.created_by = str(e, "created_by");
                he.author = str(e, "author");
                he.comment = str(e, "comment");
                he.empty_layer = e.value("empty_layer", false);
                c.history.push_back(std::move(he));
            }
        }
        return c;
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": " + e.what());
    } catch (Error& e) {
        e.with_context(std::string(what));
        throw;
    }
}

json ImageConfig::to_json() const {
    json j = json::object();
    if (!created.empty()) j["created"] = created;
    if (!author.empty()) j["author"] = author;
    j["architecture"] = architecture;
    j["os"] = os;
    if (!variant.empty()) j["variant"] = variant;
    if (!os_version.empty()) j["os.version"] = os_version;
    json cc = json::object();
    if (!config.user.empty()) cc["User"] = config.user;
    if (!config.exposed_ports.empty()) cc["ExposedPorts"] = as_key_map(config.exposed_ports);
    if (!config.env.empty()) cc["Env"] = config.env;
    if (config.entrypoint) cc["Entrypoint"] = *config.entrypoint;
    if (config.cmd) cc["Cmd"] = *config.cmd;
    if (!config.volumes.empty()) cc["Volumes"] = as_key_map(config.volumes);
    if (!config.working_dir.empty()) cc["WorkingDir"] = config.working_dir;
    if (!config.labels.empty()) cc["Labels"] = config.labels;
    if (!config.stop_signal.empty()) cc["StopSignal"] = config.stop_signal;
    j["config"] = cc;
    json ids = json::array();
    for (const auto& d : diff_ids) ids.push_back(d.str());
    j["rootfs"] = json{{"type", "layers"}, {"diff_ids", ids}};
    if (!history.empty()) {
        json h = json::array();
        for (const auto& e : history) {
            json he = json::object();
            if (!e.created.empty()) he["created"] = e.created;
            if (!e.created_by.empty()) he["created_by"] = e.created_by;
            if (!e.author.empty()) he["author"] = e.author;
            if (!e.comment.empty()) he["comment"] = e.comment;
            if (e.empty_layer) he["empty_layer"] = true;
            h.push_back(std::move(he));
        }
        j["history"] = std::move(h);
    }
    return j;
}

std::string ImageConfig::serialize() const { return canonical_dump(to_json()); }

std::string rfc3339(std::int64_t epoch_seconds) {
    std::time_t t = static_cast<std::time_t>(epoch_seconds);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace ocibuild::oci
