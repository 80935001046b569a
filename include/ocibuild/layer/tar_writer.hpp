#pragma once
// Deterministic tar on libarchive: the same entries always give the same bytes.
//  - entries sorted bytewise by path (a parent sorts before its children),
//  - mtime clamped to the build epoch, no atime/ctime/birthtime, whole seconds,
//  - numeric uid/gid with empty user/group names,
//  - "pax restricted" format: plain ustar unless a field needs a PAX record (long names and link
//    targets, sizes over 8 GiB, big ids, xattrs as SCHILY.xattr.*),
//  - hard links kept as links to the first path in sort order,
//  - names as raw bytes whatever the process locale (non-ASCII names get a PAX path record with
//    hdrcharset=BINARY),
//  - records of 512 bytes, ending with two zero records and no further padding (as Go writes).
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
/// A hardlink entry's link_target must name another entry (not a directory); whichever member of
/// a link group sorts first carries the data and the others become links to it, with its metadata.
/// Regular files stream from `source` (never loaded whole) or come from `content`.
/// Throws core::Error naming the entry when a source cannot be read, and invalid_input when it
/// changed size under us, for duplicate or malformed paths ("", absolute, empty, "." or ".."
/// components) and for dangling hard links. Errors thrown by `out` propagate unchanged.
void write_tar(std::vector<TarEntry> entries, std::int64_t epoch, core::ByteSink& out);

/// Entries for the tree under `dir`, paths prefixed with `prefix` (no leading '/'), contents
/// referenced by source path (never loaded in memory), sorted by path. Metadata comes from lstat
/// (symlinks are not followed, except `dir` itself). With a non-empty prefix, `dir` itself is an
/// entry with path == prefix; with an empty one it is not listed. Hard links within the tree
/// become hardlink entries (dev/inode) to the first path in sort order; the security.capability
/// xattr is kept, no other. Sockets are skipped. Throws core::Error naming the path on I/O errors.
[[nodiscard]] std::vector<TarEntry> scan_tree(const std::filesystem::path& dir, const std::string& prefix);

}  // namespace ocibuild::layer
