#include "conda_step.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ocibuild/conda/channel.hpp"
#include "ocibuild/conda/install.hpp"
#include "ocibuild/conda/repodata_fetch.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/conda/virtual_packages.hpp"
#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::build::detail {

namespace {
using core::Error;
using core::ErrorCategory;
namespace fs = std::filesystem;

std::string join(const std::vector<std::string>& items, std::string_view separator = ", ") {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : std::string(separator)) + item;
    return out;
}

// "numpy" added, "scipy" removed; or "reordered" when only the order moved.
std::string list_change(const std::vector<std::string>& before, const std::vector<std::string>& after) {
    std::set<std::string> b(before.begin(), before.end()), a(after.begin(), after.end());
    std::vector<std::string> parts;
    for (const auto& x : after)
        if (!b.contains(x)) parts.push_back("\"" + x + "\" added");
    for (const auto& x : before)
        if (!a.contains(x)) parts.push_back("\"" + x + "\" removed");
    return parts.empty() ? "reordered" : join(parts);
}

std::string virtual_change(const std::vector<conda::VirtualPackage>& before,
                           const std::vector<conda::VirtualPackage>& after) {
    std::map<std::string, std::string> b, a;
    for (const auto& v : before) b[v.name] = virtual_package_text(v);
    for (const auto& v : after) a[v.name] = virtual_package_text(v);
    std::set<std::string> names;
    for (const auto& [k, v] : b) names.insert(k);
    for (const auto& [k, v] : a) names.insert(k);
    std::vector<std::string> parts;
    for (const auto& n : names) {
        auto was = b.contains(n) ? b[n] : "none";
        auto now = a.contains(n) ? a[n] : "none";
        if (was != now) parts.push_back(n + " " + was + " -> " + now);
    }
    return join(parts);
}

// What makes a lock entry stale for the step as it is now; empty when it still matches.
std::string mismatch(const LockedCondaStep* locked, const LockedCondaStep& now) {
    if (locked == nullptr) return "it has no entry for this step";
    std::vector<std::string> what;
    if (locked->specs != now.specs) what.push_back("specs changed (" + list_change(locked->specs, now.specs) + ")");
    if (locked->channels != now.channels)
        what.push_back("channels changed (" + list_change(locked->channels, now.channels) + ")");
    if (locked->subdir != now.subdir) what.push_back("subdir changed (" + locked->subdir + " -> " + now.subdir + ")");
    if (locked->channel_priority != now.channel_priority)
        what.push_back("channel_priority changed (" + locked->channel_priority + " -> " + now.channel_priority + ")");
    if (locked->virtual_packages != now.virtual_packages)
        what.push_back("virtual packages changed (" + virtual_change(locked->virtual_packages, now.virtual_packages) +
                       ")");
    if (locked->prefix != now.prefix) what.push_back("prefix changed (" + locked->prefix + " -> " + now.prefix + ")");
    if (what.empty() && locked->inputs != now.inputs) what.push_back("its inputs hash differs (was the lock edited?)");
    if (what.empty() && locked->packages.empty()) what.push_back("it locks no packages");
    return join(what, "; ");
}

// The base image's glibc, remembered per manifest digest: finding it reads every base layer.
std::optional<std::string> base_glibc(const BaseImage& base, const store::Store& store, const fs::path& work_dir) {
    if (base.manifest.layers.empty() || !base.descriptor) return std::nullopt;
    fs::path memo;
    if (!work_dir.empty()) {
        memo = work_dir / "conda" / "glibc" / std::string(base.descriptor->digest.hex());
        std::ifstream in(memo);
        std::string text;
        if (in && std::getline(in, text)) {
            if (text == "none") return std::nullopt;
            if (!text.empty()) return text;
        }
    }
    auto found = conda::detect_glibc(store, base.manifest);
    if (!memo.empty()) {
        std::error_code ec;
        fs::create_directories(memo.parent_path(), ec);
        if (!ec) core::write_file_atomic(memo, found.value_or("none") + "\n");
    }
    return found;
}

std::string step_label(const recipe::Step& step, std::size_t index) {
    return recipe::to_string(step.pos) + ": step " + std::to_string(index) + " (conda)";
}

const recipe::SourcePos& mismatch_pos(const recipe::Step& step, const recipe::CondaStep& conda_step) {
    return conda_step.packages_pos.line > 0 ? conda_step.packages_pos : step.pos;
}

std::string run_lock_hint(const recipe::Recipe& recipe) { return "; run `ocibuild lock " + recipe.file.string() + "`"; }

