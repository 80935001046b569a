#pragma once
// Internal to the build module: conda steps. Deciding (which packages: from the lock when it still
// matches, else by solving) is separate from doing (installing them into a layer).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ocibuild/build/base.hpp"
#include "ocibuild/build/builder.hpp"
#include "ocibuild/build/lock.hpp"
#include "ocibuild/conda/channel.hpp"
#include "ocibuild/layer/tar_writer.hpp"

namespace ocibuild::build::detail {

enum class LockMode {
    build,   // use matching entries, solve the others (preferring what was locked)
    locked,  // use matching entries; anything else fails
    relock,  // solve every step afresh (`ocibuild lock`)
    update,  // solve every step preferring locked packages except `update` names (`lock --update`)
};

/// [conda] of the recipe with the command line's overrides.
[[nodiscard]] conda::ChannelConfig channel_config(const recipe::Recipe& recipe, const CondaOptions& options);

/// Every conda step's packages for `base`. Returns the complete lock (with `base_entry`); logs a
/// "lock: step N ..." line for each step solved. LockMode::locked throws core::Error
/// "<recipe>:<line>:<col>: step N (conda): the lock file <path> does not match: <what>; run
/// `ocibuild lock <recipe>`".
[[nodiscard]] LockFile resolve_lock(const recipe::Recipe& recipe, const BaseImage& base, const LockedBase& base_entry,
                                    const store::Store& store, const BuildOptions& options,
                                    const std::optional<LockFile>& previous, const std::filesystem::path& lock_path,
                                    LockMode mode, const std::vector<std::string>& update = {});

/// Installs a resolved step into `root` (a fresh, empty folder) and returns the layer entries of its
/// prefix, owned by root, paths relative to the image root.
[[nodiscard]] std::vector<layer::TarEntry> install_conda_step(const recipe::Recipe& recipe,
                                                              const recipe::CondaStep& step,
                                                              const LockedCondaStep& resolved,
                                                              const std::filesystem::path& root,
                                                              const BuildOptions& options);

}  // namespace ocibuild::build::detail
