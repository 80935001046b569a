#include "ocibuild/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::store {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorCategory;

namespace {
constexpr std::string_view layout_file_content = R"({"imageLayoutVersion":"1.0.0"})";
constexpr unsigned blob_mode = 0444;  // published blobs are immutable

void mkdir_p(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(ErrorCategory::unavailable, "cannot create " + dir.string() + ": " + ec.message());
}

// Stale ingest files belong to writers that died; a day is far longer than any live write.
void sweep_ingest(const fs::path& ingest) {
    std::error_code ec;
    auto now = fs::file_time_type::clock::now();
    for (auto it = fs::directory_iterator(ingest, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code ec2;
        auto t = it->last_write_time(ec2);
        if (!ec2 && now - t > std::chrono::hours(24)) fs::remove(it->path(), ec2);
    }
}

}  // namespace

// ---- BlobWriter ------------------------------------------------------------------------------

BlobWriter::BlobWriter(const Store& store, fs::path temp, core::UniqueFd fd)
    : store_(&store), temp_(std::move(temp)), fd_(std::move(fd)) {}

BlobWriter::BlobWriter(BlobWriter&& o) noexcept
    : store_(o.store_), temp_(std::move(o.temp_)), fd_(std::move(o.fd_)), hasher_(std::move(o.hasher_)),
      done_(o.done_) {
    o.done_ = true;
}

BlobWriter& BlobWriter::operator=(BlobWriter&& o) noexcept {
    if (this != &o) {
        if (!done_) ::unlink(temp_.c_str());
        store_ = o.store_;
        temp_ = std::move(o.temp_);
        fd_ = std::move(o.fd_);
        hasher_ = std::move(o.hasher_);
        done_ = o.done_;
        o.done_ = true;
    }
    return *this;
}

BlobWriter::~BlobWriter() {
    if (!done_) {
        fd_.reset();
        ::unlink(temp_.c_str());
    }
}

void BlobWriter::write(const void* data, std::size_t size) {
    hasher_.update(data, size);
    core::write_all(fd_.get(), data, size, temp_.string());
}

oci::Descriptor BlobWriter::commit(std::string_view media_type, const std::optional<core::Digest>& expected_digest,
                                   std::optional<std::int64_t> expected_size) {
    if (done_) throw Error(ErrorCategory::internal, "blob writer used after commit");
    done_ = true;
    auto size = static_cast<std::int64_t>(hasher_.bytes());
    auto digest = hasher_.finish();
    auto discard = [&] {
        fd_.reset();
        ::unlink(temp_.c_str());
        ::rmdir(temp_.parent_path().c_str());
    };
    if (expected_size && *expected_size != size) {
        discard();
        throw Error(ErrorCategory::integrity,
                    "size mismatch for " + (expected_digest ? expected_digest->str() : digest.str()) + ": expected " +
                        std::to_string(*expected_size) + " bytes, got " + std::to_string(size));
    }
    if (expected_digest && *expected_digest != digest) {
        discard();
        throw Error(ErrorCategory::integrity,
                    "digest mismatch: expected " + expected_digest->str() + ", got " + digest.str());
    }
    if (::fchmod(fd_.get(), blob_mode) != 0 || ::fsync(fd_.get()) != 0) {
        int err = errno;
        discard();
        core::throw_errno(err, "cannot write blob " + digest.str());
    }
    fd_.reset();
    auto final_path = store_->blob_path(digest);
    if (::rename(temp_.c_str(), final_path.c_str()) != 0) {
        int err = errno;
        ::unlink(temp_.c_str());
        core::throw_errno(err, "cannot publish blob " + digest.str());
    }
    core::fsync_dir(final_path.parent_path());
    // Leave no empty ingest/ behind in output layouts; a concurrent writer just re-creates it.
    ::rmdir(temp_.parent_path().c_str());
    return oci::Descriptor{std::string(media_type), digest, size, {}, {}, std::nullopt, {}};
}

// ---- Store -----------------------------------------------------------------------------------

Store Store::open(const fs::path& root, bool create) {
    auto layout = root / "oci-layout";
    std::error_code ec;
    if (fs::exists(layout, ec)) {
        auto j = oci::parse_json(core::read_file(layout), layout.string());
        if (!j.is_object() || j.value("imageLayoutVersion", "") != "1.0.0")
            throw Error(ErrorCategory::unsupported,
                        layout.string() + ": unsupported image layout version (want 1.0.0)");
    } else if (!create) {
        throw Error(ErrorCategory::not_found, root.string() + " is not an OCI image layout (no oci-layout file)");
    } else {
        if (fs::exists(root, ec) && !fs::is_directory(root, ec))
            throw Error(ErrorCategory::already_exists, root.string() + " exists and is not a directory");
        mkdir_p(root / "blobs" / "sha256");
        if (!fs::exists(root / "index.json", ec)) {
            oci::ImageIndex empty;
            core::write_file_atomic(root / "index.json", empty.serialize());
        }
        core::write_file_atomic(layout, layout_file_content);
    }
    mkdir_p(root / "blobs" / "sha256");
    Store s(fs::absolute(root));
    sweep_ingest(s.root_ / "ingest");
    return s;
}

fs::path Store::blob_path(const core::Digest& digest) const {
    return root_ / "blobs" / std::string(digest.algorithm()) / std::string(digest.hex());
}

bool Store::has(const core::Digest& digest) const {
    struct stat st {};
    return ::stat(blob_path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

BlobWriter Store::ingest() const {
    auto dir = root_ / "ingest";
    for (int attempt = 0;; ++attempt) {
        mkdir_p(dir);
        auto temp = dir / ("blob-" + core::unique_suffix());
        int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) return BlobWriter(*this, temp, core::UniqueFd(fd));
        // Another writer may have removed the empty ingest/ between our mkdir and open.
        if (errno != ENOENT || attempt >= 3) core::throw_errno("cannot create " + temp.string());
    }
}

oci::Descriptor Store::put(std::string_view bytes, std::string_view media_type) const {
    auto digest = core::Digest::of(bytes);
    if (has(digest)) return oci::Descriptor{std::string(media_type), digest, static_cast<std::int64_t>(bytes.size()), {}, {}, std::nullopt, {}};
    auto w = ingest();
    w.write(bytes);
    return w.commit(media_type, digest);
}

std::string Store::read(const core::Digest& digest) const {
    auto path = blob_path(digest);
    if (!has(digest)) throw Error(ErrorCategory::not_found, "blob " + digest.str() + " is not in " + root_.string());
    return core::read_file(path);
}

core::UniqueFd Store::open_blob(const core::Digest& digest) const {
    auto path = blob_path(digest);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) throw Error(ErrorCategory::not_found, "blob " + digest.str() + " is not in " + root_.string());
        core::throw_errno("cannot open blob " + digest.str());
    }
    return core::UniqueFd(fd);
}

