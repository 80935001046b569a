#include "ocibuild/layer/tar_writer.hpp"

#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "archive_handle.hpp"
#include "tree_walk.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::layer {
namespace {

// File contents are copied through one buffer of this size: memory stays flat whatever the file.
constexpr std::size_t copy_buffer_size = std::size_t{1} << 20;
// libarchive hands us output in blocks of this size (fewer syscalls and sink calls than 512-byte
// records). The last block is not padded (bytes_in_last_block = 1), so the archive ends with the
// two 512-byte zero records, like Go's archive/tar, and its length never depends on this value.
constexpr int output_block_size = 64 * 1024;
// The only xattr scan_tree keeps, as containerd's diff writer does.
constexpr const char* capability_xattr = "security.capability";

[[noreturn]] void invalid(std::string message) {
    throw core::Error(core::ErrorCategory::invalid_input, std::move(message));
}

std::string quote_path(std::string_view path) { return "\"" + std::string(path) + "\""; }

/// Relative, '/'-separated, no empty, "." or ".." component, no NUL.
void check_path(std::string_view path, std::string_view what) {
    if (path.empty()) invalid(std::string(what) + " is empty");
    if (path.find('\0') != std::string_view::npos) invalid(std::string(what) + " contains a NUL byte");
    if (path.front() == '/') invalid(std::string(what) + " " + quote_path(path) + " is absolute");
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = path.find('/', start);
        const std::string_view part = path.substr(start, end == std::string_view::npos ? end : end - start);
        if (part.empty()) invalid(std::string(what) + " " + quote_path(path) + " has an empty component");
        if (part == "." || part == "..") {
            invalid(std::string(what) + " " + quote_path(path) + " has a \"" + std::string(part) + "\" component");
        }
        if (end == std::string_view::npos) return;
        start = end + 1;
    }
}

/// Index of the entry with exactly `path` in the sorted `entries`, or npos.
std::size_t find_sorted(const std::vector<TarEntry>& entries, std::string_view path) {
    auto it = std::lower_bound(entries.begin(), entries.end(), path,
                               [](const TarEntry& e, std::string_view p) { return e.path < p; });
    if (it == entries.end() || it->path != path) return std::string_view::npos;
    return static_cast<std::size_t>(it - entries.begin());
}

/// Makes every hard-link group hold its data in the first path in sort order; the other members
/// become links to that path with its metadata. `entries` must be sorted and free of duplicates.
void resolve_hardlinks(std::vector<TarEntry>& entries) {
    std::map<std::size_t, std::vector<std::size_t>> groups;  // data-holding entry → its links
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].type != EntryType::hardlink) continue;
        std::size_t target = i;
        for (std::size_t hops = 0; entries[target].type == EntryType::hardlink; ++hops) {
            const std::string& link = entries[target].link_target;
            check_path(link, "hard link target of " + quote_path(entries[i].path));
            target = find_sorted(entries, link);
            if (target == std::string_view::npos) {
                invalid("hard link " + quote_path(entries[i].path) + " points to " + quote_path(link) +
                        ", which is not in the layer");
            }
            if (hops > entries.size()) invalid("hard link " + quote_path(entries[i].path) + " is part of a cycle");
        }
        if (entries[target].type == EntryType::directory) {
            invalid("hard link " + quote_path(entries[i].path) + " points to the directory " +
                    quote_path(entries[target].path));
        }
        groups[target].push_back(i);
    }
    for (auto& [data, links] : groups) {
        const std::size_t first = std::min(data, links.front());  // links are ascending
        if (first != data) {
            // The first path in sort order takes the data; the old holder becomes a link.
            TarEntry holder = std::move(entries[data]);
            std::string old_path = std::move(holder.path);
            holder.path = std::move(entries[first].path);
            entries[first] = std::move(holder);
            entries[data] = TarEntry{};
            entries[data].path = std::move(old_path);
            links.push_back(data);
        }
        const TarEntry& holder = entries[first];
        for (const std::size_t i : links) {
            if (i == first) continue;
            TarEntry& link = entries[i];
            link.type = EntryType::hardlink;
            link.link_target = holder.path;
            link.mode = holder.mode;
            link.uid = holder.uid;
            link.gid = holder.gid;
            link.mtime = holder.mtime;
            link.source.clear();
            link.content.clear();
            link.size = 0;
            link.xattrs.clear();
            link.dev_major = link.dev_minor = 0;
        }
    }
}

/// Sorts bytewise by path and checks paths, duplicates and hard links.
void normalise(std::vector<TarEntry>& entries) {
    for (const TarEntry& e : entries) check_path(e.path, "tar entry path");
    // std::string compares with char_traits<char>, which orders bytes as unsigned (like memcmp).
    std::sort(entries.begin(), entries.end(), [](const TarEntry& a, const TarEntry& b) { return a.path < b.path; });
    for (std::size_t i = 1; i < entries.size(); ++i) {
        if (entries[i].path == entries[i - 1].path) invalid("duplicate tar entry path " + quote_path(entries[i].path));
    }
    resolve_hardlinks(entries);
}

