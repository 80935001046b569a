#pragma once
// Applying a layer (plain, gzip or zstd tar) onto a directory, safely.
//
// Nothing a layer contains can create, change or read anything outside `root`: every path is
// resolved inside the root (openat2 RESOLVE_IN_ROOT where the kernel has it, else a component-by-
// component walk with O_NOFOLLOW that treats symlinks as if root were "/"); ".." never climbs out,
// absolute symlinks point inside the root, hard links must name a path inside the root.
// A refused or failed entry stops the apply with an error naming the entry; the file being written
// at that moment is removed, so the tree holds no partial file.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::layer {

enum class ApplyMode {
    /// OCI rules onto an existing tree (umoci unpack, docker): `.wh.NAME` deletes NAME from below,
    /// `.wh..wh..opq` empties the directory of what lower layers put there; neither appears in the
    /// result. Hard links may point at files of lower layers.
    merge,
    /// One layer into an empty directory that will be an overlayfs lowerdir: whiteouts become
    /// overlay whiteouts (character device 0/0) and opaque markers the directory xattr
    /// (trusted.overlay.opaque, or user.overlay.opaque when `user_xattr_overlay`).
    overlay,
};

enum class Ownership {
    /// chown to the tar's uid/gid (root, or a user namespace with a full subordinate id map).
    preserve,
    /// Files stay owned by the caller; the tar's owner, when not 0:0, is kept in the xattr
    /// user.rootlesscontainers (the protobuf umoci and rootlesskit use) so a layer written from
    /// this tree later gets the right owners.
    rootless_xattr,
};

struct ApplyOptions {
    ApplyMode mode = ApplyMode::merge;
    Ownership ownership = Ownership::preserve;
    /// Device nodes are created only when true (mknod needs privilege); otherwise skipped, and
    /// `warn` is called once listing what was skipped.
    bool create_devices = false;
    bool user_xattr_overlay = false;
    /// false: resolve paths with the component-by-component walk even where openat2 exists (tests
    /// and fuzzing run both resolvers; they must agree).
    bool use_openat2 = true;
    std::function<void(std::string_view)> warn;
};

struct ApplyStats {
    core::Digest diff_id;  // sha256 of the uncompressed tar, computed while applying
    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;  // of regular file content written
    std::vector<std::string> skipped_devices;
};

/// Applies the layer read from `layer_fd` onto `root` (which must exist). `what` names the layer in
/// messages ("layer sha256:ab12…"). Throws core::Error(invalid_input) for a hostile or malformed
/// entry ("layer sha256:…: entry \"../x\": path escapes the root"), other categories for I/O.
ApplyStats apply_layer(int layer_fd, const std::filesystem::path& root, const ApplyOptions& options,
                       std::string_view what);

/// Where a layer blob comes from, for apply_stored_layer.
enum class BlobSource {
    /// Our store: the blob was verified when it came in, and its checked diff_id is recorded on it.
    own_store,
    /// A user's layout read in place, the blob checked against its descriptor already: no records.
    checked_layout,
    /// A user's layout read in place: the blob is checked against the layer's size and digest as it
    /// is read (core::Error(integrity) naming the blob; when it fails to decode, its digest is
    /// checked first, so that a damaged blob is named as such). No records.
    unchecked_layout,
};

/// apply_layer for `layer`, a blob in `store`, whose tar must have the sha256 `diff_id` (the
/// config's): core::Error(integrity) naming both digests otherwise. The tar is hashed only until
/// that was checked once: then the store records it on the blob (Store::record_diff_id) and later
/// applies skip the hash, as the blob's own digest was verified when it entered the store and its
/// gzip/zstd checksums are still checked. A blob stored uncompressed is its own diff_id.
ApplyStats apply_stored_layer(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id,
                              const std::filesystem::path& root, const ApplyOptions& options, std::string_view what,
                              BlobSource from = BlobSource::own_store);

namespace detail {
class Applier;
}

/// A stored layer opened ahead of its turn (TreeApplier::open_stored): its blob is being decoded,
/// and hashed, on threads of its own while earlier layers are applied.
class StoredLayer {
public:
    StoredLayer(StoredLayer&&) noexcept;
    StoredLayer& operator=(StoredLayer&&) noexcept;
    ~StoredLayer();

private:
    friend class TreeApplier;
    struct State;
    explicit StoredLayer(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

/// Layers applied one after another onto one tree (an image unpacked, a copy of a root
/// filesystem). Directories get their modes and times once, in finish(), after the last layer:
/// a later layer writing into a directory would change its mtime again (its own entry for the
/// directory, if any, wins), and a directory it made 0555 would be in the way.
class TreeApplier {
public:
    /// `root` must exist.
    TreeApplier(const std::filesystem::path& root, const ApplyOptions& options);
    /// Without finish() (a failure): directories are finished anyway, errors ignored.
    ~TreeApplier();
    TreeApplier(const TreeApplier&) = delete;
    TreeApplier& operator=(const TreeApplier&) = delete;

    /// apply_layer's work, without finishing directories.
    ApplyStats apply(int layer_fd, std::string_view what);
    /// apply_stored_layer's work, without finishing directories.
    ApplyStats apply_stored(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id,
                            std::string_view what, BlobSource from = BlobSource::own_store);
    /// The same in two steps, so that a layer's blob is decoded while the one before it is applied:
    /// open_stored starts decoding it, up to `read_ahead` bytes of tar (memory held until applied),
    /// and apply_stored applies it. Every check and error is apply_stored's, in the layer's turn.
    /// `store` must outlive the StoredLayer.
    StoredLayer open_stored(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id,
                            std::string_view what, BlobSource from = BlobSource::own_store,
                            std::size_t read_ahead = 0);
    ApplyStats apply_stored(StoredLayer layer);
    /// Directory modes and times, deepest first.
    void finish();

private:
    std::unique_ptr<detail::Applier> applier_;
    bool finished_ = false;
};

/// Removes everything inside `dir` (not `dir` itself), never following symlinks; directories left
/// without write permission (a rootless apply) are made writable on the way. For a failed unpack.
void clear_tree(const std::filesystem::path& dir);

/// The owner recorded by Ownership::rootless_xattr on `path`, if any.
struct RecordedOwner {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
};
[[nodiscard]] std::optional<RecordedOwner> recorded_owner(const std::filesystem::path& path);

}  // namespace ocibuild::layer
