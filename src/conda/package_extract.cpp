// Package archives through libarchive: `.tar.bz2` is one bzip2 tar; `.conda` is a ZIP of STORED
// members whose `info-*.tar.zst` and `pkg-*.tar.zst` are read by a second libarchive reader fed
// from the first one's member data, so nothing is staged on disk twice.
#include "package_extract.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocibuild/core/error.hpp"
#include "tree_fd.hpp"

namespace ocibuild::conda::detail {
namespace {

using core::Error;
using core::ErrorCategory;

struct ReadFree {
    void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};
using ReadArchive = std::unique_ptr<struct archive, ReadFree>;

constexpr std::int64_t min_mtime = 315532800;  // 1980-01-01T00:00:00Z
constexpr std::size_t buffer_size = 256 * 1024;

std::string archive_message(struct archive* a) {
    const char* msg = archive_error_string(a);
    return msg != nullptr ? std::string(msg) : std::string("unknown libarchive error");
}

ReadArchive new_reader() {
    ReadArchive a(archive_read_new());
    if (!a) throw Error(ErrorCategory::internal, "out of memory (libarchive)");
    return a;
}

/// Writes the entries of one tar stream into the destination tree.
class TreeWriter {
public:
    TreeWriter(int root_fd, std::string what)
        : root_fd_(root_fd), dirs_(root_fd), what_(std::move(what)), buffer_(buffer_size) {}

    void write_all(struct archive* a, std::string_view member) {
        for (;;) {
            struct archive_entry* entry = nullptr;
            const int r = archive_read_next_header(a, &entry);
            if (r == ARCHIVE_EOF) return;
            if (r < ARCHIVE_WARN) {
                throw Error(ErrorCategory::invalid_input,
                            what_ + ": " + std::string(member) + ": " + archive_message(a));
            }
            write_entry(a, entry, member);
        }
    }

    /// Whether the package had info/index.json, the one file every package has.
    [[nodiscard]] bool saw_index() const noexcept { return saw_index_; }

private:
    [[noreturn]] void refuse(std::string_view member, std::string_view path, std::string_view why) const {
        throw Error(ErrorCategory::invalid_input,
                    what_ + ": " + std::string(member) + ": entry \"" + std::string(path) + "\": " + std::string(why));
    }

    void write_entry(struct archive* a, struct archive_entry* entry, std::string_view member) {
        const char* raw = archive_entry_pathname(entry);
        if (raw == nullptr) raw = archive_entry_pathname_utf8(entry);
        if (raw == nullptr) refuse(member, "?", "unreadable path name");
        const std::string_view raw_path(raw);
        const mode_t type = archive_entry_filetype(entry);
        if (raw_path == "." || raw_path == "./" || raw_path.empty()) {
            if (type == AE_IFDIR) return;  // the archive root
            refuse(member, raw_path, "not a path");
        }
        const auto path = parse_rel_path(raw_path);
        if (!path) refuse(member, raw_path, "absolute or \"..\" paths are not allowed in a package");
        const std::string where = what_ + ": " + std::string(member);

        if (type == AE_IFDIR) {
            (void)dirs_.dir(*path, /*create=*/true, where);
            return;
        }
        const int parent = dirs_.parent(*path, /*create=*/true, where);
        const std::string& name = path->name();

        if (const char* link = archive_entry_hardlink(entry); link != nullptr) {
            const auto target = parse_rel_path(link);
            if (!target) refuse(member, raw_path, "hard link to \"" + std::string(link) + "\" leaves the package");
            const core::UniqueFd target_parent = open_parent(root_fd_, *target, /*create=*/false, where);
            remove_at(parent, name, where);
            if (::linkat(target_parent.get(), target->name().c_str(), parent, name.c_str(), 0) != 0)
                core::throw_errno(where + ": cannot hard-link \"" + path->text + "\" to \"" + target->text + "\"");
            saw_index_ = saw_index_ || path->text == "info/index.json";
            return;
        }
        switch (type) {
            case AE_IFREG:
                remove_at(parent, name, where);
                write_file(a, entry, parent, *path, where);
                break;
            case AE_IFLNK: {
                const char* target = archive_entry_symlink(entry);
                if (target == nullptr || *target == '\0') refuse(member, raw_path, "symlink without a target");
                remove_at(parent, name, where);
                if (::symlinkat(target, parent, name.c_str()) != 0)
                    core::throw_errno(where + ": cannot create symlink " + path->text);
                break;
            }
            default:
                refuse(member, raw_path, "device nodes, fifos and sockets have no place in a conda package");
        }
        saw_index_ = saw_index_ || path->text == "info/index.json";
    }

    void write_file(struct archive* a, struct archive_entry* entry, int parent_fd, const RelPath& path,
                    const std::string& where) {
        int raw_fd;
        do {
            raw_fd =
                ::openat(parent_fd, path.name().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        } while (raw_fd < 0 && errno == EINTR);
        if (raw_fd < 0) core::throw_errno(where + ": cannot create " + path.text);
        const core::UniqueFd fd(raw_fd);
        try {
            for (;;) {
                const la_ssize_t n = archive_read_data(a, buffer_.data(), buffer_.size());
                if (n < 0) {
                    throw Error(ErrorCategory::invalid_input,
                                where + ": entry \"" + path.text + "\": " + archive_message(a));
                }
                if (n == 0) break;
                core::write_all(fd.get(), buffer_.data(), static_cast<std::size_t>(n), path.text);
            }
            // Permission bits only: no setuid/setgid/sticky from a downloaded package, and the
            // owner can always read it back when linking.
            const mode_t mode = (archive_entry_perm(entry) & 0777) | S_IRUSR;
            if (::fchmod(fd.get(), mode) != 0) core::throw_errno(where + ": cannot chmod " + path.text);
            std::int64_t mtime = archive_entry_mtime_is_set(entry) ? archive_entry_mtime(entry) : min_mtime;
            if (mtime < min_mtime) mtime = min_mtime;
            const struct timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(mtime), 0}};
            if (::futimens(fd.get(), times) != 0) core::throw_errno(where + ": cannot set the time of " + path.text);
        } catch (...) {
            (void)::unlinkat(parent_fd, path.name().c_str(), 0);
            throw;
        }
    }

