#include "ocibuild/layer/extract_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <utility>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "tree_walk.hpp"

// Layout of the root:
//   <hex>/                    a complete extraction (exists ⇒ complete: it appears by rename)
//   <hex>.lock                flock'ed while <hex> is being extracted; kept, it is empty
//   .tmp-<hex>-<pid>-<rand>/  an extraction in progress, or left by a process that died
//
// Rejected: a "done" marker file inside the folder (the folder is an overlay lowerdir, so the
// marker would show in every container), and extracting under the lock straight into <hex>/ (a
// crash would leave a half tree under the final name).
// Not done: syncing the extracted tree before the rename. Interrupting the process never leaves a
// partial <hex>/, but after a power loss the rename may be on disk before the file data; a syncfs
// per layer would cost about as much as the extraction itself.

namespace ocibuild::layer {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view temp_prefix = ".tmp-";
// Temporary folders older than this whose lock is free are leftovers of dead processes.
constexpr auto stale_after = std::chrono::hours(1);

bool is_dir(const fs::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Removes a tree this process wrote, including directories that a layer made unreadable or
/// unwritable (a rootless process needs u+rwx on a directory to empty it). Symlinks are never
/// followed: chmod is applied only to what lstat says is a directory.
void make_removable(const std::string& dir) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
    if ((st.st_mode & S_IRWXU) != S_IRWXU) (void)::chmod(dir.c_str(), (st.st_mode & 07777) | S_IRWXU);
    std::vector<detail::Child> children;
    try {
        children = detail::list_dir(dir);
    } catch (const core::Error&) {
        return;  // remove_all will report what is left
    }
    for (const detail::Child& c : children) {
        if (S_ISDIR(c.st.st_mode)) make_removable(dir + "/" + c.name);
    }
}

void remove_tree(const fs::path& path) noexcept {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (!ec) return;
    try {
        make_removable(path.string());
    } catch (...) {  // best effort: an allocation failure must not escape a cleanup path
    }
    fs::remove_all(path, ec);
}

/// The <hex> in ".tmp-<hex>-<suffix>", or empty.
std::string temp_owner(const std::string& name) {
    if (name.compare(0, temp_prefix.size(), temp_prefix) != 0) return {};
    const std::size_t start = temp_prefix.size();
    const std::size_t end = name.find('-', start);
    if (end == std::string::npos) return {};
    return name.substr(start, end - start);
}

/// Removes leftovers of dead extractions: temporary folders older than `stale_after` whose lock
/// nobody holds (a live extraction holds it, however long it takes).
void sweep(const fs::path& root, const AsTreeOwner& as_owner) {
    const auto now = fs::file_time_type::clock::now();
    std::vector<detail::Child> children;
    try {
        children = detail::list_dir(root.string());
    } catch (const core::Error&) {
        return;  // sweeping is housekeeping: never fail the build for it
    }
    for (const detail::Child& c : children) {
        const std::string hex = temp_owner(c.name);
        if (hex.empty() || !S_ISDIR(c.st.st_mode)) continue;
        const fs::path path = root / c.name;
        std::error_code ec;
        const auto mtime = fs::last_write_time(path, ec);
        if (ec || now - mtime < stale_after) continue;
        try {
            const core::FileLock lock(root / (hex + ".lock"), /*try_only=*/true);
            if (!lock.held()) continue;
            if (as_owner) {
                as_owner([&] { remove_tree(path); });
            } else {
                remove_tree(path);
            }
        } catch (const core::Error&) {  // e.g. a read-only cache: leave it
        }
    }
}

}  // namespace

ExtractionCache::ExtractionCache(std::filesystem::path root, ApplyOptions options, AsTreeOwner as_owner)
    : root_(std::move(root)), options_(std::move(options)), as_owner_(std::move(as_owner)) {
    options_.mode = ApplyMode::overlay;
    std::error_code ec;
    fs::create_directories(root_, ec);
    if (ec) throw core::Error(core::ErrorCategory::internal, "cannot create " + root_.string() + ": " + ec.message());
    sweep(root_, as_owner_);
}

fs::path ExtractionCache::get(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id) {
    const std::string hex(diff_id.hex());
    if (hex.empty()) {
        throw core::Error(core::ErrorCategory::invalid_input, "layer " + layer.digest.str() + " has no diff_id");
    }
    fs::path final_dir = root_ / hex;
    if (is_dir(final_dir)) return final_dir;

    // One extraction per layer at a time, across threads and processes (each FileLock opens the
    // file anew, and flock excludes other open file descriptions, also within this process).
    const core::FileLock lock(root_ / (hex + ".lock"), /*try_only=*/false);
    if (is_dir(final_dir)) return final_dir;  // extracted while we waited

    const fs::path temp = root_ / (std::string(temp_prefix) + hex + "-" + core::unique_suffix());
    auto extract = [&] {
        if (::mkdir(temp.c_str(), 0755) != 0) core::throw_errno("cannot create " + temp.string());
        try {
            // The lowerdir's root mode shows as the container's "/" when no layer sets "./".
            if (::chmod(temp.c_str(), 0755) != 0) core::throw_errno("cannot chmod " + temp.string());
            (void)apply_stored_layer(store, layer, diff_id, temp, options_, "layer " + layer.digest.str());
            if (::rename(temp.c_str(), final_dir.c_str()) != 0) {
                // Someone finished the same layer without our lock (its lock file was deleted under
                // us): the trees are identical, keep theirs.
                if ((errno == ENOTEMPTY || errno == EEXIST) && is_dir(final_dir)) {
                    remove_tree(temp);
                    return;
                }
                core::throw_errno("cannot rename " + temp.string() + " to " + final_dir.string());
            }
        } catch (...) {
            remove_tree(temp);
            throw;
        }
    };
    if (as_owner_) {
        // remove_tree above runs there too: the unfinished tree belongs to the owner's ids.
        as_owner_(extract);
    } else {
        extract();
    }
    core::fsync_dir(root_);
    return final_dir;
}

}  // namespace ocibuild::layer
