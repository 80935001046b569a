#pragma once
// What changed, as layer entries ready for write_layer().
#include <cstdint>
#include <filesystem>
#include <functional>
#include <utility>
#include <vector>

#include "ocibuild/layer/tar_writer.hpp"

namespace ocibuild::layer {

/// Host uid/gid as stat sees them → the owner the layer records (the sandbox's ids when the tree
/// was written in a user namespace). Empty: ids are taken as they are.
using OwnerMap = std::function<std::pair<std::uint32_t, std::uint32_t>(std::uint32_t uid, std::uint32_t gid)>;

/// An overlayfs upper directory as an OCI layer: whiteout devices (char 0/0, or the
/// trusted./user.overlay.whiteout xattr) become `.wh.NAME` entries, opaque directories
/// (trusted./user.overlay.opaque = "y") get a `.wh..wh..opq` entry, everything else is taken as
/// scan_tree() would, with owners from user.rootlesscontainers when present. Overlay's own
/// bookkeeping xattrs (trusted.overlay.*, user.overlay.*) never reach the layer.
/// Throws core::Error: invalid_input for a name starting with ".wh." (it would read as a whiteout)
/// or a malformed user.rootlesscontainers; unsupported for redirect_dir/metacopy upper entries.
[[nodiscard]] std::vector<TarEntry> diff_overlay_upper(const std::filesystem::path& upper,
                                                        const OwnerMap& owner_map = {});

/// The change from `before` to `after` (two full trees, for when overlay is unavailable): new and
/// changed entries (type, mode, owner, size, mtime, link target or xattrs differ), and a
/// whiteout for everything removed (one for a removed directory, not one per child).
/// Contents are never read: a regular file with the same size and mtime (to the nanosecond) as
/// before counts as unchanged, the quick check of rsync and containers/storage. Throws like
/// diff_overlay_upper for names starting with ".wh.".
[[nodiscard]] std::vector<TarEntry> diff_trees(const std::filesystem::path& before, const std::filesystem::path& after,
                                               const OwnerMap& owner_map = {});

}  // namespace ocibuild::layer
