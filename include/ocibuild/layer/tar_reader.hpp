#pragma once
// Streaming tar reading on libarchive (plain, gzip or zstd, detected from the data).
#include <functional>

#include "ocibuild/core/sink.hpp"
#include "ocibuild/layer/tar_writer.hpp"

namespace ocibuild::layer {

/// Streams an entry's content into a sink; valid only during the callback.
using ContentReader = std::function<void(core::ByteSink&)>;

/// Reads the tar on `fd` entry by entry. `entry` has path (normalised: no leading "./" or "/",
/// no trailing '/'; the archive root "./" itself comes with an empty path), type, mode, ids,
/// mtime, size, link_target (hard-link targets normalised like paths, symlink targets verbatim),
/// xattrs; content is not loaded: call `read_content` (at most once, during the callback) to
/// stream it, holes of sparse entries as zeros; unread content is skipped. Throws
/// core::Error(invalid_input) naming `what` and the entry on a malformed, damaged or truncated
/// archive and on sockets or unknown entry types.
void read_tar(int fd, std::string_view what,
              const std::function<void(const TarEntry& entry, const ContentReader& read_content)>& fn);

}  // namespace ocibuild::layer
