#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocibuild/core/digest.hpp"

namespace ocibuild::oci {

/// The runtime part of an image config ("config" in the JSON).
struct ContainerConfig {
    std::string user;
    std::set<std::string> exposed_ports;  // "80/tcp"
    std::vector<std::string> env;         // "KEY=value", order kept
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    std::set<std::string> volumes;
    std::string working_dir;
    std::map<std::string, std::string> labels;
    std::string stop_signal;

    /// Value of KEY in env, if set.
    [[nodiscard]] std::optional<std::string> get_env(std::string_view key) const;
    /// Replaces KEY in place when present, appends otherwise.
    void set_env(std::string_view key, std::string_view value);
    bool operator==(const ContainerConfig&) const = default;
};

struct HistoryEntry {
    std::string created;  // RFC 3339
    std::string created_by;
    std::string author;
    std::string comment;
    bool empty_layer = false;
    bool operator==(const HistoryEntry&) const = default;
};

struct ImageConfig {
    std::string created;  // RFC 3339, empty = omitted
    std::string author;
    std::string architecture;
    std::string os;
    std::string variant;
    std::string os_version;
    ContainerConfig config;
    std::vector<core::Digest> diff_ids;
    std::vector<HistoryEntry> history;

    /// Tolerates unknown fields (Docker adds container, docker_version...); they are not kept.
    [[nodiscard]] static ImageConfig parse(std::string_view text, std::string_view what);
    [[nodiscard]] nlohmann::json to_json() const;
    [[nodiscard]] std::string serialize() const;
};

/// RFC 3339 UTC ("1970-01-01T00:00:00Z") for seconds since the epoch.
[[nodiscard]] std::string rfc3339(std::int64_t epoch_seconds);

}  // namespace ocibuild::oci