bool Store::verify_blob(const oci::Descriptor& desc, const std::function<bool()>& go_on) const {
    auto in = open_blob(desc.digest);
    const std::string path = blob_path(desc.digest).string();
    core::Sha256 sha;
    std::vector<char> buf(1 << 20);
    for (;;) {
        const auto n = core::read_full(in.get(), buf.data(), buf.size(), path);
        if (n == 0) break;
        sha.update(buf.data(), n);
        if (go_on && !go_on()) return false;
    }
    check_blob(desc, sha.bytes(), sha.finish());
    return true;
}

void Store::check_blob(const oci::Descriptor& desc, std::uint64_t bytes, const core::Digest& digest) const {
    if (desc.size < 0 || bytes != static_cast<std::uint64_t>(desc.size))
        throw Error(ErrorCategory::integrity, "blob " + desc.digest.str() + " in " + root_.string() + " has " +
                                                  std::to_string(bytes) + " bytes, not " +
                                                  std::to_string(desc.size) + " as its descriptor says");
    check_digest(desc, digest);
}

std::string Store::read_verified(const oci::Descriptor& desc) const {
    std::string bytes = read(desc.digest);
    check_digest(desc, core::Digest::of(bytes));
    return bytes;
}

void Store::check_digest(const oci::Descriptor& desc, const core::Digest& actual) const {
    if (actual != desc.digest)
        throw Error(ErrorCategory::integrity,
                    "blob " + desc.digest.str() + " in " + root_.string() + " has digest " + actual.str());
}

