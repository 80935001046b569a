#pragma once
// Installing solved packages into a prefix inside an image tree, as conda/mamba would: download
// (verified by sha256, else md5), extract `.conda` / `.tar.bz2` safely into a package cache, link
// by copy with prefix replacement (text and binary placeholders), noarch: python mapping and entry
// points, and conda-meta/ (one JSON per package, history).
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/conda/channel.hpp"
#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::conda {

struct InstallOptions {
    const registry::HttpClient* http = nullptr;  // for http(s) URLs; file:// is read in place
    registry::TlsConfig tls;
    ChannelConfig channels;                      // mirrors apply to downloads
    /// Verified archives and their extracted trees, kept between builds (lock + temp + rename).
    std::filesystem::path package_cache;
    unsigned jobs = 0;                           // parallel downloads/extractions; 0 = hardware
    std::function<void(std::string_view)> log;
};

/// Installs `packages` (in dependency order, see sort_topologically) into `root`/`prefix`, as an
/// environment whose absolute path in the image is `prefix` (e.g. "/opt/conda"). `root` is the
/// folder that becomes the step's layer. `requested_specs` go into conda-meta/history.
/// Throws core::Error naming the package and URL on a download, checksum or format failure.
void install(const std::vector<PackageRecord>& packages, const std::filesystem::path& root,
             std::string_view prefix, const std::vector<std::string>& requested_specs,
             const InstallOptions& options);

}  // namespace ocibuild::conda
