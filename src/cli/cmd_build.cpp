#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "common.hpp"
#include "ocibuild/build/builder.hpp"
#include "ocibuild/build/outputs.hpp"
#include "ocibuild/recipe/recipe.hpp"

namespace ocibuild::cli {

namespace {

// SOURCE_DATE_EPOCH when set (reproducible-builds.org); otherwise the fixed epoch 0, never the clock.
std::int64_t build_epoch(const std::string& flag) {
    std::string text = flag.empty() ? env_or("SOURCE_DATE_EPOCH") : flag;
    if (text.empty()) return 0;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || end == text.c_str() || *end != '\0' || v < 0 || v > 253402300799LL)
        throw UsageError("SOURCE_DATE_EPOCH must be a number of seconds since 1970, got \"" + text + "\"");
    return v;
}

struct BuildArgs {
    std::string recipe;
    std::vector<std::string> outputs;
    std::string push;
    std::string store;
    std::string compression = "gzip";
    int level = 0;
    std::string timestamp;
    std::string work_dir;
    bool quiet = false;
    RegistryFlags registry;
    CondaFlags conda;
};

int run_build(BuildArgs& args) {
    auto recipe = recipe::parse_recipe(args.recipe);  // RecipeError → exit 2 before any work

    std::vector<build::OutputSpec> outputs;
    for (const auto& o : args.outputs) {
        auto spec = build::OutputSpec::parse(o);
        if (!spec)
            throw UsageError("bad --output \"" + o + "\": " + spec.error().message + " (at character " +
                             std::to_string(spec.error().offset + 1) + ")");
        outputs.push_back(*spec);
    }
    std::optional<registry::Reference> push_to;
    if (!args.push.empty()) push_to = parse_reference(args.push);
    build::check_supported(recipe);  // unsupported steps fail before anything is written

    build::BuildOptions options;
    options.epoch = build_epoch(args.timestamp);
    if (args.compression == "gzip") options.compression.kind = oci::Compression::gzip;
    else if (args.compression == "zstd") options.compression.kind = oci::Compression::zstd;
    else throw UsageError("--compression must be gzip or zstd");
    options.compression.level = args.level;
    if (!args.quiet) options.log = [](std::string_view line) { std::cerr << line << '\n'; };
    args.conda.apply(options);

    std::vector<std::string> registries;
    std::optional<registry::Reference> base_ref;
    if (recipe.base.kind == recipe::BaseSpec::Kind::registry) {
        base_ref = parse_reference(recipe.base.tag);
        registries.push_back(base_ref->registry);
    }
    if (push_to) registries.push_back(push_to->registry);
    args.registry.quiet = args.quiet;
    auto client = args.registry.make_client(registries);
    options.registry = client.get();

    auto store = open_store(args.store);
    options.work_dir = args.work_dir.empty() ? work_dir_for(store) : std::filesystem::path(args.work_dir);
    options.cancel = install_cancel_handler();
    auto image = build::build_image(recipe, store, options);

    // The image's own name:tag, used where an output names no tag.
    std::string first_tag = recipe.image.tags.empty() ? "latest" : recipe.image.tags.front();
    std::string full_name = recipe.image.name.empty() ? "" : recipe.image.name + ":" + first_tag;
    store.set_tag(full_name.empty() ? first_tag : full_name, image.manifest);
    for (const auto& out : outputs) {
        auto default_tag = out.kind == build::OutputSpec::Kind::docker_archive ? full_name : first_tag;
        build::write_output(store, image.manifest, out, default_tag);
        if (!args.quiet) std::cerr << "wrote " << out.to_string() << '\n';
    }
    if (push_to) {
        // Base layers on the same registry are mounted rather than uploaded again.
        std::string mount_from = base_ref && base_ref->registry == push_to->registry ? base_ref->repository : "";
        registry::push(*client, store, image.manifest, *push_to, mount_from);
        if (!args.quiet) std::cerr << "pushed " << push_to->to_string() << '\n';
    }
    std::cout << image.manifest.digest.str() << '\n';
    return 0;
}

}  // namespace

Command add_build_command(CLI::App& app) {
    auto args = std::make_shared<BuildArgs>();
    auto* cmd = app.add_subcommand("build", "Build the image a recipe describes (`ocibuild RECIPE` is short for this)");
    cmd->add_option("recipe", args->recipe, "Recipe file (TOML)")->required();
    cmd->add_option("-o,--output", args->outputs,
                    "Where to write the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], "
                    "docker-archive:FILE[:NAME:TAG] (repeatable)");
    cmd->add_option("--push", args->push, "Push the image to this registry reference");
    cmd->add_option("--store", args->store, "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
    cmd->add_option("--compression", args->compression, "Layer compression: gzip (default) or zstd");
    cmd->add_option("--compression-level", args->level, "Compression level (default gzip 2 = ISA-L, 3-9 = zlib; zstd 3)");
    cmd->add_option("--timestamp", args->timestamp, "Build epoch in seconds (default $SOURCE_DATE_EPOCH, else 0)");
    cmd->add_option("--work-dir", args->work_dir,
                    "Extracted layers, cache mounts and step scratch space (default: beside the store, STORE-work)");
    cmd->add_flag("-q,--quiet", args->quiet, "Print only the image digest");
    args->registry.add_to(*cmd);
    args->conda.add_to(*cmd, true);
    return {cmd, [args] { return run_build(*args); }};
}

}  // namespace ocibuild::cli