void Store::import_blob(const Store& from, const oci::Descriptor& desc, bool trusted) const {
    if (has(desc.digest)) return;
    if (trusted) {
        auto target = blob_path(desc.digest);
        if (::link(from.blob_path(desc.digest).c_str(), target.c_str()) == 0 || errno == EEXIST) return;
    }
    auto in = from.open_blob(desc.digest);
    auto w = ingest();
    std::vector<char> buf(1 << 20);
    while (true) {
        auto n = core::read_full(in.get(), buf.data(), buf.size(), from.blob_path(desc.digest).string());
        if (n == 0) break;
        w.write(buf.data(), n);
    }
    w.commit(desc.media_type, desc.digest, desc.size);
}

namespace {
constexpr const char* diff_id_xattr = "user.ocibuild.diff_id";
}

std::optional<core::Digest> Store::recorded_diff_id(const core::Digest& digest) const {
    char value[160];
    const ssize_t n = ::getxattr(blob_path(digest).c_str(), diff_id_xattr, value, sizeof value);
    if (n <= 0) return std::nullopt;
    auto parsed = core::Digest::parse(std::string_view(value, static_cast<std::size_t>(n)));
    if (!parsed) return std::nullopt;
    return *parsed;
}

void Store::record_diff_id(const core::Digest& digest, const core::Digest& diff_id) const noexcept {
    try {
        const std::string value = diff_id.str();
        (void)::setxattr(blob_path(digest).c_str(), diff_id_xattr, value.data(), value.size(), 0);
    } catch (...) {  // a digest string that cannot be built: nothing recorded, as documented
    }
}

oci::ImageIndex Store::index() const {
    auto path = root_ / "index.json";
    return oci::ImageIndex::parse(core::read_file(path), path.string());
}

void Store::set_tag(std::string_view tag, oci::Descriptor desc) const {
    const core::FileLock lock(root_ / ".index.json.lock");
    auto idx = index();
    std::vector<oci::Descriptor> kept;
    for (auto& m : idx.manifests) {
        auto it = m.annotations.find(std::string(oci::annotation_ref_name));
        bool tagged = it != m.annotations.end();
        if (!tag.empty() && tagged && it->second == tag) continue;  // retag
        if (tag.empty() && !tagged && m.digest == desc.digest) return;  // already there untagged
        kept.push_back(std::move(m));
    }
    if (!tag.empty()) desc.annotations[std::string(oci::annotation_ref_name)] = std::string(tag);
    kept.push_back(std::move(desc));
    idx.manifests = std::move(kept);
    core::write_file_atomic(root_ / "index.json", idx.serialize());
}

oci::Descriptor Store::resolve(std::string_view tag) const {
    auto idx = index();
    if (tag.empty()) {
        if (idx.manifests.size() == 1) return idx.manifests.front();
        std::string tags;
        for (const auto& m : idx.manifests) {
            auto it = m.annotations.find(std::string(oci::annotation_ref_name));
            tags += (tags.empty() ? "" : ", ") + (it != m.annotations.end() ? it->second : m.digest.str());
        }
        throw Error(ErrorCategory::invalid_input,
                    root_.string() + " holds " + std::to_string(idx.manifests.size()) +
                        " images; name one with :TAG" + (tags.empty() ? "" : " (" + tags + ")"));
    }
    for (const auto& m : idx.manifests) {
        auto it = m.annotations.find(std::string(oci::annotation_ref_name));
        if (it != m.annotations.end() && it->second == tag) return m;
    }
    throw Error(ErrorCategory::not_found, "no image tagged \"" + std::string(tag) + "\" in " + root_.string());
}

}  // namespace ocibuild::store