// Solving one step: its channels' repodata (cached under the work dir), then the solver.
std::vector<conda::PackageRecord> solve_step(const recipe::CondaStep& step, const LockedCondaStep& entry,
                                             const std::vector<conda::Channel>& channels,
                                             const conda::VirtualPackageSet& virtuals,
                                             const conda::ChannelConfig& config, const BuildOptions& options,
                                             std::vector<conda::PackageRecord> preferred) {
    registry::HttpClient http;
    conda::FetchOptions fetch;
    fetch.http = &http;
    fetch.channels = config;
    if (!options.work_dir.empty()) fetch.cache_dir = options.work_dir / "conda" / "repodata";
    fetch.log = options.log;
    auto data = conda::load_channels(channels, entry.subdir, fetch);
    conda::SolveRequest request;
    request.specs = step.packages;
    for (const auto& subdirs : data) {
        std::vector<const conda::RepoData*> pointers;
        for (const auto& d : subdirs) pointers.push_back(&d);
        request.channels.push_back(std::move(pointers));
    }
    request.channel_names = step.channels;
    request.virtual_packages = virtuals;
    request.priority = conda::parse_channel_priority(step.channel_priority).value_or(conda::ChannelPriority::strict);
    // Lock files hold URLs without credentials; the channels being solved may carry them.
    for (auto& p : preferred) {
        p.url = conda::restore_credentials(p.url, channels);
        p.channel = conda::restore_credentials(p.channel, channels);
    }
    request.preferred = std::move(preferred);
    auto packages = conda::solve(request);
    // What goes into the lock file (and from there into output): never a password or token.
    for (auto& p : packages) {
        p.url = conda::redact_url(p.url);
        p.channel = conda::redact_url(p.channel);
    }
    return packages;
}

bool same_packages(const std::vector<conda::PackageRecord>& a, const std::vector<conda::PackageRecord>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].url != b[i].url || a[i].sha256 != b[i].sha256) return false;
    return true;
}
}  // namespace

conda::ChannelConfig channel_config(const recipe::Recipe& recipe, const CondaOptions& options) {
    conda::ChannelConfig config;
    if (!recipe.conda.channel_alias.empty()) config.channel_alias = recipe.conda.channel_alias;
    if (!options.channel_alias.empty()) config.channel_alias = options.channel_alias;
    config.mirrors = recipe.conda.mirrors;
    for (const auto& [prefix, urls] : options.mirrors) config.mirrors[prefix] = urls;
    return config;
}

