#include "ocibuild/build/builder.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "ocibuild/build/base.hpp"
#include "conda_step.hpp"
#include "run_step.hpp"
#include "ocibuild/conda/channel.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::build {

namespace {
using core::Error;
using core::ErrorCategory;
namespace fs = std::filesystem;

// "/a/b/c" → "a/b/c"; "/" → "".
std::string image_relative(std::string_view abs) {
    std::string out;
    for (std::size_t i = 0; i < abs.size();) {
        while (i < abs.size() && abs[i] == '/') ++i;
        auto j = abs.find('/', i);
        if (j == std::string_view::npos) j = abs.size();
        if (j > i) {
            auto part = abs.substr(i, j - i);
            if (part != ".") {
                if (!out.empty()) out += '/';
                out += part;
            }
        }
        i = j;
    }
    return out;
}

// What the layers below a copy step are known to hold, to decide which parent directories of its
// destination the layer must carry.
struct KnownTree {
    bool opaque = false;              // a base image or a run step lies below: contents unknown
    std::set<std::string> dirs;       // directories earlier copy steps of this build created
};

// The parent directories of `dest` (image-relative) as entries (0755, root), for those the layers
// below certainly lack. Over a base image or a run step they are left out: an entry would replace
// the directory there (a /tmp losing its sticky bit), and extractors create missing ones (0755).
void add_parents(const std::string& dest, KnownTree& known, std::vector<layer::TarEntry>& entries) {
    for (std::size_t slash = dest.find('/'); slash != std::string::npos; slash = dest.find('/', slash + 1)) {
        if (known.opaque || !known.dirs.insert(dest.substr(0, slash)).second) continue;
        layer::TarEntry parent;
        parent.path = dest.substr(0, slash);
        parent.type = layer::EntryType::directory;
        parent.mode = 0755;
        entries.push_back(std::move(parent));
    }
}

// A copy step as layer entries: the copied tree with the step's owner (root by default, as Docker's
// COPY) and mode. A parent directory of the destination becomes an entry (0755, root) only when
// the layers below certainly lack it; over a base image it would replace the base's own directory
// (a /tmp losing its sticky bit), so it is left out (add_parents).
std::vector<layer::TarEntry> copy_entries(const recipe::CopyStep& copy, KnownTree& known) {
    struct stat st {};
    if (::lstat(copy.source.c_str(), &st) != 0) core::throw_errno("cannot read " + copy.source.string());
    bool source_is_dir = S_ISDIR(st.st_mode);
    std::string dest = image_relative(copy.to);
    if (!source_is_dir && (copy.to.ends_with("/") || dest.empty())) {
        dest = dest.empty() ? copy.source.filename().string() : dest + "/" + copy.source.filename().string();
    }
    std::vector<layer::TarEntry> entries;
    add_parents(dest, known, entries);
    std::vector<layer::TarEntry> tree;
    if (source_is_dir) {
        tree = layer::scan_tree(copy.source, dest);
        if (dest.empty()) {  // copying into "/": the root itself is not an entry
            std::erase_if(tree, [](const layer::TarEntry& e) { return e.path.empty(); });
        }
    } else {
        layer::TarEntry file;
        file.path = dest;
        file.mode = st.st_mode & 07777;
        file.mtime = st.st_mtime;
        if (S_ISLNK(st.st_mode)) {
            file.type = layer::EntryType::symlink;
            file.link_target = fs::read_symlink(copy.source).string();
        } else if (S_ISREG(st.st_mode)) {
            file.source = copy.source;
            file.size = st.st_size;
        } else {
            throw Error(ErrorCategory::unsupported, copy.source.string() + " is not a file, directory or symlink");
        }
        tree.push_back(std::move(file));
    }
    auto owner = copy.owner.value_or(recipe::Owner{});
    for (auto& e : tree) {
        e.uid = owner.uid;
        e.gid = owner.gid;
        if (copy.mode && e.type == layer::EntryType::regular) e.mode = *copy.mode;
        if (e.type == layer::EntryType::directory) known.dirs.insert(e.path);
        entries.push_back(std::move(e));
    }
    return entries;
}

std::string normalise_port(const std::string& port) { return port.find('/') == std::string::npos ? port + "/tcp" : port; }

// Applies [config] onto the base config, the way the matching Dockerfile instructions would.
std::string apply_config(const recipe::ConfigSection& c, oci::ImageConfig& config) {
    auto& cc = config.config;
    std::string summary;
    auto note = [&](std::string s) { summary += (summary.empty() ? "" : " ") + s; };
    if (!c.env.empty()) {
        // Expand every value against the env as it was before this section, so order can't matter.
        auto before = cc.env;
        for (const auto& [k, v] : c.env) cc.set_env(k, expand_vars(v, before));
        for (const auto& [k, v] : c.env) note("ENV " + k + "=" + expand_vars(v, before));
    }
    if (c.workdir) {
        cc.working_dir = *c.workdir;
        note("WORKDIR " + *c.workdir);
    }
    if (c.entrypoint) {
        cc.entrypoint = *c.entrypoint;
        if (!c.cmd) cc.cmd.reset();  // as Docker: a new ENTRYPOINT drops the base's CMD
        note("ENTRYPOINT");
    }
    if (c.cmd) {
        cc.cmd = *c.cmd;
        note("CMD");
    }
    if (c.user) {
        cc.user = *c.user;
        note("USER " + *c.user);
    }
    for (const auto& [k, v] : c.labels) cc.labels[k] = v;
    if (!c.labels.empty()) note("LABEL");
    for (const auto& p : c.ports) cc.exposed_ports.insert(normalise_port(p));
    if (!c.ports.empty()) note("EXPOSE");
    for (const auto& v : c.volumes) cc.volumes.insert(v);
    if (!c.volumes.empty()) note("VOLUME");
    if (c.stop_signal) {
        cc.stop_signal = *c.stop_signal;
        note("STOPSIGNAL " + *c.stop_signal);
    }
    if (!c.author.empty()) config.author = c.author;
    return summary;
}
}  // namespace