/// Carries the sink into libarchive's C callback, and any exception out of it.
struct SinkBridge {
    core::ByteSink* sink;
    std::exception_ptr error;
};

la_ssize_t write_callback(struct archive* /*a*/, void* client_data, const void* buffer, size_t length) {
    auto* bridge = static_cast<SinkBridge*>(client_data);
    try {
        bridge->sink->write(buffer, length);
        return static_cast<la_ssize_t>(length);
    } catch (...) {
        // Never let an exception cross libarchive's C frames; rethrown by check() below.
        bridge->error = std::current_exception();
        return -1;
    }
}

/// Pins this thread's locale to "C" while it lives. libarchive converts names from the current
/// locale's charset to UTF-8 for PAX records, so the bytes would otherwise depend on the caller's
/// setlocale(). In "C", ASCII names need no PAX record and any other name is written as raw bytes
/// with "hdrcharset=BINARY" (libarchive warns; we accept the warning). The "hdrcharset=BINARY"
/// writer option would give the same bytes for such names but adds that record to every entry.
class CLocaleScope {
public:
    CLocaleScope() : c_(::newlocale(LC_ALL_MASK, "C", locale_t{})) {
        if (c_ == locale_t{}) core::throw_errno("cannot create the C locale");
        previous_ = ::uselocale(c_);
    }
    ~CLocaleScope() {
        ::uselocale(previous_);
        ::freelocale(c_);
    }
    CLocaleScope(const CLocaleScope&) = delete;
    CLocaleScope& operator=(const CLocaleScope&) = delete;

private:
    locale_t c_;
    locale_t previous_{};
};

class TarWriter {
public:
    TarWriter(core::ByteSink& out, std::int64_t epoch)
        : archive_(archive_write_new()), entry_(archive_entry_new()), bridge_{&out, nullptr}, epoch_(epoch) {
        if (!archive_ || !entry_) throw core::Error(core::ErrorCategory::internal, "cannot allocate a tar writer");
        struct archive* a = archive_.get();
        check(archive_write_set_format_pax_restricted(a), "setting the tar format");
        // Only SCHILY.xattr.* records (what Go and containerd read), not LIBARCHIVE.xattr.* too.
        check(archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY"), "setting xattrheader");
        check(archive_write_set_bytes_per_block(a, output_block_size), "setting the block size");
        check(archive_write_set_bytes_in_last_block(a, 1), "setting the last block size");
        check(archive_write_open2(a, &bridge_, nullptr, write_callback, nullptr, nullptr), "opening the tar stream");
    }

    void add(const TarEntry& entry) {
        struct archive_entry* e = entry_.get();
        archive_entry_clear(e);
        archive_entry_copy_pathname(e, entry.type == EntryType::directory ? (entry.path + "/").c_str()
                                                                          : entry.path.c_str());
        archive_entry_set_perm(e, static_cast<mode_t>(entry.mode & 07777));
        archive_entry_set_uid(e, entry.uid);
        archive_entry_set_gid(e, entry.gid);
        archive_entry_set_mtime(e, std::max<std::int64_t>(0, std::min(entry.mtime, epoch_)), 0);
        for (const auto& [name, value] : entry.xattrs) {
            archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
        }
        core::UniqueFd source;
        std::int64_t size = 0;
        switch (entry.type) {
            case EntryType::regular:
                archive_entry_set_filetype(e, AE_IFREG);
                if (entry.source.empty()) {
                    size = static_cast<std::int64_t>(entry.content.size());
                } else {
                    source = open_source(entry);
                    size = entry.size;
                }
                break;
            case EntryType::hardlink:
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_copy_hardlink(e, entry.link_target.c_str());
                break;
            case EntryType::directory: archive_entry_set_filetype(e, AE_IFDIR); break;
            case EntryType::symlink:
                if (entry.link_target.empty() || entry.link_target.find('\0') != std::string::npos) {
                    invalid("symlink " + quote_path(entry.path) + " has an empty or malformed target");
                }
                archive_entry_set_filetype(e, AE_IFLNK);
                archive_entry_copy_symlink(e, entry.link_target.c_str());
                break;
            case EntryType::char_device:
            case EntryType::block_device:
                archive_entry_set_filetype(e, entry.type == EntryType::char_device ? AE_IFCHR : AE_IFBLK);
                archive_entry_set_rdevmajor(e, entry.dev_major);
                archive_entry_set_rdevminor(e, entry.dev_minor);
                break;
            case EntryType::fifo: archive_entry_set_filetype(e, AE_IFIFO); break;
        }
        archive_entry_set_size(e, size);
        check(archive_write_header(archive_.get(), e), "writing the header of " + quote_path(entry.path));
        if (entry.type != EntryType::regular) return;
        if (entry.source.empty()) {
            write_data(entry, entry.content.data(), entry.content.size());
        } else {
            copy_source(entry, source.get());
        }
    }

    void close() {
        check(archive_write_close(archive_.get()), "finishing the tar stream");
        bridge_.sink->finish();
    }

private:
    /// ARCHIVE_WARN is tolerated (output is still well-formed); failures and sink errors throw.
    void check(int rc, const std::string& what) {
        if (bridge_.error) std::rethrow_exception(std::exchange(bridge_.error, nullptr));
        if (rc == ARCHIVE_RETRY || rc < ARCHIVE_WARN) {
            throw core::Error(core::ErrorCategory::internal, what + ": " + detail::archive_message(archive_.get()));
        }
    }

    [[noreturn]] static void size_changed(const TarEntry& entry, std::int64_t found) {
        invalid("tar entry " + quote_path(entry.path) + ": " + entry.source.string() +
                " changed size while being archived (expected " + std::to_string(entry.size) +
                " bytes, found " + std::to_string(found) + ")");
    }

    static core::UniqueFd open_source(const TarEntry& entry) {
        core::UniqueFd fd = core::open_file(entry.source, O_RDONLY);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) core::throw_errno("cannot stat " + entry.source.string());
        if (!S_ISREG(st.st_mode)) invalid("tar entry " + quote_path(entry.path) + ": " + entry.source.string() + " is not a regular file");
        if (st.st_size != entry.size) size_changed(entry, st.st_size);
        return fd;
    }

