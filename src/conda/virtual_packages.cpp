#include "ocibuild/conda/virtual_packages.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "ocibuild/conda/version.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/sink.hpp"
#include "ocibuild/layer/tar_reader.hpp"

namespace ocibuild::conda {
namespace {

using core::Error;
using core::ErrorCategory;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// Reads "X.Y" (and ignores what follows a further '.') at `text`'s start; nullopt unless
/// there is at least "digits.digits".
std::optional<std::string> major_minor_at(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == 0 || i >= text.size() || text[i] != '.') return std::nullopt;
    const std::size_t dot = i++;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == dot + 1) return std::nullopt;
    return std::string(text.substr(0, i));
}

/// "libc-2.31.so" → "2.31".
std::optional<std::string> version_from_libc_name(std::string_view name) {
    constexpr std::string_view prefix = "libc-";
    constexpr std::string_view suffix = ".so";
    if (!name.starts_with(prefix) || !name.ends_with(suffix)) return std::nullopt;
    const std::string_view middle = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    auto v = major_minor_at(middle);
    if (!v || v->size() != middle.size()) return std::nullopt;
    return v;
}

/// The first "<marker>X.Y" in `bytes`.
std::optional<std::string> version_after(std::string_view bytes, std::string_view marker) {
    for (std::size_t at = bytes.find(marker); at != std::string_view::npos; at = bytes.find(marker, at + 1)) {
        if (auto v = major_minor_at(bytes.substr(at + marker.size()))) return v;
    }
    return std::nullopt;
}

std::string_view file_name_of(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string_view dir_of(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string_view{} : path.substr(0, slash);
}

/// A library directory: lib*/... or usr/lib*/... (merged-/usr images keep libc under usr/lib).
bool in_library_dir(std::string_view path) {
    std::string_view rest = path;
    if (rest.starts_with("usr/")) rest.remove_prefix(4);
    return rest.starts_with("lib") && rest.find('/') != std::string_view::npos;
}

bool is_libc_name(std::string_view name) { return name == "libc.so.6" || version_from_libc_name(name).has_value(); }

/// `target` of the symlink at `link_path`, as an archive path ("." and ".." folded).
std::string resolve_link(std::string_view link_path, std::string_view target) {
    std::vector<std::string_view> parts;
    auto push_all = [&](std::string_view text) {
        while (!text.empty()) {
            const auto slash = text.find('/');
            const std::string_view part = text.substr(0, slash);
            if (part == "..") {
                if (!parts.empty()) parts.pop_back();
            } else if (!part.empty() && part != ".") {
                parts.push_back(part);
            }
            if (slash == std::string_view::npos) break;
            text.remove_prefix(slash + 1);
        }
    };
    if (!target.starts_with('/')) push_all(dir_of(link_path));
    push_all(target);
    std::string out;
    for (auto p : parts) out += (out.empty() ? "" : "/") + std::string(p);
    return out;
}

/// Collects a file's bytes; libc is a few MiB, so what lies beyond 64 MiB is not looked at.
class LibcBytes : public core::ByteSink {
public:
    std::string data;
    void write(const void* p, std::size_t n) override {
        data.append(static_cast<const char*>(p), std::min(n, max_bytes - data.size()));
    }
    static constexpr std::size_t max_bytes = std::size_t{64} << 20;
};

struct Found {
    std::string version;
};

/// Case-insensitive "__cuda" from "CUDA".
std::string virtual_name_for_override(std::string_view key) {
    std::string name = "__";
    for (char c : key) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return name;
}

/// "linux-64" → "x86_64": conda's archspec name when the microarchitecture is unknown.
std::string plain_arch(std::string_view subdir) {
    const auto dash = subdir.find('-');
    const std::string_view arch = dash == std::string_view::npos ? subdir : subdir.substr(dash + 1);
    if (arch == "64") return "x86_64";
    if (arch == "32") return "x86";
    return std::string(arch);
}

void check_version(const std::string& name, const std::string& value, const std::string& origin) {
    if (auto v = Version::parse(value); !v) {
        throw Error(ErrorCategory::invalid_input, origin + ": " + name + " = \"" + value +
                                                      "\" is not a version: " + v.error().message);
    }
}

}  // namespace

std::optional<std::string> cuda_version_from_env(const std::vector<std::string>& env) {
    std::optional<std::string> value;
    for (const auto& entry : env) {  // the last definition wins, as in a container's environment
        if (entry.starts_with("CUDA_VERSION=")) value = entry.substr(13);
    }
    if (!value) return std::nullopt;
    std::string_view text = *value;
    std::size_t i = 0;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == 0) return std::nullopt;
    if (i == text.size() || text[i] != '.') return std::string(text.substr(0, i)) + ".0";
    if (auto v = major_minor_at(text)) return v;
    return std::string(text.substr(0, i)) + ".0";
}

std::optional<std::string> glibc_version_from_libc(std::string_view file_name, std::string_view bytes) {
    if (auto v = version_from_libc_name(file_name_of(file_name))) return v;
    // "GNU C Library (Ubuntu GLIBC 2.35-0ubuntu3) stable release version 2.35."
    if (auto v = version_after(bytes, "release version ")) return v;
    if (auto v = version_after(bytes, "GLIBC ")) return v;
    return std::nullopt;
}