std::string expand_vars(std::string_view value, const std::vector<std::string>& env) {
    std::string out;
    for (std::size_t i = 0; i < value.size();) {
        if (value[i] == '$' && i + 1 < value.size() && value[i + 1] == '{') {
            auto close = value.find('}', i + 2);
            if (close != std::string_view::npos) {
                auto name = value.substr(i + 2, close - i - 2);
                for (const auto& e : env) {
                    if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=') {
                        out += e.substr(name.size() + 1);
                        break;
                    }
                }
                i = close + 1;
                continue;
            }
        }
        out += value[i++];
    }
    return out;
}

void check_supported(const recipe::Recipe& recipe) {
    for (std::size_t i = 0; i < recipe.steps.size(); ++i) {
        const auto& step = recipe.steps[i];
        if (!std::holds_alternative<recipe::CondaStep>(step.action)) continue;
        // Conda packages exist only for the platforms that have a conda subdir.
        core::with_context(recipe::to_string(step.pos) + ": step " + std::to_string(i + 1) + " (conda)",
                           [&] { (void)conda::subdir_for(recipe.image.platform); });
    }
}

namespace {
std::string lock_hint(const recipe::Recipe& recipe) { return "; run `ocibuild lock " + recipe.file.string() + "`"; }

// What the base part of a lock says about the base the recipe names now; empty when it matches.
std::string base_mismatch(const std::optional<LockFile>& lock, const recipe::Recipe& recipe) {
    if (!lock || !lock->base) return "it pins no base image";
    const auto platform = recipe.image.platform.to_string();
    if (lock->base->ref != recipe.base.ref)
        return "base changed (locked \"" + lock->base->ref + "\", recipe \"" + recipe.base.ref + "\")";
    if (lock->base->platform != platform)
        return "platform changed (locked " + lock->base->platform + ", recipe " + platform + ")";
    return {};
}

// The base image, pinned by the lock when it still names the same base: a registry base is then
// pulled by the locked manifest digest rather than by its tag. With `locked`, a lock that names
// another base, or a local base whose digest moved, fails.
BaseImage load_pinned_base(const recipe::Recipe& recipe, const store::Store& store, const BuildOptions& options,
                           const std::optional<LockFile>& lock, const std::filesystem::path& lock_path, bool use_pin,
                           bool locked) {
    auto fail = [&](const std::string& what) {
        return Error(ErrorCategory::invalid_input, recipe::to_string(recipe.base.pos) + ": base: the lock file " +
                                                       lock_path.string() + " does not match: " + what +
                                                       lock_hint(recipe));
    };
    auto stale = base_mismatch(lock, recipe);
    if (locked && !stale.empty()) throw fail(stale);
    const LockedBase* pin = stale.empty() && use_pin ? &*lock->base : nullptr;
    if (pin != nullptr && !pin->digest.empty() && recipe.base.kind == recipe::BaseSpec::Kind::registry) {
        auto ref = registry::Reference::parse(recipe.base.tag);
        if (ref) {
            auto name = ref->to_string();
            auto pinned = *ref;
            pinned.tag.clear();
            pinned.digest = core::Digest::must_parse(pin->digest);
            auto spec = recipe.base;
            spec.tag = pinned.to_string();
            auto base = core::with_context(
                "the lock file " + lock_path.string() + " pins the base to " + pin->digest + " (`ocibuild lock` re-pins it)",
                [&] { return load_base(spec, recipe.image.platform, store, options.registry); });
            base.name = name;  // the same annotation whether pulled by tag or by the pin
            return base;
        }
    }
    auto base = load_base(recipe.base, recipe.image.platform, store, options.registry);
    if (locked && base.descriptor && lock->base->digest != base.descriptor->digest.str())
        throw fail("base image digest changed (locked " + (lock->base->digest.empty() ? "none" : lock->base->digest) +
                   ", now " + base.descriptor->digest.str() + ")");
    return base;
}

LockedBase base_entry(const recipe::Recipe& recipe, const BaseImage& base) {
    return LockedBase{recipe.base.ref, recipe.image.platform.to_string(),
                      base.descriptor ? base.descriptor->digest.str() : std::string()};
}

bool has_conda_steps(const recipe::Recipe& recipe) {
    return std::any_of(recipe.steps.begin(), recipe.steps.end(),
                       [](const auto& s) { return std::holds_alternative<recipe::CondaStep>(s.action); });
}

std::filesystem::path lock_path_of(const recipe::Recipe& recipe, const BuildOptions& options) {
    return options.lock_file.empty() ? lock_path_for(recipe.file) : options.lock_file;
}
}  // namespace

