#pragma once
// Private to the layer module: the plain tar bytes of a layer blob, pulled chunk by chunk (as
// libarchive's read callback wants them) and hashed on the way, so that the diff_id of a layer
// comes out of applying it.
//
//   auto source = open_plain_source(fd, "layer sha256:ab12…");
//   for (auto chunk = source->next(); !chunk.empty(); chunk = source->next()) use(chunk);
//   core::Digest diff_id = source->finish();
//
// gzip (ISA-L isal_inflate, concatenated members too, each trailer checked), zstd or plain tar,
// told apart by the magic bytes.
// Blobs over 4 MiB are decompressed on a second thread, up to 6 MiB ahead of the consumer, and
// hashed on a third, so that inflate, sha256 and the filesystem work overlap (inflate alone is
// about as much work as the filesystem's, sha256 a third of that); smaller ones on the caller's
// thread.
#include <memory>
#include <span>
#include <string>

#include "ocibuild/core/digest.hpp"

namespace ocibuild::layer::detail {

class PlainSource {
public:
    virtual ~PlainSource() = default;
    /// The next chunk of plain bytes (valid until the next call); empty at the end. Throws
    /// core::Error(invalid_input) for corrupt or truncated data, other categories for I/O errors.
    virtual std::span<const char> next() = 0;
    /// Reads to the end of the stream (bytes after the tar's end still count towards the diff_id)
    /// and returns the sha256 of everything (an empty digest for a source made without hashing).
    /// Call once.
    virtual core::Digest finish() = 0;
};

/// A source over the blob on `fd` (read from its current offset). `what` names it in messages.
/// `hash` false: the plain bytes are not hashed (their digest is known already).
[[nodiscard]] std::unique_ptr<PlainSource> open_plain_source(int fd, const std::string& what, bool hash = true);

}  // namespace ocibuild::layer::detail
