#pragma once
// Virtual packages (CEP 30) for the *target image*, never the build host: __cuda from the base
// config's CUDA_VERSION, __glibc from the base image's libc, __linux, __unix, __archspec from the
// platform. Each can be overridden by the recipe and by CONDA_OVERRIDE_<NAME> (which wins, as in
// conda; an empty value removes the package).
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::conda {

struct VirtualPackage {
    std::string name;     // "__cuda"
    std::string version;  // "12.4"
    std::string build = "0";
    bool operator==(const VirtualPackage&) const = default;
};

/// What the base image tells about itself.
struct TargetFacts {
    std::string subdir;                  // "linux-64"
    std::vector<std::string> env;        // the base config's Env, "KEY=value"
    std::optional<std::string> glibc;    // "2.35" when the base image has a glibc
};

/// Where a virtual package's value came from, for messages ("__cuda 12.4 (CUDA_VERSION of the base image)").
struct VirtualPackageSet {
    std::vector<VirtualPackage> packages;  // sorted by name
    std::map<std::string, std::string> origin;  // name → "base image CUDA_VERSION", "recipe", "CONDA_OVERRIDE_CUDA", "default"
    /// Why a well-known one is absent (e.g. "__cuda": "the base image sets no CUDA_VERSION"), for solve errors.
    std::map<std::string, std::string> absent_reason;
};

/// Combines facts, recipe overrides (name → version, "" = absent) and the process's
/// CONDA_OVERRIDE_* values (`override_env`: "CUDA" → "12.4"; they win over the recipe).
/// Defaults: __unix always; __linux 4.18 (the kernel is the runtime host's, unknown at build
/// time); __archspec 1 with build = the platform's plain arch (x86_64, aarch64, ...); __glibc from
/// facts, absent when the base has none; __cuda from CUDA_VERSION, else absent. Throws
/// core::Error(invalid_input) for an override whose version does not parse.
[[nodiscard]] VirtualPackageSet virtual_packages(const TargetFacts& facts,
                                                 const std::map<std::string, std::string>& recipe_overrides,
                                                 const std::map<std::string, std::string>& override_env);

/// "12.4.1" (CUDA_VERSION) → "12.4".
[[nodiscard]] std::optional<std::string> cuda_version_from_env(const std::vector<std::string>& env);
/// The glibc version in a libc file's bytes ("... release version 2.35." / "GLIBC 2.31") or name
/// ("libc-2.31.so").
[[nodiscard]] std::optional<std::string> glibc_version_from_libc(std::string_view file_name, std::string_view bytes);
/// Scans an image's layers (streaming, nothing extracted; the top-most libc wins) for libc.so.6 /
/// libc-X.Y.so under lib*/ and returns its version.
[[nodiscard]] std::optional<std::string> detect_glibc(const store::Store& store, const oci::ImageManifest& manifest);

}  // namespace ocibuild::conda
