#pragma once
// Private to the conda module: linking one extracted package into a prefix, by copy, as conda,
// mamba and rattler do it (reference sections 1-3): files per info/paths.json (legacy info/files
// + info/has_prefix), symlinks kept, prefix placeholders replaced (text: every occurrence, long
// shebangs rewritten to /usr/bin/env; binary: same length, NUL-padded), noarch: python paths
// mapped to site-packages and bin/, entry points from info/link.json. No .pyc compilation, no
// post-link scripts.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/conda/repodata.hpp"

namespace ocibuild::conda::detail {

/// The python of the environment, for noarch: python packages.
struct PythonInfo {
    std::string short_version;  // "3.12"
    std::string site_packages;  // "lib/python3.12/site-packages" (or python_site_packages_path)
    std::string interpreter;    // "bin/python3.12"
};

/// The python among `packages`, or nullopt. Throws core::Error(invalid_input) for a version
/// without two components or a python_site_packages_path that leaves the prefix.
[[nodiscard]] std::optional<PythonInfo> find_python(const std::vector<PackageRecord>& packages);

/// One installed path, as conda-meta's paths_data records it.
struct LinkedPath {
    std::string path;       // relative to the prefix
    std::string path_type;  // hardlink | softlink | directory | unix_python_entry_point
    std::string sha256;     // as the package gives it; empty when it does not
    std::string sha256_in_prefix;
    std::optional<std::uint64_t> size_in_bytes;
    std::string file_mode;           // "text" | "binary" when there is a placeholder
    std::string prefix_placeholder;  // empty when none
    bool no_link = false;
};

class TaskPool;

struct LinkContext {
    int prefix_fd = -1;  // the prefix folder inside the tree being built
    std::string prefix;  // its absolute path in the image, "/opt/conda"
    std::optional<PythonInfo> python;
    std::function<void(std::string_view)> log;
    /// Copies and patches file contents in parallel (names, directories and symlinks are made in
    /// order on the calling thread, so the tree never depends on scheduling). Null: inline.
    TaskPool* pool = nullptr;
};

/// Links the package extracted at `package_dir` into the prefix; the paths it installed, in the
/// package's order, entry points last. Later packages replace files of earlier ones.
[[nodiscard]] std::vector<LinkedPath> link_package(const PackageRecord& record, const std::string& package_dir,
                                                   const LinkContext& context);

/// Receives output pieces in order.
using Emit = std::function<void(std::string_view)>;

/// Text-mode replacement of a whole file: every `placeholder` → `prefix`, then a first-line
/// shebang longer than 127 bytes (or any shebang when the prefix has a space) becomes
/// "#!/usr/bin/env <interpreter name><rest of the line>".
void replace_text(std::string_view data, std::string_view placeholder, std::string_view prefix, const Emit& emit);

/// Binary-mode replacement: each C string holding the placeholder gets every occurrence replaced
/// and is padded with NULs to its old length, so the size never changes. Returns false, having
/// emitted nothing, when the prefix is longer than the placeholder and the placeholder occurs.
[[nodiscard]] bool replace_binary(std::string_view data, std::string_view placeholder, std::string_view prefix,
                                  const Emit& emit);

}  // namespace ocibuild::conda::detail
