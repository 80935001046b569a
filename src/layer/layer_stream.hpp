#pragma once
// Private to the layer module: the plain tar bytes of a layer blob, pulled chunk by chunk (as
// libarchive's read callback wants them) and hashed on the way, so that the diff_id of a layer
// comes out of applying it.
//
//   auto source = open_plain_source(fd, "layer sha256:ab12…");
//   for (auto chunk = source->next(); !chunk.empty(); chunk = source->next()) use(chunk);
//   core::Digest diff_id = source->finish().plain;
//
// gzip (ISA-L isal_inflate, concatenated members too, each trailer checked), zstd or plain tar,
// told apart by the magic bytes.
// Blobs over 4 MiB are decompressed on a second thread, up to 6 MiB (or more when asked) ahead of
// the consumer, and hashed on a third, so that inflate, sha256 and the filesystem work overlap
// (inflate alone is about as much work as the filesystem's, sha256 a third of that); smaller ones
// on the caller's thread. When asked, the blob's own bytes are hashed as they are read (a blob not
// checked yet).
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ocibuild/core/digest.hpp"

namespace ocibuild::layer::detail {

/// The compressed bytes as read: how many, and their sha256 when asked (SourceOptions::hash_blob).
struct BlobRead {
    std::uint64_t bytes = 0;
    std::optional<core::Digest> digest;
};

struct SourceDigests {
    core::Digest plain;  // of the plain bytes (empty without SourceOptions::hash_plain)
    BlobRead blob;
};

/// Chunks of plain bytes (1 MiB), kept for reuse by the sources of one tree: memory a thread frees
/// is not always what another one gets, and memory touched for the first time costs (page faults;
/// on VMs the host backing it), so layers applied one after another share theirs. The pool also
/// bounds them: a layer decoded ahead may hold up to its read-ahead while the next one starts, and
/// the next one gets more than the default read-ahead only as the pool has room.
class ChunkPool {
public:
    static constexpr std::size_t chunk_size = std::size_t{1} << 20;
    /// A free chunk, or a new one while fewer than the pool's size were made (or when
    /// `guaranteed`: a source's default read-ahead); else null.
    [[nodiscard]] std::unique_ptr<char[]> take(bool guaranteed);
    void give(std::unique_ptr<char[]> chunk);
    /// Raises the pool's size to `chunks`.
    void allow(std::size_t chunks);

private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<char[]>> free_;
    std::size_t made_ = 0;
    std::size_t size_ = 0;
};

struct SourceOptions {
    bool hash_plain = true;  // false: the plain bytes' digest is known already
    bool hash_blob = false;  // true: the blob's own bytes are hashed too (a blob we did not check)
    /// Plain bytes decoded ahead of the consumer at most (at least 6 MiB): more for a layer
    /// decoded while an earlier one is applied, so that idle CPU goes into it.
    std::size_t read_ahead = 0;
    std::shared_ptr<ChunkPool> pool;  // where chunks come from (null: a pool of the source's own)
};

class PlainSource {
public:
    virtual ~PlainSource() = default;
    /// The next chunk of plain bytes (valid until the next call); empty at the end. Throws
    /// core::Error(invalid_input) for corrupt or truncated data, other categories for I/O errors.
    virtual std::span<const char> next() = 0;
    /// Reads to the end of the stream (bytes after the tar's end still count towards the diff_id)
    /// and returns the digests asked for. Call once.
    virtual SourceDigests finish() = 0;
    /// Back to the default read-ahead (from a larger SourceOptions::read_ahead), freeing memory above
    /// it as the consumer gets through it: a layer decoded ahead has become the one applied.
    virtual void shrink_read_ahead() {}
};

/// A source over the blob on `fd` (read from its current offset). `what` names it in messages.
[[nodiscard]] std::unique_ptr<PlainSource> open_plain_source(int fd, const std::string& what,
                                                            SourceOptions options = {});

}  // namespace ocibuild::layer::detail
