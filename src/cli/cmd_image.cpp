// pull, push, inspect: moving and looking at images between registries, layouts and the store.
#include <cstdio>
#include <iostream>

#include "common.hpp"
#include "ocibuild/build/base.hpp"
#include "ocibuild/build/outputs.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::cli {

namespace {

struct Local {
    bool is_local = false;
    bool archive = false;
    std::string path;
    std::string tag;
};

// "oci:DIR[:TAG]" / "oci-archive:FILE[:TAG]", parsed as outputs are.
Local parse_local(const std::string& text) {
    Local l;
    if (!text.starts_with("oci:") && !text.starts_with("oci-archive:")) {
        // "transport:/path" or "transport:./path" that is not ours: say so rather than look it up as a tag.
        auto colon = text.find(':');
        if (colon != std::string::npos && colon + 1 < text.size() && (text[colon + 1] == '/' || text[colon + 1] == '.'))
            throw UsageError("unknown image location \"" + text + "\" (use oci:DIR[:TAG], oci-archive:FILE[:TAG] or a tag in the store)");
        return l;
    }
    auto spec = build::OutputSpec::parse(text);
    if (!spec) throw UsageError("bad image location \"" + text + "\": " + spec.error().message);
    l.is_local = true;
    l.archive = spec->kind == build::OutputSpec::Kind::oci_archive;
    l.path = spec->path.string();
    l.tag = spec->tag;
    return l;
}

struct PullArgs {
    std::string ref;
    std::vector<std::string> outputs;
    std::string platform;
    std::string store;
    bool quiet = false;
    RegistryFlags registry;
};

int run_pull(PullArgs& args) {
    auto ref = parse_reference(args.ref);
    auto platform = platform_or_host(args.platform);
    std::vector<build::OutputSpec> outputs;
    for (const auto& o : args.outputs) {
        auto spec = build::OutputSpec::parse(o);
        if (!spec) throw UsageError("bad --output \"" + o + "\": " + spec.error().message);
        outputs.push_back(*spec);
    }
    auto store = open_store(args.store);
    args.registry.quiet = args.quiet;
    auto client = args.registry.make_client({ref.registry});
    auto result = registry::pull(*client, ref, platform, store);
    for (const auto& out : outputs) {
        auto tag = out.kind == build::OutputSpec::Kind::docker_archive ? ref.name() + ":" + (ref.tag.empty() ? "latest" : ref.tag)
                                                                       : (ref.tag.empty() ? "latest" : ref.tag);
        build::write_output(store, result.manifest, out, tag);
        if (!args.quiet) std::cerr << "wrote " << out.to_string() << '\n';
    }
    std::cout << result.top.digest.str() << '\n';
    return 0;
}

struct PushArgs {
    std::string source;
    std::string dest;
    std::string store;
    bool quiet = false;
    RegistryFlags registry;
};

int run_push(PushArgs& args) {
    auto dest = parse_reference(args.dest);
    auto store = open_store(args.store);
    auto local = parse_local(args.source);
    oci::Descriptor top = local.is_local ? build::import_local_image(local.path, local.tag, local.archive, store)
                                         : store.resolve(args.source);
    if (!local.is_local) top.annotations.clear();
    args.registry.quiet = args.quiet;
    auto client = args.registry.make_client({dest.registry});
    registry::push(*client, store, top, dest);
    std::cout << top.digest.str() << '\n';
    return 0;
}

struct InspectArgs {
    std::string ref;
    bool raw = false;
    bool config = false;
    std::string format;
    std::string platform;
    std::string store;
    RegistryFlags registry;
};

std::string human_size(std::int64_t n) {
    char buf[32];
    if (n < 1000) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
    else if (n < 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(n) / 1e3);
    else if (n < 1000LL * 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(n) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.2f GB", static_cast<double>(n) / 1e9);
    return buf;
}

int run_inspect(InspectArgs& args) {
    if (!args.format.empty() && args.format != "json") throw UsageError("--format must be json");
    auto platform = platform_or_host(args.platform);
    auto store = open_store(args.store);
    auto local = parse_local(args.ref);
    args.registry.quiet = true;

    std::string name;
    std::string top_bytes;
    oci::Descriptor top;
    oci::Descriptor manifest_desc;
    std::unique_ptr<registry::RegistryClient> client;
    std::optional<registry::Reference> ref;
    if (local.is_local) {
        top = build::import_local_image(local.path, local.tag, local.archive, store);
        top_bytes = store.read(top.digest);
        name = args.ref;
    } else {
        ref = parse_reference(args.ref);
        client = args.registry.make_client({ref->registry});
        auto mb = client->get_manifest(*ref);
        top = store.put(mb.bytes, mb.media_type);
        top_bytes = mb.bytes;
        name = ref->to_string();
    }
    if (args.raw && !args.config) {
        std::cout << top_bytes << std::flush;
        return 0;
    }
    manifest_desc = top;
    std::optional<oci::Platform> chosen_platform;
    if (oci::media_type::is_index(top.media_type)) {
        auto index = oci::ImageIndex::parse(top_bytes, "index " + top.digest.str());
        manifest_desc = index.select(platform, name);
        chosen_platform = manifest_desc.platform;
        if (!local.is_local) {
            registry::Reference child = *ref;
            child.tag.clear();
            child.digest = manifest_desc.digest;
            auto mb = client->get_manifest(child);
            (void)store.put(mb.bytes, mb.media_type);
        }
    }
    auto manifest = oci::ImageManifest::parse(store.read(manifest_desc.digest), "manifest " + manifest_desc.digest.str());
    if (!local.is_local) client->fetch_blob(*ref, manifest.config, store);
    auto config_bytes = store.read(manifest.config.digest);
    if (args.config) {
        std::cout << config_bytes << (args.raw ? "" : "\n") << std::flush;
        return 0;
    }
    auto config = oci::ImageConfig::parse(config_bytes, "config " + manifest.config.digest.str());
    oci::Platform image_platform{config.os, config.architecture, config.variant, {}, {}};
    std::int64_t total = manifest.config.size;
    for (const auto& l : manifest.layers) total += l.size;
    if (args.format == "json") {
        nlohmann::json j = nlohmann::json::object();
        j["Name"] = name;
        j["Digest"] = top.digest.str();
        j["MediaType"] = top.media_type;
        j["ManifestDigest"] = manifest_desc.digest.str();
        j["Platform"] = image_platform.to_string();
        j["Config"] = manifest.config.digest.str();
        j["Created"] = config.created;
        j["Env"] = config.config.env;
        j["Layers"] = nlohmann::json::array();
        for (const auto& l : manifest.layers)
            j["Layers"].push_back({{"Digest", l.digest.str()}, {"Size", l.size}, {"MediaType", l.media_type}});
        j["Size"] = total;
        std::cout << j.dump(2) << '\n';
        return 0;
    }
    std::cout << "Name:      " << name << '\n'
              << "Digest:    " << top.digest.str() << '\n'
              << "MediaType: " << top.media_type << '\n';
    if (manifest_desc.digest != top.digest) std::cout << "Manifest:  " << manifest_desc.digest.str() << '\n';
    std::cout << "Platform:  " << image_platform.to_string() << '\n'
              << "Created:   " << (config.created.empty() ? "-" : config.created) << '\n'
              << "Config:    " << manifest.config.digest.str() << '\n'
              << "Layers:\n";
    for (const auto& l : manifest.layers)
        std::cout << "  " << l.digest.str() << "  " << human_size(l.size) << "  " << l.media_type << '\n';
    std::cout << "Size:      " << human_size(total) << '\n';
    return 0;
}

}  // namespace

std::vector<Command> add_image_commands(CLI::App& app) {
    std::vector<Command> commands;
    {
        auto args = std::make_shared<PullArgs>();
        auto* cmd = app.add_subcommand("pull", "Pull an image from a registry into the store");
        cmd->add_option("ref", args->ref, "Image reference, e.g. nvidia/cuda:12.4.1-base-ubuntu22.04")->required();
        cmd->add_option("-o,--output", args->outputs, "Also write it to oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE");
        cmd->add_option("--platform", args->platform, "os/arch[/variant] to pick from an index (default: this machine's)");
        cmd->add_option("--store", args->store, "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
        cmd->add_flag("-q,--quiet", args->quiet, "No progress output");
        args->registry.add_to(*cmd);
        commands.push_back({cmd, [args] { return run_pull(*args); }});
    }
    {
        auto args = std::make_shared<PushArgs>();
        auto* cmd = app.add_subcommand("push", "Push an image (oci:DIR[:TAG], oci-archive:FILE[:TAG] or a store tag) to a registry");
        cmd->add_option("source", args->source, "The image to push")->required();
        cmd->add_option("dest", args->dest, "Registry reference to push to")->required();
        cmd->add_option("--store", args->store, "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
        cmd->add_flag("-q,--quiet", args->quiet, "No progress output");
        args->registry.add_to(*cmd);
        commands.push_back({cmd, [args] { return run_push(*args); }});
    }
    {
        auto args = std::make_shared<InspectArgs>();
        auto* cmd = app.add_subcommand("inspect", "Show an image's manifest, config and layers");
        cmd->add_option("ref", args->ref, "Registry reference, oci:DIR[:TAG] or oci-archive:FILE[:TAG]")->required();
        cmd->add_flag("--raw", args->raw, "Print the manifest (or index) exactly as stored");
        cmd->add_flag("--config", args->config, "Print the image config");
        cmd->add_option("--format", args->format, "json for machine-readable output");
        cmd->add_option("--platform", args->platform, "os/arch[/variant] to pick from an index (default: this machine's)");
        cmd->add_option("--store", args->store, "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
        args->registry.add_to(*cmd);
        commands.push_back({cmd, [args] { return run_inspect(*args); }});
    }
    return commands;
}

}  // namespace ocibuild::cli
