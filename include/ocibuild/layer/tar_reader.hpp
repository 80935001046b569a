#pragma once
// Streaming tar reading on libarchive (plain, gzip or zstd, detected from the data).
#include <functional>

#include "ocibuild/core/sink.hpp"
#include "ocibuild/layer/tar_writer.hpp"

namespace ocibuild::layer {

/// Streams an entry's content into a sink; valid only during the callback.
using ContentReader = std::function<void(core::ByteSink&)>;

/// Reads the tar on `fd` entry by entry. `entry` has path (normalised: no leading "./" or "/",
/// no trailing '/'), type, mode, ids, mtime, size, link_target, xattrs; content is not loaded:
/// call `read_content` to stream it. Throws core::Error(invalid_input) naming `what` on a
/// malformed archive.
void read_tar(int fd, std::string_view what,
              const std::function<void(const TarEntry& entry, const ContentReader& read_content)>& fn);

}  // namespace ocibuild::layer
