#pragma once
// Deterministic tar on libarchive: the same entries always give the same bytes.
//  - entries sorted bytewise by path (a parent sorts before its children),
//  - mtime clamped to the build epoch, no atime/ctime/birthtime, whole seconds,
//  - numeric uid/gid with empty user/group names,
//  - "pax restricted" format: plain ustar unless a field needs a PAX record (long names and link
//    targets, sizes over 8 GiB, big ids, xattrs as SCHILY.xattr.*),
//  - hard links kept as links to the first path in sort order.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ocibuild/core/sink.hpp"

namespace ocibuild::layer {

enum class EntryType { regular, directory, symlink, hardlink, char_device, block_device, fifo };

struct TarEntry {
    std::string path;  // relative, '/'-separated, no leading "/" or "./", no trailing '/'
    EntryType type = EntryType::regular;
    std::uint32_t mode = 0644;  // permission bits incl. setuid/setgid/sticky (07777)
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::int64_t mtime = 0;        // clamped to the epoch when written
    std::string link_target;       // symlink target, or hard-link target path (archive path)
    std::filesystem::path source;  // regular file content comes from this file ...
    std::string content;           // ... or, when source is empty, from these bytes
    std::int64_t size = 0;         // of a regular file (checked against the source while copying)
    std::map<std::string, std::string> xattrs;  // e.g. security.capability
    std::uint32_t dev_major = 0;
    std::uint32_t dev_minor = 0;
};

/// Writes `entries` as one deterministic tar stream into `out` (and calls out.finish()).
/// Throws core::Error naming the entry when a source cannot be read or changed size under us,
/// and invalid_input for duplicate or malformed paths.
void write_tar(std::vector<TarEntry> entries, std::int64_t epoch, core::ByteSink& out);

/// Entries for the tree under `dir`, paths prefixed with `prefix` (no leading '/'), contents
/// referenced by source path (never loaded in memory). Hard links within the tree become
/// hardlink entries (dev/inode), xattrs of the security.capability kind kept. Sockets are skipped.
[[nodiscard]] std::vector<TarEntry> scan_tree(const std::filesystem::path& dir, const std::string& prefix);

}  // namespace ocibuild::layer
