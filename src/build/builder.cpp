#include "ocibuild/build/builder.hpp"

#include <sys/stat.h>

#include <set>

#include "ocibuild/build/base.hpp"
#include "run_step.hpp"
#include "ocibuild/core/error.hpp"
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

// A copy step as layer entries: the copied tree with the step's owner (root by default, as Docker's
// COPY) and mode. A parent directory of the destination becomes an entry (0755, root) only when
// the layers below certainly lack it; over a base image it would replace the base's own directory
// (a /tmp losing its sticky bit), so it is left out and extractors create it if missing (0755).
std::vector<layer::TarEntry> copy_entries(const recipe::CopyStep& copy, KnownTree& known) {
    struct stat st {};
    if (::lstat(copy.source.c_str(), &st) != 0) core::throw_errno("cannot read " + copy.source.string());
    bool source_is_dir = S_ISDIR(st.st_mode);
    std::string dest = image_relative(copy.to);
    if (!source_is_dir && (copy.to.ends_with("/") || dest.empty())) {
        dest = dest.empty() ? copy.source.filename().string() : dest + "/" + copy.source.filename().string();
    }
    std::vector<layer::TarEntry> entries;
    for (std::size_t slash = dest.find('/'); slash != std::string::npos; slash = dest.find('/', slash + 1)) {
        if (known.opaque || !known.dirs.insert(dest.substr(0, slash)).second) continue;
        layer::TarEntry parent;
        parent.path = dest.substr(0, slash);
        parent.type = layer::EntryType::directory;
        parent.mode = 0755;
        entries.push_back(std::move(parent));
    }
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
        if (std::holds_alternative<recipe::CondaStep>(step.action))
            throw Error(ErrorCategory::unsupported, recipe::to_string(step.pos) + ": step " + std::to_string(i + 1) + ": " +
                                                        std::string(step.kind()) + " steps are not supported yet");
    }
}

BuiltImage build_image(const recipe::Recipe& recipe, const store::Store& store, const BuildOptions& options) {
    check_supported(recipe);
    auto log = [&](std::string_view line) {
        if (options.log) options.log(line);
    };
    const auto created = oci::rfc3339(options.epoch);
    const auto total = std::to_string(recipe.steps.size());

    log("base: " + recipe.base.ref);
    auto base = load_base(recipe.base, recipe.image.platform, store, options.registry);

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
