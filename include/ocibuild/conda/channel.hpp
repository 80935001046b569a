#pragma once
// Conda channels: what a user writes (`conda-forge`, `conda-forge/label/dev`, a URL, `file://`, a
// local folder) → the channel's base URL, and the subdir an image platform maps to.
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/oci/platform.hpp"

namespace ocibuild::conda {

struct ChannelConfig {
    /// Where bare names live: `conda-forge` → `<channel_alias>/conda-forge`.
    std::string channel_alias = "https://conda.anaconda.org";
    /// Mirrors: a URL prefix (a channel URL, or the alias) → replacement prefixes, tried in order
    /// before the original. Records and lock files keep the original URLs; only fetching uses these.
    std::map<std::string, std::vector<std::string>> mirrors;
};

struct Channel {
    std::string name;  // as the user wrote it
    /// Canonical base URL, no trailing slash: "https://conda.anaconda.org/conda-forge",
    /// "https://conda.anaconda.org/conda-forge/label/dev", "file:///abs/folder".
    std::string url;

    /// Parses a channel as written. Bare names and `name/label/x` use config.channel_alias; a
    /// relative or absolute local path (`./chan`, `/srv/chan`, `~` not expanded) is resolved
    /// against `base_dir` and becomes a file:// URL. Throws core::Error(invalid_input) naming
    /// the text for an empty or malformed channel.
    [[nodiscard]] static Channel parse(std::string_view text, const ChannelConfig& config,
                                       const std::filesystem::path& base_dir);

    /// "<url>/<subdir>/" (trailing slash: artifact file names resolve against it).
    [[nodiscard]] std::string subdir_url(std::string_view subdir) const;
    bool operator==(const Channel&) const = default;
};

/// The URL as it may appear in output (messages, logs, lock files, conda-meta in an image): no
/// user:password@, no anaconda.org token (`/t/<token>` right after the host), no query.
[[nodiscard]] std::string redact_url(std::string_view url);

/// `url` (from a lock file or output, credentials removed) with the credentials of the channel it
/// lies under put back, for downloading; unchanged when no channel in `channels` matches.
[[nodiscard]] std::string restore_credentials(std::string_view url, const std::vector<Channel>& channels);

/// "file:///a/b%20c" (or file://localhost/…) → "/a/b c", the inverse of how Channel::parse writes
/// local folders. Throws core::Error(unsupported) naming `what` and the URL for a remote file:// host.
[[nodiscard]] std::filesystem::path file_url_to_path(std::string_view url, std::string_view what);

/// The URLs to try for `url`, in order: each matching mirror's replacement, then `url` itself.
[[nodiscard]] std::vector<std::string> mirror_urls(std::string_view url, const ChannelConfig& config);

/// The conda subdir of an OCI platform: linux/amd64 → linux-64, linux/arm64 → linux-aarch64,
/// linux/ppc64le → linux-ppc64le, linux/s390x → linux-s390x, linux/386 → linux-32,
/// linux/arm/v7 → linux-armv7l. Throws core::Error(unsupported) for anything else.
[[nodiscard]] std::string subdir_for(const oci::Platform& platform);

}  // namespace ocibuild::conda