std::optional<std::string> detect_glibc(const store::Store& store, const oci::ImageManifest& manifest) {
    // Paths an upper layer already decided (deleted, or a libc that gave no version): lower
    // layers' files at those paths are not what the image shows.
    std::set<std::string> hidden;
    std::vector<std::string> opaque_dirs;
    // Targets of libc.so.6 symlinks whose names carry no version: their bytes decide.
    std::set<std::string> wanted;
    auto is_hidden = [&](const std::string& path) {
        if (hidden.contains(path)) return true;
        return std::any_of(opaque_dirs.begin(), opaque_dirs.end(),
                           [&](const std::string& dir) { return path.starts_with(dir + "/"); });
    };
    for (std::size_t n = manifest.layers.size(); n-- > 0;) {
        const auto& layer_desc = manifest.layers[n];
        const std::string what = "layer " + std::to_string(n + 1) + "/" + std::to_string(manifest.layers.size()) +
                                 " (" + layer_desc.digest.str() + ")";
        std::set<std::string> layer_hidden;
        std::vector<std::string> layer_opaque;
        try {
            const auto fd = store.open_blob(layer_desc.digest);
            layer::read_tar(fd.get(), what, [&](const layer::TarEntry& e, const layer::ContentReader& read) {
                const std::string_view name = file_name_of(e.path);
                if (name.starts_with(".wh.")) {
                    const std::string dir(dir_of(e.path));
                    if (name == ".wh..wh..opq") layer_opaque.push_back(dir);
                    else layer_hidden.insert((dir.empty() ? "" : dir + "/") + std::string(name.substr(4)));
                    return;
                }
                if (is_hidden(e.path)) return;
                const bool candidate = in_library_dir(e.path) && is_libc_name(name);
                if (!candidate && !wanted.contains(e.path)) return;
                layer_hidden.insert(e.path);
                if (e.type == layer::EntryType::symlink) {
                    if (auto v = version_from_libc_name(file_name_of(e.link_target))) throw Found{*v};
                    std::string target = resolve_link(e.path, e.link_target);
                    // /lib is often a symlink to usr/lib: look in both.
                    if (!target.starts_with("usr/")) wanted.insert("usr/" + target);
                    wanted.insert(std::move(target));
                    return;
                }
                if (auto v = version_from_libc_name(name)) throw Found{*v};
                if (e.type != layer::EntryType::regular) return;
                LibcBytes bytes;
                read(bytes);
                if (auto v = glibc_version_from_libc(name, bytes.data)) throw Found{*v};
            });
        } catch (Found& found) {
            return std::move(found.version);
        } catch (Error& e) {
            throw e.with_context("looking for glibc in " + what);
        }
        hidden.merge(layer_hidden);
        opaque_dirs.insert(opaque_dirs.end(), layer_opaque.begin(), layer_opaque.end());
    }
    return std::nullopt;
}

VirtualPackageSet virtual_packages(const TargetFacts& facts,
                                   const std::map<std::string, std::string>& recipe_overrides,
                                   const std::map<std::string, std::string>& override_env) {
    // name → (version, build, origin); absent ones carry a reason instead.
    struct Entry {
        std::string version;
        std::string build = "0";
        std::string origin;
    };
    std::map<std::string, Entry> present;
    std::map<std::string, std::string> absent;

    const bool is_linux = facts.subdir.starts_with("linux-");
    const std::string platform = "platform " + facts.subdir;
    if (is_linux) {
        present["__unix"] = {"0", "0", platform};
        present["__linux"] = {"4.18", "0", "default (the kernel is the runtime host's, unknown at build time)"};
        if (facts.glibc) present["__glibc"] = {*facts.glibc, "0", "base image libc"};
        else absent["__glibc"] = "the base image has no glibc";
    }
    if (!facts.subdir.empty() && facts.subdir != "noarch") present["__archspec"] = {"1", plain_arch(facts.subdir), platform};
    if (auto cuda = cuda_version_from_env(facts.env)) {
        std::string raw;
        for (const auto& entry : facts.env)
            if (entry.starts_with("CUDA_VERSION=")) raw = entry.substr(13);
        present["__cuda"] = {*cuda, "0", "base image CUDA_VERSION=" + raw};
    } else {
        absent["__cuda"] = "the base image sets no CUDA_VERSION";
    }

    auto apply = [&](const std::string& name, const std::string& value, const std::string& origin,
                     const std::string& removal) {
        if (name == "__unix") return;  // conda: fixed by the platform
        if (value.empty()) {
            present.erase(name);
            absent[name] = removal;
            return;
        }
        if (name == "__archspec") {  // the value names the microarchitecture, the build string
            present[name] = {"1", value, origin};
        } else {
            check_version(name, value, origin);
            present[name] = {value, "0", origin};
        }
        absent.erase(name);
    };
    for (const auto& [name, value] : recipe_overrides)
        apply(name, value, "recipe virtual_packages", "the recipe's virtual_packages set " + name + " = \"\"");
    for (const auto& [key, value] : override_env)
        apply(virtual_name_for_override(key), value, "CONDA_OVERRIDE_" + key, "CONDA_OVERRIDE_" + key + " is empty");

    // CEP 46: no __cuda_arch without a driver.
    if (!present.contains("__cuda")) {
        present.erase("__cuda_arch");
        absent["__cuda_arch"] = "__cuda is absent";
    } else if (!present.contains("__cuda_arch") && !absent.contains("__cuda_arch")) {
        absent["__cuda_arch"] = "the GPUs' compute capability is unknown at build time";
    }

    VirtualPackageSet out;
    for (auto& [name, entry] : present) {  // std::map: sorted by name
        out.packages.push_back({name, entry.version, entry.build});
        out.origin[name] = std::move(entry.origin);
    }
    out.absent_reason = std::move(absent);
    return out;
}

}  // namespace ocibuild::conda
