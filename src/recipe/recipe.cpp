#include "ocibuild/recipe/recipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "reader.hpp"

namespace ocibuild::recipe {

namespace fs = std::filesystem;

RecipeError::RecipeError(std::vector<Diagnostic> diagnostics)
    : core::Error(core::ErrorCategory::invalid_input, detail::render(diagnostics)),
      diagnostics_(std::move(diagnostics)) {}

std::string to_string(const SourcePos& pos) {
    return pos.file + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
}

std::string_view Step::kind() const {
    switch (action.index()) {
        case 0: return "copy";
        case 1: return "run";
        default: return "conda";
    }
}

Recipe parse_recipe_text(std::string_view text, const fs::path& file, const fs::path& directory) {
    detail::Reader r(text, file.string());
    Recipe recipe;
    recipe.file = file;
    recipe.directory = fs::absolute(directory).lexically_normal();
    if (!recipe.directory.has_filename() && recipe.directory.has_relative_path())
        recipe.directory = recipe.directory.parent_path();

    toml::table root;
    try {
        root = toml::parse(text, std::string_view(file.native()));
    } catch (const toml::parse_error& e) {
        r.error(r.at(e.source().begin), std::string(e.description()));
        throw RecipeError(r.take());
    }

    r.check_keys(root, "the top level", {"image", "base", "step", "config", "conda"});
    if (const auto* n = root.get("image")) detail::parse_image(r, *n, recipe.image);
    if (const auto* n = root.get("base"))
        detail::parse_base(r, *n, recipe.directory, recipe.base);
    else
        r.error(SourcePos{file.string(), 1, 1}, "missing [base] table (use ref = \"scratch\" for an empty base)");
    if (const auto* n = root.get("step")) detail::parse_steps(r, *n, recipe.directory, recipe.steps);
    if (const auto* n = root.get("config")) detail::parse_config(r, *n, recipe.config);
    if (const auto* n = root.get("conda")) detail::parse_conda_section(r, *n, recipe.conda);

    if (r.failed()) throw RecipeError(r.take());
    return recipe;
}

Recipe parse_recipe(const fs::path& file) {
    auto cannot = [&](int err) {
        return core::Error(core::ErrorCategory::not_found,
                           "cannot read recipe " + file.string() + ": " + std::strerror(err));
    };
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw cannot(errno);
    std::string text;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            throw cannot(err);
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return parse_recipe_text(text, file, fs::absolute(file).parent_path());
}

}  // namespace ocibuild::recipe
