// Channels as users write them → canonical base URLs; mirrors; OCI platform → conda subdir.
#include "ocibuild/conda/channel.hpp"

#include <algorithm>
#include <cctype>

#include "ocibuild/core/error.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::conda {
namespace {

[[noreturn]] void bad_channel(std::string_view text, std::string_view why) {
    throw core::Error(core::ErrorCategory::invalid_input, "channel \"" + std::string(text) + "\": " + std::string(why));
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::string_view strip_trailing_slashes(std::string_view s) {
    while (s.size() > 1 && s.back() == '/') s.remove_suffix(1);
    return s;
}

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '+';
}

// Path characters kept as they are in a file:// URL; everything else is percent-encoded.
bool is_url_path_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-._~/!$&'()*+,;=:@").find(c) != std::string_view::npos;
}

std::string file_url(const std::filesystem::path& absolute) {
    std::string path = absolute.lexically_normal().string();
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    std::string out = "file://";
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : path) {
        if (is_url_path_char(c)) {
            out += c;
        } else {
            const auto b = static_cast<unsigned char>(c);
            out += '%';
            out += kHex[b >> 4];
            out += kHex[b & 15];
        }
    }
    return out;
}

bool is_local_path(std::string_view s) {
    return s.starts_with('/') || s == "." || s == ".." || s.starts_with("./") || s.starts_with("../");
}

}  // namespace

Channel Channel::parse(std::string_view text, const ChannelConfig& config, const std::filesystem::path& base_dir) {
    const std::string_view written = trim(text);
    if (written.empty()) bad_channel(text, "empty channel");
    Channel channel;
    channel.name = std::string(written);

    if (const auto scheme_end = written.find("://"); scheme_end != std::string_view::npos) {
        std::string scheme(written.substr(0, scheme_end));
        std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        const std::string_view rest = written.substr(scheme_end + 3);
        if (scheme == "http" || scheme == "https") {
            const std::string_view host = rest.substr(0, rest.find('/'));
            if (host.empty() || host.find_first_of(" \t") != std::string_view::npos) bad_channel(text, "URL without a host");
            channel.url = scheme + "://" + std::string(strip_trailing_slashes(rest));
            if (channel.url.ends_with('/')) channel.url.pop_back();
            return channel;
        }
        if (scheme == "file") {
            std::string_view path = rest;
            if (path.starts_with("localhost/")) path.remove_prefix(9);
            if (!path.starts_with('/')) bad_channel(text, "a file:// URL needs an absolute path (file:///folder)");
            // Percent-escapes stay as written; only the path's shape is normalised.
            channel.url = "file://" + std::filesystem::path(std::string(path)).lexically_normal().string();
            while (channel.url.size() > 8 && channel.url.back() == '/') channel.url.pop_back();
            return channel;
        }
        bad_channel(text, "unsupported URL scheme \"" + scheme + "\" (use https://, http:// or file://)");
    }

    if (written.starts_with('~')) bad_channel(text, "'~' is not expanded; write the folder's full path");
    if (is_local_path(written)) {
        std::filesystem::path path{std::string(written)};
        if (path.is_relative()) path = std::filesystem::absolute(base_dir.empty() ? "." : base_dir) / path;
        channel.url = file_url(path);
        return channel;
    }

    // A name on the channel alias: `conda-forge`, `conda-forge/label/dev`, `pkgs/main`.
    const std::string_view name = strip_trailing_slashes(written);
    std::size_t start = 0;
    while (start <= name.size()) {
        const std::size_t end = std::min(name.find('/', start), name.size());
        const std::string_view segment = name.substr(start, end - start);
        if (segment.empty() || segment == "." || segment == ".." ||
            !std::all_of(segment.begin(), segment.end(), is_name_char))
            bad_channel(text, "not a channel name, URL or path (names use letters, digits, '-', '_', '.')");
        start = end + 1;
    }
    std::string_view alias = strip_trailing_slashes(config.channel_alias);
    if (alias.ends_with('/')) alias.remove_suffix(1);
    channel.url = std::string(alias) + "/" + std::string(name);
    return channel;
}

std::string Channel::subdir_url(std::string_view subdir) const {
    std::string out = url;
    if (!out.ends_with('/')) out += '/';
    out.append(subdir).append("/");
    return out;
}

