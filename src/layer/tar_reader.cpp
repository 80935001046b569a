#include "ocibuild/layer/tar_reader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "archive_handle.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::layer {
namespace {

constexpr std::size_t read_block_size = std::size_t{1} << 20;

/// Strips leading "/" and "./" (repeatedly) and trailing '/'. The root itself becomes "".
std::string normalise_path(const char* raw) {
    std::string_view p = raw != nullptr ? raw : "";
    for (;;) {
        if (p.starts_with('/')) {
            p.remove_prefix(1);
        } else if (p.starts_with("./")) {
            p.remove_prefix(2);
        } else {
            break;
        }
    }
    if (p == ".") p = {};
    while (p.ends_with('/')) p.remove_suffix(1);
    return std::string(p);
}

[[noreturn]] void malformed(std::string_view what, std::string_view entry, const std::string& message) {
    std::string text(what);
    if (!entry.empty()) text += ": entry \"" + std::string(entry) + "\"";
    throw core::Error(core::ErrorCategory::invalid_input, text + ": " + message);
}

EntryType type_of(struct archive_entry* e, std::string_view what, std::string_view path) {
    if (archive_entry_hardlink(e) != nullptr) return EntryType::hardlink;
    switch (archive_entry_filetype(e)) {
        case AE_IFREG: return EntryType::regular;
        case AE_IFDIR: return EntryType::directory;
        case AE_IFLNK: return EntryType::symlink;
        case AE_IFCHR: return EntryType::char_device;
        case AE_IFBLK: return EntryType::block_device;
        case AE_IFIFO: return EntryType::fifo;
        default: malformed(what, path, "unsupported entry type (socket or unknown)");
    }
}

TarEntry to_entry(struct archive_entry* e, std::string_view what) {
    TarEntry t;
    t.path = normalise_path(archive_entry_pathname(e));
    t.type = type_of(e, what, t.path);
    t.mode = static_cast<std::uint32_t>(archive_entry_mode(e)) & 07777;
    t.uid = static_cast<std::uint32_t>(archive_entry_uid(e));
    t.gid = static_cast<std::uint32_t>(archive_entry_gid(e));
    t.mtime = archive_entry_mtime(e);
    if (t.type == EntryType::regular) t.size = archive_entry_size(e);
    if (t.type == EntryType::hardlink) {
        t.link_target = normalise_path(archive_entry_hardlink(e));
    } else if (t.type == EntryType::symlink) {
        const char* target = archive_entry_symlink(e);
        t.link_target = target != nullptr ? target : "";
    }
    if (t.type == EntryType::char_device || t.type == EntryType::block_device) {
        t.dev_major = static_cast<std::uint32_t>(archive_entry_rdevmajor(e));
        t.dev_minor = static_cast<std::uint32_t>(archive_entry_rdevminor(e));
    }
    archive_entry_xattr_reset(e);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        t.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    return t;
}

/// Streams the current entry's data; holes of sparse entries come out as zeros.
void stream_content(struct archive* a, const TarEntry& entry, std::string_view what, core::ByteSink& sink) {
    static constexpr char zeros[64 * 1024] = {};
    std::int64_t position = 0;
    auto fill_to = [&](std::int64_t offset) {
        while (position < offset) {
            const auto n = static_cast<std::size_t>(std::min<std::int64_t>(offset - position, sizeof zeros));
            sink.write(zeros, n);
            position += static_cast<std::int64_t>(n);
        }
    };
    for (;;) {
        const void* block = nullptr;
        size_t size = 0;
        la_int64_t offset = 0;
        const int rc = archive_read_data_block(a, &block, &size, &offset);
        if (rc == ARCHIVE_EOF) break;
        if (rc == ARCHIVE_RETRY || rc < ARCHIVE_WARN) malformed(what, entry.path, detail::archive_message(a));
        if (offset < position) malformed(what, entry.path, "data blocks out of order");
        fill_to(offset);
        sink.write(block, size);
        position += static_cast<std::int64_t>(size);
    }
    if (entry.type == EntryType::regular) fill_to(entry.size);  // a trailing hole
}

}  // namespace

void read_tar(int fd, std::string_view what,
              const std::function<void(const TarEntry& entry, const ContentReader& read_content)>& fn) {
    detail::ReadArchive archive(archive_read_new());
    struct archive* a = archive.get();
    if (a == nullptr) throw core::Error(core::ErrorCategory::internal, "cannot allocate a tar reader");
    if (archive_read_support_filter_all(a) < ARCHIVE_WARN || archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_format_empty(a) != ARCHIVE_OK) {
        throw core::Error(core::ErrorCategory::internal, std::string(what) + ": " + detail::archive_message(a));
    }
    if (archive_read_open_fd(a, fd, read_block_size) != ARCHIVE_OK) malformed(what, {}, detail::archive_message(a));

    std::string previous;  // for messages about a header that could not be read
    for (;;) {
        struct archive_entry* e = nullptr;
        const int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF) break;
        // ARCHIVE_RETRY (a damaged header libarchive could skip) is an error too: skipping would
        // silently drop entries from a layer.
        if (rc == ARCHIVE_RETRY || rc < ARCHIVE_WARN) {
            malformed(what, {}, (previous.empty() ? std::string("first header") : "header after \"" + previous + "\"") +
                                    ": " + detail::archive_message(a));
        }
        const TarEntry entry = to_entry(e, what);
        bool read = false;
        const ContentReader reader = [&](core::ByteSink& sink) {
            if (read) return;  // the data can be streamed once
            read = true;
            stream_content(a, entry, what, sink);
        };
        fn(entry, reader);
        previous = entry.path;
    }
    if (archive_read_close(a) != ARCHIVE_OK) malformed(what, {}, detail::archive_message(a));
}

}  // namespace ocibuild::layer
