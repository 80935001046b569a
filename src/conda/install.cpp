// install(): fetch and extract every package in parallel into the shared cache, then link them in
// the given (dependency) order, one after the other so that a later package's file replaces an
// earlier one's exactly as conda would, and write conda-meta/.
//
// Reproducibility: conda-meta JSON has sorted keys (as conda's json.dump(sort_keys=True)); the
// cache paths conda records (extracted_package_dir, link.source, package_tarball_full_path) are
// given as <prefix>/pkgs/…, where conda's default package cache of that prefix would have them,
// never this machine's cache folder; history's date is the epoch, not the clock.
#include "ocibuild/conda/install.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "link.hpp"
#include "ocibuild/conda/channel.hpp"
#include "ocibuild/conda/match_spec.hpp"
#include "ocibuild/core/error.hpp"
#include "package_cache.hpp"
#include "task_pool.hpp"
#include "tree_fd.hpp"

namespace ocibuild::conda {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorCategory;
using Json = nlohmann::json;

/// Runs task(i) for i in [0, count) on up to `jobs` threads; rethrows the failure of the lowest
/// index (the same error whatever the scheduling), after every started task has finished.
void run_parallel(std::size_t count, unsigned jobs, const std::function<void(std::size_t)>& task) {
    if (jobs == 0) jobs = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t threads = std::min<std::size_t>(jobs, count);
    std::vector<std::exception_ptr> errors(count);
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    auto worker = [&] {
        for (;;) {
            const std::size_t i = next.fetch_add(1);
            if (i >= count || failed.load()) return;
            try {
                task(i);
            } catch (...) {
                errors[i] = std::current_exception();
                failed.store(true);
            }
        }
    };
    if (threads <= 1) {
        worker();
    } else {
        std::vector<std::jthread> pool;
        pool.reserve(threads);
        for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(worker);
    }
    for (const std::exception_ptr& e : errors) {
        if (e) std::rethrow_exception(e);
    }
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
    std::string out;
    for (const std::string& item : items) {
        if (!out.empty()) out += sep;
        out += item;
    }
    return out;
}

std::string channel_url(const PackageRecord& record) {
    if (!record.channel.empty()) return record.channel;
    // Derive it from the artifact URL: <channel>/<subdir>/<fn>.
    std::string url = record.url;
    for (int i = 0; i < 2; ++i) {
        const std::size_t slash = url.rfind('/');
        if (slash == std::string::npos) return {};
        url.resize(slash);
    }
    return url;
}

/// conda's canonical channel name: "conda-forge" under the channel alias, else the URL.
std::string canonical_channel(const PackageRecord& record, const ChannelConfig& config) {
    std::string url = channel_url(record);
    while (url.ends_with("/")) url.pop_back();
    std::string alias = config.channel_alias;
    while (alias.ends_with("/")) alias.pop_back();
    if (!alias.empty() && url.starts_with(alias + "/")) return url.substr(alias.size() + 1);
    return url;
}

/// A Python string literal (history's spec lists are read with ast.literal_eval).
std::string python_string(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

Json paths_data_entry(const detail::LinkedPath& p) {
    Json j = Json::object();
    j["_path"] = p.path;
    j["path_type"] = p.path_type;
    if (!p.sha256.empty()) j["sha256"] = p.sha256;
    if (!p.sha256_in_prefix.empty()) j["sha256_in_prefix"] = p.sha256_in_prefix;
    if (p.size_in_bytes) j["size_in_bytes"] = *p.size_in_bytes;
    if (!p.prefix_placeholder.empty()) {
        j["prefix_placeholder"] = p.prefix_placeholder;
        j["file_mode"] = p.file_mode;
    }
    if (p.no_link) j["no_link"] = true;
    return j;
}

/// conda-meta/<dist>.json (CEP 32), fields as conda's PrefixRecord.
std::string prefix_record(const PackageRecord& r, const std::vector<detail::LinkedPath>& paths,
                          const std::vector<std::string>& specs, std::string_view prefix) {
    Json j = Json::object();
    j["name"] = r.name;
    j["version"] = r.version;
    j["build"] = r.build;
    j["build_number"] = r.build_number;
    j["depends"] = r.depends;
    j["constrains"] = r.constrains;
    if (!r.license.empty()) j["license"] = r.license;
    if (!r.license_family.empty()) j["license_family"] = r.license_family;
    if (!r.md5.empty()) j["md5"] = r.md5;
    if (!r.sha256.empty()) j["sha256"] = r.sha256;
    if (r.size != 0) j["size"] = r.size;
    j["subdir"] = r.subdir;
    if (r.timestamp != 0) j["timestamp"] = r.timestamp;
    if (!r.noarch.empty()) j["noarch"] = r.noarch;
    if (!r.track_features.empty()) j["track_features"] = join(r.track_features, " ");
    if (!r.python_site_packages_path.empty()) j["python_site_packages_path"] = r.python_site_packages_path;
    const std::string fn = r.fn.empty() ? r.url.substr(r.url.rfind('/') + 1) : r.fn;
    j["fn"] = fn;
    j["url"] = redact_url(r.url);  // the image is output: no credentials
    std::string channel = redact_url(channel_url(r));
    if (!channel.empty() && !channel.ends_with("/")) channel += "/";
    j["channel"] = channel;

    Json files = Json::array();
    Json entries = Json::array();
    for (const detail::LinkedPath& p : paths) {
        if (p.path_type != "directory") files.push_back(p.path);
        entries.push_back(paths_data_entry(p));
    }
    j["files"] = std::move(files);
    j["paths_data"] = Json{{"paths_version", 1}, {"paths", std::move(entries)}};
    const std::string pkgs = std::string(prefix) + "/pkgs/";
    j["extracted_package_dir"] = pkgs + r.dist_name();
    j["package_tarball_full_path"] = pkgs + fn;
    j["link"] = Json{{"source", pkgs + r.dist_name()}, {"type", 3}};  // 3 = copy
    j["requested_specs"] = specs;
    if (!specs.empty()) j["requested_spec"] = specs.front();
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string history(const std::vector<PackageRecord>& packages, const std::vector<std::string>& requested_specs,
                    const ChannelConfig& channels) {
    std::vector<std::string> linked;
    linked.reserve(packages.size());
    for (const PackageRecord& r : packages) {
        linked.push_back("+" + canonical_channel(r, channels) + "/" + r.subdir + "::" + r.dist_name());
    }
    std::sort(linked.begin(), linked.end());
    std::vector<std::string> specs;
    specs.reserve(requested_specs.size());
    for (const std::string& s : requested_specs) specs.push_back(python_string(s));
    // No clock: builds are reproducible. conda keeps only blocks with "# cmd:" as user requests,
    // and refuses an environment whose recorded conda version is newer than itself, so the
    // version is an old one.
    std::string out = "==> 1970-01-01 00:00:00 <==\n";
    out += "# cmd: ocibuild build\n";
    out += "# conda version: 4.0.0\n";
    for (const std::string& line : linked) out += line + "\n";
    out += "# update specs: [" + join(specs, ", ") + "]\n";
    return out;
}

/// Package name → the requested specs that name it.
std::map<std::string, std::vector<std::string>> specs_by_name(const std::vector<std::string>& requested_specs) {
    std::map<std::string, std::vector<std::string>> out;
    for (const std::string& text : requested_specs) {
        const auto spec = MatchSpec::parse(text);
        if (!spec || !spec->name().is_exact()) continue;
        out[spec->name().to_string()].push_back(text);
    }
    return out;
}

}  // namespace

void install(const std::vector<PackageRecord>& packages, const std::filesystem::path& root, std::string_view prefix,
             const std::vector<std::string>& requested_specs, const InstallOptions& options) {
    const auto prefix_path = prefix.starts_with("/") ? detail::parse_rel_path(prefix.substr(1)) : std::nullopt;
    if (!prefix_path) {
        throw Error(ErrorCategory::invalid_input,
                    "conda prefix \"" + std::string(prefix) + "\" must be an absolute path without \"..\"");
    }
    const std::string prefix_text = "/" + prefix_path->text;
    if (options.package_cache.empty()) throw Error(ErrorCategory::internal, "no conda package cache folder given");

    // The caller's log need not be thread-safe: fetching logs from several threads.
    InstallOptions fetch_options = options;
    std::mutex log_mutex;
    if (options.log) {
        fetch_options.log = [&log_mutex, &options](std::string_view line) {
            const std::lock_guard lock(log_mutex);
            options.log(line);
        };
    }
    const detail::PackageCache cache(options.package_cache, fetch_options);
    std::vector<fs::path> extracted(packages.size());
    run_parallel(packages.size(), options.jobs, [&](std::size_t i) { extracted[i] = cache.get(packages[i]); });

    const core::UniqueFd root_fd = detail::open_root(root.string());
    const core::UniqueFd prefix_fd = detail::open_dir(root_fd.get(), *prefix_path, /*create=*/true, "conda prefix");
    detail::LinkContext context;
    context.prefix_fd = prefix_fd.get();
    context.prefix = prefix_text;
    context.python = detail::find_python(packages);
    context.log = options.log;
    detail::TaskPool pool(options.jobs == 0 ? std::max(1u, std::thread::hardware_concurrency()) : options.jobs);
    context.pool = &pool;

    const auto requested = specs_by_name(requested_specs);
    for (std::size_t i = 0; i < packages.size(); ++i) {
        const PackageRecord& r = packages[i];
        const auto paths = detail::link_package(r, extracted[i].string(), context);
        const auto specs = requested.find(r.name);
        const std::string json =
            prefix_record(r, paths, specs == requested.end() ? std::vector<std::string>{} : specs->second, prefix_text);
        const auto meta = detail::parse_rel_path("conda-meta/" + r.dist_name() + ".json");
        if (!meta || meta->components.size() != 2) {
            throw Error(ErrorCategory::invalid_input, detail::describe_package(r) + ": unusable name for conda-meta");
        }
        detail::write_new_file(prefix_fd.get(), *meta, json, 0644, "conda-meta");
    }
    detail::write_new_file(prefix_fd.get(), *detail::parse_rel_path("conda-meta/history"),
                           history(packages, requested_specs, options.channels), 0644, "conda-meta");
    if (options.log) options.log("linked " + std::to_string(packages.size()) + " packages into " + prefix_text);
}

}  // namespace ocibuild::conda
