#pragma once
// Id maps, module-internal part: parsing /etc/subuid-style files, choosing how a child's user
// namespace gets its maps, and writing them from the parent while the child waits.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "ocibuild/sandbox/sandbox.hpp"

namespace ocibuild::sandbox::idmap {

struct SubidRange {
    std::uint32_t start = 0;
    std::uint32_t count = 0;
    bool operator==(const SubidRange&) const = default;
};

/// The ranges an /etc/subuid- or /etc/subgid-style text ("owner:start:count" lines, owner a name
/// or a numeric id) grants to the user `name` or `id`, in file order. Blank, comment ("#") and
/// malformed lines are skipped, as shadow's tools do.
[[nodiscard]] std::vector<SubidRange> parse_subid_ranges(std::string_view text, std::string_view name,
                                                         std::uint32_t id);

/// The sandbox's map: 0 → `self`, then the ranges one after another from sandbox id 1. At most
/// 340 lines (the kernel's limit); ids past 2^32-2 are cut off.
[[nodiscard]] std::vector<IdMapping> layout(std::uint32_t self, const std::vector<SubidRange>& ranges);

/// The absolute path of `name` (newuidmap, newgidmap) in the standard system folders when it is
/// setuid-root or carries file capabilities; empty when there is none. Fixed folders, not $PATH:
/// the library reads no environment.
[[nodiscard]] std::filesystem::path find_setuid_helper(std::string_view name);

/// Whether `ids` maps every id to itself (what root gets: no remapping, no user namespace).
[[nodiscard]] bool is_identity(const IdMaps& ids);

/// How the child's user namespace gets its maps.
enum class Writer {
    none,         // no user namespace at all: root with the identity map
    self_single,  // unprivileged, one id each: the parent writes /proc/PID/{setgroups=deny,uid_map,gid_map}
    as_root,      // root with other maps: the parent writes the map files directly
    helpers,      // unprivileged with ranges: newuidmap and newgidmap (setuid) write them
};
[[nodiscard]] Writer writer_for(const IdMaps& ids);

/// Writes the id maps of `pid`'s user namespace (the parent's side of the handshake). Throws
/// core::Error naming what failed, with the helper's own message when newuidmap refuses.
void write_id_maps(pid_t pid, const IdMaps& ids, Writer writer);

}  // namespace ocibuild::sandbox::idmap
