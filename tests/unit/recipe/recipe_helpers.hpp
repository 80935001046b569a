#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/recipe/recipe.hpp"

namespace ocibuild::recipe::test {

/// A recipe directory (the build context) with files in it.
struct Context {
    core::TempDir dir;

    [[nodiscard]] const std::filesystem::path& path() const { return dir.path(); }
    [[nodiscard]] std::string abs(std::string_view rel) const { return (dir.path() / rel).string(); }

    void file(const std::filesystem::path& rel, std::string_view content = "x\n") const {
        auto p = dir.path() / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << content;
    }
    void directory(const std::filesystem::path& rel) const { std::filesystem::create_directories(dir.path() / rel); }

    [[nodiscard]] Recipe parse(std::string_view text) const {
        return parse_recipe_text(text, "recipes/x.toml", dir.path());
    }

    /// The whole rendered error for `text`, or "(no error)".
    [[nodiscard]] std::string errors(std::string_view text) const {
        try {
            (void)parse(text);
        } catch (const RecipeError& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            CHECK(e.context().empty());
            return e.what();
        }
        return "(no error)";
    }
};

/// A recipe that is valid apart from what `rest` adds.
inline std::string with_base(std::string_view rest) { return "[base]\nref = \"scratch\"\n" + std::string(rest); }

}  // namespace ocibuild::recipe::test
