#pragma once
// The solver: user match specs + channels' repodata + virtual packages → one package per name.
// libsolv is the SAT engine (Debian's lacks its conda module): every match spec reaches it as a
// REL_NAMESPACE dependency answered by our MatchSpec through the namespace callback, and conda's
// candidate order (fewer track_features, higher version, higher build number) through the evr
// each solvable gets. Only the records whose names are reachable from the request are loaded.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/conda/virtual_packages.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::conda {

/// strict: a name found in a higher-priority channel is never taken from a lower one (default);
/// flexible: higher priority preferred, lower ones allowed when needed; disabled: version first.
enum class ChannelPriority { strict, flexible, disabled };

/// "strict", "flexible" or "disabled" (as recipes, lock files and flags spell them); nullopt otherwise.
[[nodiscard]] std::optional<ChannelPriority> parse_channel_priority(std::string_view text);

struct SolveRequest {
    std::vector<std::string> specs;  // as the user wrote them
    /// channels[c] = the RepoData of channel c (its subdirs), highest priority first.
    std::vector<std::vector<const RepoData*>> channels;
    /// Display names of the channels, parallel to `channels`, for messages.
    std::vector<std::string> channel_names;
    VirtualPackageSet virtual_packages;
    ChannelPriority priority = ChannelPriority::strict;
    /// Preferred (not forced) records, e.g. from a lock file: kept when still allowed
    /// (`ocibuild lock --update NAME` passes every locked package except NAME).
    std::vector<PackageRecord> preferred;
};

/// An unsatisfiable request or unknown package. what() explains in the user's terms, one reason
/// per line, e.g. "pytorch 2.4 needs __cuda, but the base image provides none (it sets no
/// CUDA_VERSION; set virtual_packages.__cuda or CONDA_OVERRIDE_CUDA)" or
/// "no package named 'torchx' in conda-forge (linux-64, noarch)".
class SolveError : public core::Error {
public:
    explicit SolveError(std::string message) : core::Error(core::ErrorCategory::invalid_input, std::move(message)) {}
};

/// The packages to install (virtual packages excluded), sorted by name. Deterministic: the same
/// inputs give the same answer. Throws SolveError, or core::Error(invalid_input) for a spec
/// that does not parse (naming the spec and the character).
[[nodiscard]] std::vector<PackageRecord> solve(const SolveRequest& request);

/// Dependencies before their dependents (ties by name): the order to install and to list in an
/// @EXPLICIT file. Cycles are broken deterministically.
[[nodiscard]] std::vector<PackageRecord> sort_topologically(std::vector<PackageRecord> records);

}  // namespace ocibuild::conda
