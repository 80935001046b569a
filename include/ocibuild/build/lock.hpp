#pragma once
// The lock file: what a recipe resolved to, pinned so the next build gets the same image.
// `<recipe stem>.lock` beside the recipe (pytorch.toml → pytorch.lock), TOML written by hand in a
// fixed order (one key per line, packages sorted by name, arrays one item per line) so that it is
// stable and diffs well:
//
//   version = 1
//   [base]            ref, platform, digest (the platform's manifest; absent for scratch)
//   [[conda]]         step (1-based), prefix, subdir, channel_priority, channels, specs, inputs
//   [conda.virtual_packages]   __cuda = "12.4", __archspec = "1=x86_64" (version[=build])
//   [[conda.package]] name, version, build, build_number, subdir, url, sha256, md5, size, ...
//
// `inputs` is a sha256 over everything that decides a step's answer (specs, channel URLs, subdir,
// priority, virtual packages): when the recipe or the base image changes it, the entry is stale.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/conda/virtual_packages.hpp"

namespace ocibuild::build {

struct LockedBase {
    std::string ref;       // as the recipe writes it
    std::string platform;  // "linux/amd64"
    std::string digest;    // the platform's manifest digest; empty for scratch
    bool operator==(const LockedBase&) const = default;
};

struct LockedCondaStep {
    std::size_t step = 0;  // 1-based index of the recipe step
    std::string prefix;
    std::string subdir;
    std::string channel_priority;       // "strict" | "flexible" | "disabled"
    std::vector<std::string> channels;  // canonical URLs, highest priority first
    std::vector<std::string> specs;     // as the recipe writes them
    std::vector<conda::VirtualPackage> virtual_packages;  // sorted by name
    std::string inputs;                 // conda_inputs_hash of the above
    std::vector<conda::PackageRecord> packages;  // sorted by name
    bool operator==(const LockedCondaStep&) const = default;
};

struct LockFile {
    std::optional<LockedBase> base;
    std::vector<LockedCondaStep> conda;  // by step

    /// The entry of recipe step `step` (1-based), or nullptr.
    [[nodiscard]] const LockedCondaStep* find(std::size_t step) const;
    bool operator==(const LockFile&) const = default;
};

inline constexpr int lock_format_version = 1;

/// "dir/pytorch.toml" → "dir/pytorch.lock".
[[nodiscard]] std::filesystem::path lock_path_for(const std::filesystem::path& recipe_file);

/// sha256 (hex) over a canonical text of what decides a conda step's answer. Order of specs and
/// channels matters (channels are a priority order); virtual packages are taken sorted by name.
[[nodiscard]] std::string conda_inputs_hash(const std::vector<std::string>& specs,
                                            const std::vector<std::string>& channel_urls, std::string_view subdir,
                                            std::string_view channel_priority,
                                            const std::vector<conda::VirtualPackage>& virtual_packages);

/// The lock file text (deterministic: the same LockFile gives the same bytes). Steps are written
/// in step order and packages sorted by name whatever order they are given in.
[[nodiscard]] std::string serialize_lock(const LockFile& lock);

/// Parses lock file text; `source` names it in errors. Throws core::Error(invalid_input)
/// "<source>:<line>:<column>: <what>" for bad TOML, a missing or mistyped key, or an unknown version.
/// A record's `fn` is the last segment of its URL; `channel` is read back as written.
[[nodiscard]] LockFile parse_lock(std::string_view text, const std::string& source);

/// The lock at `path`, or nullopt when there is none. Throws as parse_lock.
[[nodiscard]] std::optional<LockFile> read_lock(const std::filesystem::path& path);
/// Writes serialize_lock(lock) to `path` atomically.
void write_lock(const std::filesystem::path& path, const LockFile& lock);

/// A CEP 23 explicit spec ("@EXPLICIT") for `subdir`: one `url#sha256:<hex>` (or `url#<md5>`, or
/// the bare URL) per record, in the order given (callers pass dependency order).
[[nodiscard]] std::string explicit_spec(std::string_view subdir, const std::vector<conda::PackageRecord>& records);

/// "__cuda" → "12.4", "__archspec" → "1=x86_64": a virtual package as the lock writes it.
[[nodiscard]] std::string virtual_package_text(const conda::VirtualPackage& package);

}  // namespace ocibuild::build
