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

/// apply_layer for `layer`, a blob in `store`, whose tar must have the sha256 `diff_id` (the
/// config's): core::Error(integrity) naming both digests otherwise. The tar is hashed only until
/// that was checked once: then the store records it on the blob (Store::record_diff_id) and later
/// applies skip the hash, as the blob's own digest was verified when it entered the store and its
/// gzip/zstd checksums are still checked. A blob stored uncompressed is its own diff_id.
/// `own_store` false (a user's layout read in place): no record is read or written.
ApplyStats apply_stored_layer(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id,
                              const std::filesystem::path& root, const ApplyOptions& options, std::string_view what,
                              bool own_store = true);

/// The owner recorded by Ownership::rootless_xattr on `path`, if any.
struct RecordedOwner {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
};
[[nodiscard]] std::optional<RecordedOwner> recorded_owner(const std::filesystem::path& path);

}  // namespace ocibuild::layer
