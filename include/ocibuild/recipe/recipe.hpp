#pragma once
// The TOML recipe, validated. Every value keeps the position it came from so later stages can
// point at it ("recipe.toml:12:9: ...").
//
//   [image]   name, tags, platform
//   [base]    ref = "scratch" | "oci:DIR[:TAG]" | "oci-archive:FILE[:TAG]" | registry reference
//   [[step]]  copy = { from, to, mode?, owner? } | run = "..." | [step.conda] ...
//   [config]  env, workdir, entrypoint, cmd, user, labels, ports, volumes, stop_signal
//   [conda]   channel_alias, mirrors
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/platform.hpp"

namespace ocibuild::recipe {

struct SourcePos {
    std::string file;  // as the user named it
    int line = 0;      // 1-based; 0 = unknown
    int column = 0;    // 1-based
};

/// "file:line:column", how messages point at a recipe position.
[[nodiscard]] std::string to_string(const SourcePos& pos);

struct Diagnostic {
    SourcePos pos;
    std::string message;
    std::string source_line;  // the line of the file at pos, for the caret display
};

/// Thrown by parse_recipe with every mistake found (not just the first).
/// what(): one "file:line:column: message" per diagnostic, each followed by the source line and
/// a caret under the column.
class RecipeError : public core::Error {
public:
    explicit RecipeError(std::vector<Diagnostic> diagnostics);
    [[nodiscard]] const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
};

struct Owner {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
};

struct CopyStep {
    std::string from;                   // relative to the recipe's directory, as written
    std::filesystem::path source;       // resolved absolute path (exists; checked at parse time)
    std::string to;                     // absolute path in the image
    std::optional<std::uint32_t> mode;  // applies to every file copied (dirs keep 0755 | x bits)
    std::optional<Owner> owner;         // "uid:gid" or "uid" (numeric)
};

struct RunBind {
    std::string from;              // relative to the recipe's directory, as written
    std::filesystem::path source;  // resolved absolute path (exists)
    std::string to;                // absolute path in the sandbox
};

struct RunStep {
    std::vector<std::string> argv;  // list form as written; or {shell..., command} for the string form
    std::string command;            // the string form, empty for list form
    std::vector<std::string> shell;  // default {"/bin/sh", "-c"}
    std::map<std::string, std::string> env;
    std::string workdir;
    std::string user;
    std::string network;  // "host" (default) or "none"
    /// Build-time cache mounts (absolute paths in the sandbox), kept between builds and never in
    /// the layer, like BuildKit's --mount=type=cache: e.g. /var/cache/apt, /root/.cache/pip.
    std::vector<std::string> caches;
    /// Read-only binds of files or folders from the recipe's directory; never in the layer.
    std::vector<RunBind> binds;
    int timeout_seconds = 0;  // 0 = no limit
    std::uint64_t shm_bytes = 64ull << 20;
};

struct CondaStep {
    std::string prefix;                  // absolute path in the image, e.g. "/opt/conda"
    std::vector<std::string> channels;   // highest priority first, as written
    std::vector<std::string> packages;   // match specs, as written (checked at parse time)
    /// Overrides of virtual packages (`__cuda = "12.4"`; "" = absent), over what the base image
    /// says; CONDA_OVERRIDE_* in the environment still win.
    std::map<std::string, std::string> virtual_packages;
    std::string channel_priority = "strict";  // "strict" | "flexible" | "disabled"
    SourcePos packages_pos;  // of `packages`, for lock-mismatch messages
};

/// [conda]: where channels live, for every conda step (like .condarc's channel_alias, mirrors).
struct CondaSection {
    std::string channel_alias;  // empty = https://conda.anaconda.org
    std::map<std::string, std::vector<std::string>> mirrors;  // URL prefix → replacement prefixes
};

struct Step {
    SourcePos pos;  // of the [[step]] header
    std::variant<CopyStep, RunStep, CondaStep> action;
    [[nodiscard]] std::string_view kind() const;  // "copy", "run", "conda"
};

struct BaseSpec {
    enum class Kind { scratch, oci_layout, oci_archive, registry };
    Kind kind = Kind::scratch;
    std::string ref;              // as written
    std::filesystem::path path;   // oci_layout / oci_archive: resolved absolute path
    std::string tag;              // oci_layout / oci_archive: optional tag; registry: the reference
    SourcePos pos;
};

struct ImageSection {
    std::string name;  // repository, may be empty
    std::vector<std::string> tags;
    oci::Platform platform{"linux", "amd64", "", "", {}};
};

struct ConfigSection {
    std::map<std::string, std::string> env;  // values may hold ${VAR}: expanded by the build
    std::optional<std::string> workdir;
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    std::optional<std::string> user;
    std::map<std::string, std::string> labels;
    std::vector<std::string> ports;    // "80", "53/udp" → normalised "80/tcp", "53/udp"
    std::vector<std::string> volumes;  // absolute paths
    std::optional<std::string> stop_signal;
    std::string author;
};

struct Recipe {
    std::filesystem::path file;       // as given
    std::filesystem::path directory;  // absolute directory holding the recipe (the build context)
    ImageSection image;
    BaseSpec base;
    std::vector<Step> steps;
    ConfigSection config;
    CondaSection conda;
};

/// Parses and validates `file`. Throws RecipeError (all mistakes, exit code 2 in the CLI) or
/// core::Error(not_found) when the file itself cannot be read.
[[nodiscard]] Recipe parse_recipe(const std::filesystem::path& file);
/// Same, from text (for tests); `file` names it in messages, relative paths resolve against `directory`.
[[nodiscard]] Recipe parse_recipe_text(std::string_view text, const std::filesystem::path& file,
                                       const std::filesystem::path& directory);

}  // namespace ocibuild::recipe
