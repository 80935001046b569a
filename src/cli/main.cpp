// The ocibuild command. The only place that reads the environment, prints, and picks exit codes:
// 0 ok, 1 failure, 2 usage or recipe error.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/recipe/recipe.hpp"

#ifndef OCIBUILD_VERSION
#define OCIBUILD_VERSION "0.0.0"
#endif

namespace {

constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

// `ocibuild RECIPE ...` is short for `ocibuild build RECIPE ...`.
std::vector<std::string> expand_short_form(int argc, char** argv, const CLI::App& app) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && !args[0].starts_with("-")) {
        bool verb = false;
        for (const auto* sub : app.get_subcommands({})) verb = verb || sub->get_name() == args[0];
        if (!verb) args.insert(args.begin(), "build");
    }
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace ocibuild;
    CLI::App app{"ocibuild: build OCI images from declarative recipes, with no daemon and no root.\n"
                 "`ocibuild RECIPE` is short for `ocibuild build RECIPE`.",
                 "ocibuild"};
    app.set_version_flag("--version", std::string("ocibuild ") + OCIBUILD_VERSION);
    app.require_subcommand(1);

    std::vector<cli::Command> commands{cli::add_build_command(app)};
    for (auto& c : cli::add_image_commands(app)) commands.push_back(std::move(c));
    for (auto& c : cli::add_login_commands(app)) commands.push_back(std::move(c));
    commands.push_back(cli::add_unpack_command(app));
    for (auto& c : cli::add_lock_commands(app)) commands.push_back(std::move(c));
    commands.push_back(cli::add_solve_command(app));

    try {
        auto args = expand_short_form(argc, argv, app);
        std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
        app.parse(args);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return exit_usage;
    }

    try {
        for (auto& c : commands)
            if (*c.app) return c.run();
    } catch (const recipe::RecipeError& e) {
        std::string text = e.what();
        std::cerr << text << (text.ends_with("\n") ? "" : "\n");
        return exit_usage;
    } catch (const cli::UsageError& e) {
        std::cerr << "error: " << e.what() << '\n';
        return exit_usage;
    } catch (const core::Error& e) {
        std::cerr << "error: " << e.what() << '\n';
        return exit_failure;
    } catch (const std::exception& e) {
        std::cerr << "error: internal: " << e.what() << '\n';
        return exit_failure;
    }
    return exit_usage;
}
