// `ocibuild lock RECIPE [--update NAME...]`: pin the base image and every conda step's packages.
// `ocibuild export RECIPE --explicit [--step N] [-o FILE]`: a locked step as a CEP 23 @EXPLICIT file.
#include <iostream>

#include "common.hpp"
#include "ocibuild/build/builder.hpp"
#include "ocibuild/build/lock.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/recipe/recipe.hpp"

namespace ocibuild::cli {

namespace {
using core::Error;
using core::ErrorCategory;

struct LockArgs {
    std::string recipe;
    std::vector<std::string> update;
    std::string store;
    std::string work_dir;
    bool quiet = false;
    RegistryFlags registry;
    CondaFlags conda;
};

int run_lock(LockArgs& args) {
    auto recipe = recipe::parse_recipe(args.recipe);
    build::BuildOptions options;
    if (!args.quiet) options.log = [](std::string_view line) { std::cerr << line << '\n'; };
    args.conda.apply(options);

    std::vector<std::string> registries;
    if (recipe.base.kind == recipe::BaseSpec::Kind::registry) registries.push_back(parse_reference(recipe.base.tag).registry);
    args.registry.quiet = args.quiet;
    auto client = args.registry.make_client(registries);
    options.registry = client.get();
    auto store = open_store(args.store);
    options.work_dir = args.work_dir.empty() ? work_dir_for(store) : std::filesystem::path(args.work_dir);

    auto lock = build::lock_recipe(recipe, store, options, args.update);
    if (!args.quiet) {
        auto path = options.lock_file.empty() ? build::lock_path_for(recipe.file) : options.lock_file;
        std::size_t packages = 0;
        for (const auto& s : lock.conda) packages += s.packages.size();
        std::cerr << "wrote " << path.string() << " (" << lock.conda.size() << " conda step"
                  << (lock.conda.size() == 1 ? "" : "s") << ", " << packages << " packages)\n";
    }
    return 0;
}

struct ExportArgs {
    std::string recipe;
    bool explicit_format = false;
    std::size_t step = 0;
    std::string output;
    std::string lock_file;
};

int run_export(const ExportArgs& args) {
    if (!args.explicit_format) throw UsageError("export needs a format: --explicit");
    auto recipe = recipe::parse_recipe(args.recipe);
    auto path = args.lock_file.empty() ? build::lock_path_for(recipe.file) : std::filesystem::path(args.lock_file);
    auto lock = build::read_lock(path);
    if (!lock)
        throw Error(ErrorCategory::not_found,
                    "there is no lock file " + path.string() + "; run `ocibuild lock " + recipe.file.string() + "`");

    const build::LockedCondaStep* entry = nullptr;
    if (args.step != 0) {
        entry = lock->find(args.step);
        if (entry == nullptr) {
            std::string locked;
            for (const auto& s : lock->conda) locked += (locked.empty() ? "" : ", ") + std::to_string(s.step);
            throw UsageError("--step " + std::to_string(args.step) + ": the lock file " + path.string() +
                             " has no conda step " + std::to_string(args.step) +
                             (locked.empty() ? " (it locks none)" : " (it locks step " + locked + ")"));
        }
    } else if (lock->conda.size() == 1) {
        entry = &lock->conda.front();
    } else {
        std::string locked;
        for (const auto& s : lock->conda) locked += (locked.empty() ? "" : ", ") + std::to_string(s.step);
        throw UsageError(lock->conda.empty() ? "the lock file " + path.string() + " locks no conda step"
                                             : "the lock file " + path.string() + " locks conda steps " + locked +
                                                   "; choose one with --step N");
    }

    // Without the base image the lock cannot be fully checked here; the recipe's own fields can.
    if (entry->step <= recipe.steps.size()) {
        const auto* step = std::get_if<recipe::CondaStep>(&recipe.steps[entry->step - 1].action);
        if (step == nullptr || step->packages != entry->specs || step->prefix != entry->prefix)
            std::cerr << "warning: the lock file " << path.string() << " is out of date for step " << entry->step
                      << "; run `ocibuild lock " << recipe.file.string() << "`\n";
    }

    auto text = build::explicit_spec(entry->subdir, conda::sort_topologically(entry->packages));
    if (args.output.empty() || args.output == "-") std::cout << text;
    else core::write_file_atomic(args.output, text);
    return 0;
}

}  // namespace

std::vector<Command> add_lock_commands(CLI::App& app) {
    auto lock_args = std::make_shared<LockArgs>();
    auto* lock = app.add_subcommand(
        "lock", "Pin the base image digest and every conda step's packages in RECIPE-STEM.lock beside the recipe");
    lock->add_option("recipe", lock_args->recipe, "Recipe file (TOML)")->required();
    lock->add_option("--update", lock_args->update,
                     "Re-solve only these packages (and what their new versions need); the rest stay as locked");
    lock->add_option("--store", lock_args->store,
                     "Blob store (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
    lock->add_option("--work-dir", lock_args->work_dir, "Repodata and package caches (default: beside the store)");
    lock->add_flag("-q,--quiet", lock_args->quiet, "Print nothing but errors");
    lock_args->registry.add_to(*lock);
    lock_args->conda.add_to(*lock, false);

    auto export_args = std::make_shared<ExportArgs>();
    auto* exp = app.add_subcommand("export", "Write a locked conda step as a file conda or micromamba installs from");
    exp->add_option("recipe", export_args->recipe, "Recipe file (TOML)")->required();
    exp->add_flag("--explicit", export_args->explicit_format,
                  "CEP 23 @EXPLICIT spec: one URL#sha256 per package, dependencies first "
                  "(`conda create --file`, `micromamba create -f`)");
    exp->add_option("--step", export_args->step, "The recipe step to export (needed when several steps are conda)")
        ->check(CLI::PositiveNumber);
    exp->add_option("-o,--output", export_args->output, "Write to this file (default: standard output)");
    exp->add_option("--lock-file", export_args->lock_file, "The lock file (default: beside the recipe)");

    return {{lock, [lock_args] { return run_lock(*lock_args); }},
            {exp, [export_args] { return run_export(*export_args); }}};
}

}  // namespace ocibuild::cli
