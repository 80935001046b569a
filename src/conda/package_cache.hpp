#pragma once
// Private to the conda module: the package cache shared by builds (InstallOptions::package_cache).
//
//   <cache>/archives/<key>-<fn>   a downloaded archive, verified before it got this name
//   <cache>/pkgs/<key>/           its extracted tree (exists ⇒ complete: it appears by rename)
//   <cache>/locks/<key>.lock      flock'ed while one process fetches or extracts <key>
//   <cache>/tmp/<key>-<suffix>/   an extraction in progress, or left by a process that died
//
// <key> is the artifact's sha256 (else "md5-<md5>"), so two channels serving different bytes
// under one file name never share an entry, and a record without any checksum is refused: an
// unverifiable artifact never enters the cache. file:// artifacts are verified and extracted in
// place, never copied into archives/.
#include <filesystem>
#include <string>

#include "ocibuild/conda/install.hpp"
#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::conda::detail {

class PackageCache {
public:
    /// Creates the layout under `root` when missing and sweeps leftovers of dead processes.
    PackageCache(std::filesystem::path root, const InstallOptions& options);

    /// The extracted tree of `record`, downloading (through the mirrors), verifying and
    /// extracting it first when needed. Thread-safe; safe across processes sharing the cache.
    /// Throws core::Error(integrity) on a checksum or size mismatch (naming the package, URL,
    /// expected and actual digest), other categories naming the package and URL.
    [[nodiscard]] std::filesystem::path get(const PackageRecord& record) const;

private:
    /// Downloads (or, for file://, verifies in place) the archive; the verified file, open.
    [[nodiscard]] core::UniqueFd fetch(const PackageRecord& record, const std::filesystem::path& stored,
                                       const std::string& what) const;

    /// One http(s) URL into `stored`, verified; transient failures (dropped connections, 408,
    /// 429, 5xx) are retried a few times.
    [[nodiscard]] core::UniqueFd download(const PackageRecord& record, const std::string& url,
                                          const std::filesystem::path& stored, const std::string& what) const;

    std::filesystem::path root_;
    const InstallOptions& options_;
};

/// "package <dist>", how messages name a package.
[[nodiscard]] std::string describe_package(const PackageRecord& record);

}  // namespace ocibuild::conda::detail