LockFile lock_recipe(const recipe::Recipe& recipe, const store::Store& store, const BuildOptions& options,
                     const std::vector<std::string>& update) {
    check_supported(recipe);
    const auto lock_path = lock_path_of(recipe, options);
    auto previous = read_lock(lock_path);
    if (options.log) options.log("base: " + recipe.base.ref);
    // --update keeps the pinned base; a plain lock re-resolves it as everything else.
    auto base = load_pinned_base(recipe, store, options, previous, lock_path, !update.empty(), false);
    auto lock = detail::resolve_lock(recipe, base, base_entry(recipe, base), store, options, previous, lock_path,
                                     update.empty() ? detail::LockMode::relock : detail::LockMode::update, update);
    write_lock(lock_path, lock);
    return lock;
}

BuiltImage build_image(const recipe::Recipe& recipe, const store::Store& store, const BuildOptions& options) {
    check_supported(recipe);
    auto log = [&](std::string_view line) {
        if (options.log) options.log(line);
    };
    const auto created = oci::rfc3339(options.epoch);
    const auto total = std::to_string(recipe.steps.size());

    // Decide first: the base (pinned by the lock) and every conda step's packages, then write the
    // lock if that changed it, before any step runs.
    const auto lock_path = lock_path_of(recipe, options);
    auto previous = read_lock(lock_path);
    if (options.locked && !previous)
        throw Error(ErrorCategory::not_found,
                    recipe.file.string() + ": --locked, but there is no lock file " + lock_path.string() + lock_hint(recipe));
    log("base: " + recipe.base.ref);
    auto base = load_pinned_base(recipe, store, options, previous, lock_path, true, options.locked);
    auto lock = detail::resolve_lock(recipe, base, base_entry(recipe, base), store, options, previous, lock_path,
                                     options.locked ? detail::LockMode::locked : detail::LockMode::build);
    // --locked never writes: a lock whose entries only moved with their steps is left as it is.
    if (!options.locked && (previous ? *previous != lock : has_conda_steps(recipe))) {
        if (previous && previous->base != lock.base) log("lock: base " + recipe.base.ref + " pinned to " +
                                                         (lock.base->digest.empty() ? "nothing" : lock.base->digest));
        write_lock(lock_path, lock);
        log("lock: wrote " + lock_path.string());
    }

    oci::ImageManifest manifest;
    manifest.layers = base.manifest.layers;
    oci::ImageConfig config = base.config;
    config.created = created;

    std::unique_ptr<detail::RunContext> runner;  // set up on the first run step
    KnownTree known{!manifest.layers.empty(), {}};
    for (std::size_t i = 0; i < recipe.steps.size(); ++i) {
        const auto& step = recipe.steps[i];
        auto label = "step " + std::to_string(i + 1) + "/" + total + " (" + recipe::to_string(step.pos) + ")";
        layer::LayerBlob blob;
        std::string created_by;
        if (const auto* copy = std::get_if<recipe::CopyStep>(&step.action)) {
            log(label + ": copy " + copy->from + " -> " + copy->to);
            blob = core::with_context(label, [&] {
                return layer::write_layer(store, copy_entries(*copy, known), options.epoch, options.compression);
            });
            created_by = "ocibuild copy " + copy->from + " " + copy->to;
        } else if (const auto* conda_step = std::get_if<recipe::CondaStep>(&step.action)) {
            std::string specs;
            for (const auto& p : conda_step->packages) specs += (specs.empty() ? "" : " ") + p;
            log(label + ": conda " + specs + " -> " + conda_step->prefix);
            if (options.work_dir.empty()) throw Error(ErrorCategory::invalid_input, label + ": conda steps need a work directory");
            blob = core::with_context(label, [&] {
                std::filesystem::create_directories(options.work_dir / "tmp");
                core::TempDir root(options.work_dir / "tmp", "conda");
                std::vector<layer::TarEntry> entries;
                auto installed = detail::install_conda_step(recipe, *conda_step, *lock.find(i + 1), root.path(), options);
                if (!installed.empty()) add_parents(installed.front().path, known, entries);
                for (auto& e : installed) {
                    if (e.type == layer::EntryType::directory) known.dirs.insert(e.path);
                    entries.push_back(std::move(e));
                }
                return layer::write_layer(store, std::move(entries), options.epoch, options.compression);
            });
            created_by = "ocibuild conda " + specs;
        } else {
            const auto& run = std::get<recipe::RunStep>(step.action);
            auto command = run.command.empty() ? nlohmann::json(run.argv).dump() : run.command;
            log(label + ": run " + command);
            if (!runner) runner = std::make_unique<detail::RunContext>(store, options);
            blob = runner->run(run, manifest, config, label);
            known.opaque = true;
            created_by = "ocibuild run " + command;
        }
        manifest.layers.push_back(blob.descriptor);
        config.diff_ids.push_back(blob.diff_id);
        config.history.push_back(oci::HistoryEntry{created, created_by, "", "", false});
    }

    auto summary = apply_config(recipe.config, config);
    if (!summary.empty()) config.history.push_back(oci::HistoryEntry{created, "ocibuild config " + summary, "", "", true});
    if (config.history.empty() && config.diff_ids.empty())
        config.history.push_back(oci::HistoryEntry{created, "ocibuild scratch", "", "", true});

    auto config_bytes = config.serialize();
    manifest.config = store.put(config_bytes, oci::media_type::oci_config);
    manifest.annotations[std::string(oci::annotation_created)] = created;
    if (base.descriptor) {
        manifest.annotations[std::string(oci::annotation_base_name)] = base.name;
        manifest.annotations[std::string(oci::annotation_base_digest)] = base.descriptor->digest.str();
    }
    // A Docker base keeps its Docker layer types: OCI and Docker gzip layers are interchangeable,
    // and the manifest says OCI throughout.
    for (auto& l : manifest.layers) {
        if (l.media_type == oci::media_type::docker_layer_gzip) l.media_type = oci::media_type::oci_layer_gzip;
    }
    auto manifest_desc = store.put(manifest.serialize(), oci::media_type::oci_manifest);
    log("image: " + manifest_desc.digest.str());
    return BuiltImage{manifest_desc, std::move(manifest), std::move(config)};
}

}  // namespace ocibuild::build
