#pragma once
// Fetching repodata: `<channel>/<subdir>/repodata.json.zst`, falling back to `repodata.json`,
// through mirrors, cached on disk and revalidated with ETag / Last-Modified (304 → the cached
// copy). file:// channels are read in place. Transfers of several channels and subdirs run in
// parallel.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/conda/channel.hpp"
#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::conda {

struct FetchOptions {
    const registry::HttpClient* http = nullptr;  // required for http(s) channels
    registry::TlsConfig tls;
    ChannelConfig channels;
    /// Cache folder: one entry per repodata URL (the body as fetched, plus its ETag/Last-Modified),
    /// written atomically. Empty = no cache.
    std::filesystem::path cache_dir;
    /// Use the cache without asking the server (fails when an entry is missing).
    bool offline = false;
    std::function<void(std::string_view)> log;  // "repodata: conda-forge/linux-64 (cached, 304)"
};

/// One subdir of one channel. A channel without the subdir (404 for both file names) gives an
/// empty RepoData, except noarch: a channel must serve noarch, so a missing noarch is
/// core::Error(not_found) "channel <name> not found: <url>: HTTP 404". Corrupt data names the URL.
[[nodiscard]] RepoData load_repodata(const Channel& channel, std::string_view subdir, const FetchOptions& options);

/// Every channel × {subdir, "noarch"}, in parallel. Result[c] holds channel c's subdirs
/// (the platform subdir first, then noarch), in the channels' priority order.
[[nodiscard]] std::vector<std::vector<RepoData>> load_channels(const std::vector<Channel>& channels,
                                                               std::string_view subdir,
                                                               const FetchOptions& options);

}  // namespace ocibuild::conda