LockFile resolve_lock(const recipe::Recipe& recipe, const BaseImage& base, const LockedBase& base_entry,
                      const store::Store& store, const BuildOptions& options, const std::optional<LockFile>& previous,
                      const fs::path& lock_path, LockMode mode, const std::vector<std::string>& update) {
    auto log = [&](const std::string& line) {
        if (options.log) options.log(line);
    };
    LockFile out;
    out.base = base_entry;

    std::set<std::string> update_names(update.begin(), update.end());
    if (mode == LockMode::update) {
        if (!previous)
            throw Error(ErrorCategory::not_found,
                        "there is no lock file " + lock_path.string() + " to update" + run_lock_hint(recipe));
        std::set<std::string> locked_names;
        for (const auto& s : previous->conda)
            for (const auto& p : s.packages) locked_names.insert(p.name);
        for (const auto& name : update)
            if (!locked_names.contains(name))
                throw Error(ErrorCategory::not_found,
                            "--update " + name + ": no package named " + name + " in the lock file " + lock_path.string());
    }

    std::optional<conda::TargetFacts> facts;  // read from the base only when there is a conda step
    const auto config = channel_config(recipe, options.conda);
    std::set<std::size_t> conda_steps;
    std::set<std::size_t> claimed;  // step numbers of the lock entries in use
    std::string locked_mismatch;
    for (std::size_t i = 0; i < recipe.steps.size(); ++i) {
        const auto& step = recipe.steps[i];
        const auto* conda_step = std::get_if<recipe::CondaStep>(&step.action);
        if (conda_step == nullptr) continue;
        const std::size_t index = i + 1;
        conda_steps.insert(index);
        const auto label = step_label(step, index);
        core::with_context(label, [&] {
            if (!facts) {
                facts.emplace();
                facts->subdir = conda::subdir_for(recipe.image.platform);
                facts->env = base.config.config.env;
                facts->glibc = base_glibc(base, store, options.work_dir);
            }
            std::vector<conda::Channel> channels;
            LockedCondaStep entry;
            entry.step = index;
            entry.prefix = conda_step->prefix;
            entry.subdir = facts->subdir;
            entry.channel_priority = conda_step->channel_priority;
            for (const auto& c : conda_step->channels) {
                channels.push_back(conda::Channel::parse(c, config, recipe.directory));
                entry.channels.push_back(conda::redact_url(channels.back().url));
            }
            entry.specs = conda_step->packages;
            auto virtuals = conda::virtual_packages(*facts, conda_step->virtual_packages, options.conda.override_env);
            entry.virtual_packages = virtuals.packages;
            std::sort(entry.virtual_packages.begin(), entry.virtual_packages.end(),
                      [](const auto& a, const auto& b) { return a.name < b.name; });
            entry.inputs = conda_inputs_hash(entry.specs, entry.channels, entry.subdir, entry.channel_priority,
                                             entry.virtual_packages);

            const LockedCondaStep* locked = previous ? previous->find(index) : nullptr;
            auto stale = mismatch(locked, entry);
            if (!stale.empty() && previous) {
                // A step inserted or removed above moves this one: an entry with the same inputs and
                // prefix under another number is still this step's answer (no re-solve for an apt step).
                for (const auto& other : previous->conda) {
                    if (other.step != index && other.prefix == entry.prefix && other.inputs == entry.inputs &&
                        !other.packages.empty() && !claimed.contains(other.step)) {
                        locked = &other;
                        stale.clear();
                        log("lock: step " + std::to_string(index) + " uses the lock entry of step " +
                            std::to_string(other.step) + " (same packages requested; the step moved)");
                        break;
                    }
                }
            }
            if (locked != nullptr && stale.empty()) claimed.insert(locked->step);
            std::vector<conda::PackageRecord> preferred;
            switch (mode) {
                case LockMode::locked:
                    if (!stale.empty()) {
                        locked_mismatch = recipe::to_string(mismatch_pos(step, *conda_step)) + ": step " +
                                          std::to_string(index) + " (conda): the lock file " + lock_path.string() +
                                          " does not match: " + stale + run_lock_hint(recipe);
                        return;
                    }
                    [[fallthrough]];
                case LockMode::build:
                    if (stale.empty()) {
                        entry.packages = locked->packages;
                        out.conda.push_back(std::move(entry));
                        return;
                    }
                    if (locked != nullptr) preferred = locked->packages;
                    break;
                case LockMode::relock:
                    break;
                case LockMode::update:
                    if (locked != nullptr)
                        for (const auto& p : locked->packages)
                            if (!update_names.contains(p.name)) preferred.push_back(p);
                    break;
            }
            entry.packages = solve_step(*conda_step, entry, channels, virtuals, config, options, std::move(preferred));
            std::sort(entry.packages.begin(), entry.packages.end(),
                      [](const auto& a, const auto& b) { return a.name < b.name; });
            if (locked == nullptr) {
                log("lock: step " + std::to_string(index) + " solved (" + std::to_string(entry.packages.size()) +
                    " packages)");
            } else if (mode == LockMode::build) {
                log("lock: step " + std::to_string(index) + " re-solved (" +
                    (same_packages(locked->packages, entry.packages) ? "same packages" : "packages changed") +
                    "): " + stale);
            } else {
                log("lock: step " + std::to_string(index) + " solved (" +
                    (same_packages(locked->packages, entry.packages) ? "unchanged" : "packages changed") + ")");
            }
            out.conda.push_back(std::move(entry));
        });
        // Thrown here, not inside: the message already names the recipe position and step.
        if (!locked_mismatch.empty()) throw Error(ErrorCategory::invalid_input, locked_mismatch);
    }
    if (mode == LockMode::locked && previous) {
        for (const auto& s : previous->conda)
            if (!conda_steps.contains(s.step) && !claimed.contains(s.step))
                throw Error(ErrorCategory::invalid_input,
                            recipe.file.string() + ": the lock file " + lock_path.string() + " does not match: it locks step " +
                                std::to_string(s.step) + " as a conda step, which the recipe no longer has" +
                                run_lock_hint(recipe));
    }
    return out;
}

std::vector<layer::TarEntry> install_conda_step(const recipe::Recipe& recipe, const recipe::CondaStep& step,
                                                const LockedCondaStep& resolved, const fs::path& root,
                                                const BuildOptions& options) {
    registry::HttpClient http;
    conda::InstallOptions install;
    install.http = &http;
    install.channels = channel_config(recipe, options.conda);
    if (!options.work_dir.empty()) install.package_cache = options.work_dir / "conda" / "pkgs";
    install.log = options.log;
    // Downloads need the credentials the lock file leaves out: they come from the recipe's channels.
    std::vector<conda::Channel> channels;
    for (const auto& c : step.channels) channels.push_back(conda::Channel::parse(c, install.channels, recipe.directory));
    auto packages = resolved.packages;
    for (auto& p : packages) p.url = conda::restore_credentials(p.url, channels);
    conda::install(conda::sort_topologically(std::move(packages)), root, step.prefix, step.packages, install);

    // The prefix as a path relative to the image root ("/opt/conda/" → "opt/conda").
    auto relative = fs::path(step.prefix).lexically_normal().relative_path().string();
    while (relative.ends_with('/')) relative.pop_back();
    if (relative.empty()) throw Error(ErrorCategory::invalid_input, "a conda prefix cannot be /");
    auto entries = layer::scan_tree(root / relative, relative);
    for (auto& e : entries) {
        e.uid = 0;
        e.gid = 0;
    }
    return entries;
}

}  // namespace ocibuild::build::detail
