#pragma once
// A content-addressed blob store laid out as an OCI image layout:
//
//   <root>/oci-layout            {"imageLayoutVersion":"1.0.0"}
//   <root>/index.json            an image index; tags in org.opencontainers.image.ref.name
//   <root>/blobs/sha256/<hex>    verified blobs only
//   <root>/ingest/               temporary files of writers in progress (swept when stale)
//
// A layer blob whose uncompressed content was once checked against a diff_id carries that digest
// in the xattr user.ocibuild.diff_id (as containerd keeps it in the label containerd.io/
// uncompressed), so later applies need not hash the tar again.
//
// Lifecycle of a blob:
//   auto w = store.ingest();          // a private temp file under ingest/
//   w.write(...);                     // streamed, hashed as it goes
//   auto d = w.commit(mt, expected);  // size and digest checked, then renamed into blobs/
// A blob becomes visible only after its digest was verified; readers never see half a blob;
// two writers of the same blob both rename identical bytes, so neither corrupts it.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/sink.hpp"
#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/oci/manifest.hpp"

namespace ocibuild::store {

class Store;

/// Streams one blob into the store. Not thread-safe; one writer per thread.
class BlobWriter : public core::ByteSink {
public:
    BlobWriter(BlobWriter&&) noexcept;
    BlobWriter& operator=(BlobWriter&&) noexcept;
    ~BlobWriter() override;  // aborts (removes the temp file) unless committed

    void write(const void* data, std::size_t size) override;
    using core::ByteSink::write;
    [[nodiscard]] std::uint64_t size() const noexcept { return hasher_.bytes(); }

    /// Verifies what was written against `expected_digest` / `expected_size` when given
    /// (core::Error integrity naming both digests otherwise), publishes the blob and returns its
    /// descriptor with `media_type`.
    oci::Descriptor commit(std::string_view media_type,
                           const std::optional<core::Digest>& expected_digest = std::nullopt,
                           std::optional<std::int64_t> expected_size = std::nullopt);

private:
    friend class Store;
    BlobWriter(const Store& store, std::filesystem::path temp, core::UniqueFd fd);
    const Store* store_;
    std::filesystem::path temp_;
    core::UniqueFd fd_;
    core::Sha256 hasher_;
    bool done_ = false;
};

class Store {
public:
    /// Opens the layout at `root`, creating it when missing (and `create` is true). Refuses a
    /// directory that holds an oci-layout of another version. Sweeps ingest files older than a day.
    [[nodiscard]] static Store open(const std::filesystem::path& root, bool create = true);

    [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
    [[nodiscard]] std::filesystem::path blob_path(const core::Digest& digest) const;
    [[nodiscard]] bool has(const core::Digest& digest) const;

    [[nodiscard]] BlobWriter ingest() const;
    /// Stores a small in-memory blob (manifest, config) and returns its descriptor.
    oci::Descriptor put(std::string_view bytes, std::string_view media_type) const;
    /// Reads a small blob whole (JSON documents; refuses more than 64 MiB). Not found → core::Error.
    [[nodiscard]] std::string read(const core::Digest& digest) const;
    [[nodiscard]] core::UniqueFd open_blob(const core::Digest& digest) const;
    /// Reads the blob `desc` names and checks its size and digest (core::Error(integrity) naming
    /// both digests otherwise): for stores that are not ours, such as a user's layout read in place.
    /// `go_on`, if given, is asked after each MiB: false abandons the check (returns false).
    bool verify_blob(const oci::Descriptor& desc, const std::function<bool()>& go_on = nullptr) const;
    /// The same check for `bytes` and `digest` found while reading the blob some other way (as it
    /// was applied, say).
    void check_blob(const oci::Descriptor& desc, std::uint64_t bytes, const core::Digest& digest) const;
    /// read() of a small blob, checked against desc.digest like verify_blob.
    [[nodiscard]] std::string read_verified(const oci::Descriptor& desc) const;
    /// Puts a blob of `from` into this store without re-reading it when possible (hard link, then copy),
    /// verifying the digest when it has to copy.
    /// `trusted`: `from` is a store of ours whose blobs were verified on the way in, so a hard link
    /// is enough; otherwise the bytes are streamed and checked against desc.digest.
    void import_blob(const Store& from, const oci::Descriptor& desc, bool trusted = false) const;

    /// The uncompressed digest recorded for the layer blob `digest` by record_diff_id, if any.
    [[nodiscard]] std::optional<core::Digest> recorded_diff_id(const core::Digest& digest) const;
    /// Records that the blob `digest` decompresses to `diff_id`; call only after checking it.
    /// Best effort: where the filesystem or the blob's owner refuses the xattr, nothing is kept.
    void record_diff_id(const core::Digest& digest, const core::Digest& diff_id) const noexcept;

    /// index.json, read fresh each time (other processes may update it).
    [[nodiscard]] oci::ImageIndex index() const;
    /// Points `tag` at `desc` in index.json (replacing an older entry with that tag; an empty tag
    /// adds an untagged entry once). Updates are serialised with a lock file and written atomically.
    void set_tag(std::string_view tag, oci::Descriptor desc) const;
    /// The descriptor tagged `tag`; with an empty tag, the only manifest in the index (error if not
    /// exactly one).
    [[nodiscard]] oci::Descriptor resolve(std::string_view tag) const;

private:
    explicit Store(std::filesystem::path root) : root_(std::move(root)) {}
    void check_digest(const oci::Descriptor& desc, const core::Digest& actual) const;
    std::filesystem::path root_;
};

}  // namespace ocibuild::store