    int root_fd_;
    DirWalker dirs_;
    std::string what_;
    std::vector<char> buffer_;
    bool saw_index_ = false;
};

void extract_tar_bz2(int archive_fd, TreeWriter& writer, const std::string& what) {
    ReadArchive a = new_reader();
    archive_read_support_filter_bzip2(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_fd(a.get(), archive_fd, buffer_size) != ARCHIVE_OK) {
        throw Error(ErrorCategory::invalid_input, what + ": not a .tar.bz2 package: " + archive_message(a.get()));
    }
    writer.write_all(a.get(), "tar.bz2");
}

/// The inner reader's source: the current ZIP member's data from the outer reader.
struct MemberSource {
    struct archive* outer = nullptr;
    std::vector<char> buffer = std::vector<char>(buffer_size);
};

la_ssize_t read_member(struct archive* inner, void* client, const void** out) {
    auto* src = static_cast<MemberSource*>(client);
    const la_ssize_t n = archive_read_data(src->outer, src->buffer.data(), src->buffer.size());
    if (n < 0) {
        archive_set_error(inner, EIO, "%s", archive_message(src->outer).c_str());
        return -1;
    }
    *out = src->buffer.data();
    return n;
}

void extract_conda(int archive_fd, TreeWriter& writer, const std::string& what) {
    ReadArchive zip = new_reader();
    archive_read_support_format_zip(zip.get());
    // A regular file: libarchive seeks, and reads the central directory.
    if (archive_read_open_fd(zip.get(), archive_fd, buffer_size) != ARCHIVE_OK) {
        throw Error(ErrorCategory::invalid_input, what + ": not a .conda (ZIP) file: " + archive_message(zip.get()));
    }
    bool saw_info = false;
    bool saw_pkg = false;
    for (;;) {
        struct archive_entry* entry = nullptr;
        const int r = archive_read_next_header(zip.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) throw Error(ErrorCategory::invalid_input, what + ": " + archive_message(zip.get()));
        const char* raw = archive_entry_pathname(entry);
        const std::string name = raw != nullptr ? raw : "";
        if (name == "metadata.json") {
            std::string text;
            std::array<char, 4096> buf{};
            for (la_ssize_t n; (n = archive_read_data(zip.get(), buf.data(), buf.size())) > 0;) {
                text.append(buf.data(), static_cast<std::size_t>(n));
                if (text.size() > (1u << 20)) break;
            }
            const auto meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
            const auto version = meta.is_object() ? meta.find("conda_pkg_format_version") : meta.end();
            if (!meta.is_object() || version == meta.end() || !version->is_number_integer() || *version != 2) {
                throw Error(ErrorCategory::unsupported,
                            what + ": metadata.json does not say conda_pkg_format_version 2: " + text.substr(0, 200));
            }
            continue;
        }
        const bool is_info = name.starts_with("info-") && name.ends_with(".tar.zst");
        const bool is_pkg = name.starts_with("pkg-") && name.ends_with(".tar.zst");
        if (!is_info && !is_pkg) continue;  // not part of the format: never extracted
        if (name.find('/') != std::string::npos) continue;
        (is_info ? saw_info : saw_pkg) = true;

        MemberSource source{zip.get()};
        ReadArchive inner = new_reader();
        archive_read_support_filter_zstd(inner.get());
        archive_read_support_format_tar(inner.get());
        if (archive_read_open(inner.get(), &source, nullptr, read_member, nullptr) != ARCHIVE_OK) {
            throw Error(ErrorCategory::invalid_input, what + ": " + name + ": " + archive_message(inner.get()));
        }
        writer.write_all(inner.get(), name);
    }
    if (!saw_info || !saw_pkg) {
        throw Error(ErrorCategory::invalid_input,
                    what + ": not a conda package: the ZIP lacks " + (saw_info ? "pkg-*.tar.zst" : "info-*.tar.zst"));
    }
}

}  // namespace

void extract_package(int archive_fd, std::string_view fn, const std::string& dest, std::string_view what) {
    if (::lseek(archive_fd, 0, SEEK_SET) != 0) core::throw_errno(std::string(what) + ": cannot seek in the archive");
    const core::UniqueFd root = open_root(dest);
    TreeWriter writer(root.get(), std::string(what));
    if (fn.ends_with(".conda")) {
        extract_conda(archive_fd, writer, std::string(what));
    } else if (fn.ends_with(".tar.bz2")) {
        extract_tar_bz2(archive_fd, writer, std::string(what));
    } else {
        throw Error(ErrorCategory::unsupported, std::string(what) + ": unknown package format \"" + std::string(fn) +
                                                    "\" (expected .conda or .tar.bz2)");
    }
    if (!writer.saw_index()) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": not a conda package: no info/index.json");
    }
}

}  // namespace ocibuild::conda::detail