std::string redact_url(std::string_view url) {
    if (!url.starts_with("http://") && !url.starts_with("https://")) return std::string(url);
    std::string out = registry::redact_url(url);
    // anaconda.org's token form puts /t/<token> right after the host; a folder named "t" deeper in
    // a path is not a token.
    const auto path_start = std::min(out.find('/', out.find("://") + 3), out.size());
    if (out.compare(path_start, 3, "/t/") == 0) {
        const auto end = out.find('/', path_start + 3);
        out.replace(path_start + 3, (end == std::string::npos ? out.size() : end) - (path_start + 3), "<token>");
    }
    return out;
}

std::string restore_credentials(std::string_view url, const std::vector<Channel>& channels) {
    for (const Channel& channel : channels) {
        const std::string bare = redact_url(channel.url);
        if (bare == channel.url || !url.starts_with(bare)) continue;
        const std::string_view rest = url.substr(bare.size());
        if (!rest.empty() && rest.front() != '/') continue;  // whole path segments only
        return channel.url + std::string(rest);
    }
    return std::string(url);
}

std::filesystem::path file_url_to_path(std::string_view url, std::string_view what) {
    std::string_view rest = url.substr(std::min(url.size(), std::string_view("file://").size()));
    if (rest.starts_with("localhost/")) rest.remove_prefix(std::string_view("localhost").size());
    if (!url.starts_with("file://") || !rest.starts_with("/"))
        throw core::Error(core::ErrorCategory::unsupported,
                          std::string(what) + ": " + std::string(url) + ": only local file:// URLs are supported");
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '%' && i + 2 < rest.size() && hex(rest[i + 1]) >= 0 && hex(rest[i + 2]) >= 0) {
            out += static_cast<char>(hex(rest[i + 1]) * 16 + hex(rest[i + 2]));
            i += 2;
        } else {
            out += rest[i];
        }
    }
    return out;
}

std::vector<std::string> mirror_urls(std::string_view url, const ChannelConfig& config) {
    struct Match {
        std::string_view prefix;
        const std::vector<std::string>* replacements;
    };
    std::vector<Match> matches;
    for (const auto& [key, replacements] : config.mirrors) {
        std::string_view prefix = key;
        while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
        if (prefix.empty() || !url.starts_with(prefix)) continue;
        // Whole path segments only: "…/conda" is no prefix of "…/conda-forge".
        if (url.size() > prefix.size() && url[prefix.size()] != '/') continue;
        matches.push_back({prefix, &replacements});
    }
    std::stable_sort(matches.begin(), matches.end(),
                     [](const Match& a, const Match& b) { return a.prefix.size() > b.prefix.size(); });
    std::vector<std::string> out;
    auto add = [&](std::string candidate) {
        if (std::find(out.begin(), out.end(), candidate) == out.end()) out.push_back(std::move(candidate));
    };
    for (const Match& m : matches) {
        for (const std::string& replacement : *m.replacements) {
            std::string_view base = replacement;
            while (!base.empty() && base.back() == '/') base.remove_suffix(1);
            add(std::string(base) + std::string(url.substr(m.prefix.size())));
        }
    }
    add(std::string(url));
    return out;
}

std::string subdir_for(const oci::Platform& platform) {
    if (platform.os == "linux") {
        const std::string& arch = platform.architecture;
        const std::string& variant = platform.variant;
        if (arch == "amd64" && variant.empty()) return "linux-64";
        if (arch == "arm64" && (variant.empty() || variant == "v8")) return "linux-aarch64";
        if (arch == "ppc64le" && variant.empty()) return "linux-ppc64le";
        if (arch == "s390x" && variant.empty()) return "linux-s390x";
        if (arch == "386" && variant.empty()) return "linux-32";
        if (arch == "arm" && variant == "v7") return "linux-armv7l";
    }
    throw core::Error(core::ErrorCategory::unsupported,
                      "no conda subdir for platform " + platform.to_string() +
                          " (supported: linux/amd64, linux/arm64, linux/ppc64le, linux/s390x, linux/386, linux/arm/v7)");
}

}  // namespace ocibuild::conda
