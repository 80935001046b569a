#pragma once
// Private to the layer module: RAII owners for libarchive objects. This is the only header that
// includes libarchive's; tar_writer.cpp and tar_reader.cpp are its only users.
#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>

namespace ocibuild::layer::detail {

struct ArchiveWriteFree {
    void operator()(struct archive* a) const noexcept { archive_write_free(a); }
};
struct ArchiveReadFree {
    void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};
struct ArchiveEntryFree {
    void operator()(struct archive_entry* e) const noexcept { archive_entry_free(e); }
};

using WriteArchive = std::unique_ptr<struct archive, ArchiveWriteFree>;
using ReadArchive = std::unique_ptr<struct archive, ArchiveReadFree>;
using ArchiveEntry = std::unique_ptr<struct archive_entry, ArchiveEntryFree>;

/// libarchive's last error message for `a`, or a generic text when it has none.
inline std::string archive_message(struct archive* a) {
    const char* msg = archive_error_string(a);
    return msg != nullptr ? std::string(msg) : std::string("unknown libarchive error");
}

}  // namespace ocibuild::layer::detail
