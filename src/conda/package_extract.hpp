#pragma once
// Private to the conda module: unpacking a package archive (`.conda` or `.tar.bz2`, told apart by
// the file name) into an empty folder. Entries are written through tree_fd.hpp's walk, so nothing
// leaves the folder: absolute paths, ".." and paths through symlinks are refused, as are device
// nodes, fifos and hard links to outside the archive. File mtimes are kept, clamped to at least
// 1980-01-01 (as rattler does: ZIP and some tools cannot represent older times).
#include <string>
#include <string_view>

namespace ocibuild::conda::detail {

/// Extracts the archive open on `archive_fd` (a regular file named like `fn`, read from offset 0)
/// into `dest` (an existing empty folder). `what`
/// names the package in errors ("package zlib-1.3.1-h_0 (https://…/zlib-1.3.1-h_0.conda)").
/// Throws core::Error(invalid_input) for a malformed or hostile archive,
/// core::Error(unsupported) for an unknown format.
void extract_package(int archive_fd, std::string_view fn, const std::string& dest, std::string_view what);

}  // namespace ocibuild::conda::detail