    void write_data(const TarEntry& entry, const char* data, std::size_t size) {
        while (size > 0) {
            const la_ssize_t n = archive_write_data(archive_.get(), data, size);
            check(n < 0 ? static_cast<int>(n) : ARCHIVE_OK, "writing the data of " + quote_path(entry.path));
            if (n <= 0) throw core::Error(core::ErrorCategory::internal, "tar writer refused the data of " + quote_path(entry.path));
            data += n;
            size -= static_cast<std::size_t>(n);
        }
    }

    void copy_source(const TarEntry& entry, int fd) {
        if (!buffer_) buffer_ = std::make_unique<char[]>(copy_buffer_size);
        const std::string what = entry.source.string();
        std::int64_t left = entry.size;
        while (left > 0) {
            const std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(left, copy_buffer_size));
            const std::size_t got = core::read_full(fd, buffer_.get(), want, what);
            if (got == 0) size_changed(entry, entry.size - left);
            write_data(entry, buffer_.get(), got);
            left -= static_cast<std::int64_t>(got);
        }
        char probe = 0;  // one more byte means the file grew after fstat
        if (core::read_full(fd, &probe, 1, what) != 0) size_changed(entry, entry.size + 1);
    }

    detail::WriteArchive archive_;
    detail::ArchiveEntry entry_;
    SinkBridge bridge_;
    std::int64_t epoch_;
    std::unique_ptr<char[]> buffer_;
};

// ---- scan_tree ----

class TreeScanner {
public:
    std::vector<detail::Scanned> found;

    void add(const std::string& fs_path, std::string archive_path, const struct stat& st) {
        std::optional<detail::Scanned> s = detail::scan_entry(fs_path, std::move(archive_path), st);
        if (!s) return;
        if (s->entry.type == EntryType::regular) {
            if (auto cap = detail::read_xattr(fs_path, capability_xattr)) {
                s->entry.xattrs.emplace(capability_xattr, std::move(*cap));
            }
        }
        found.push_back(std::move(*s));
    }

    void walk(const std::string& fs_dir, const std::string& archive_dir) {
        std::vector<std::string> subdirs;
        for (detail::Child& c : detail::list_dir(fs_dir)) {
            std::string archive_path = archive_dir.empty() ? c.name : archive_dir + "/" + c.name;
            add(fs_dir + "/" + c.name, std::move(archive_path), c.st);
            if (S_ISDIR(c.st.st_mode)) subdirs.push_back(std::move(c.name));
        }
        for (const std::string& name : subdirs) {
            walk(fs_dir + "/" + name, archive_dir.empty() ? name : archive_dir + "/" + name);
        }
    }
};

std::string trim_slashes(std::string_view s) {
    while (!s.empty() && s.front() == '/') s.remove_prefix(1);
    while (!s.empty() && s.back() == '/') s.remove_suffix(1);
    return std::string(s);
}

}  // namespace

void write_tar(std::vector<TarEntry> entries, std::int64_t epoch, core::ByteSink& out) {
    normalise(entries);
    const CLocaleScope locale;  // spans the archive's whole life: libarchive caches the charset
    TarWriter writer(out, epoch);
    for (const TarEntry& entry : entries) writer.add(entry);
    writer.close();
}

std::vector<TarEntry> scan_tree(const std::filesystem::path& dir, const std::string& prefix) {
    const std::string root = dir.string();
    const std::string archive_root = trim_slashes(prefix);
    if (!archive_root.empty()) check_path(archive_root, "layer path prefix");
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0) core::throw_errno("cannot stat " + root);
    if (!S_ISDIR(st.st_mode)) invalid(root + " is not a directory");

    TreeScanner scanner;
    if (!archive_root.empty()) scanner.add(root, archive_root, st);
    scanner.walk(root, archive_root);

    return detail::finish_entries(std::move(scanner.found));
}

}  // namespace ocibuild::layer
