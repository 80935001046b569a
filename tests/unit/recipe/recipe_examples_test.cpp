// The recipes shipped in recipes/ stay valid as the schema evolves.
#include <doctest/doctest.h>

#include <variant>

#include "ocibuild/recipe/recipe.hpp"

using namespace ocibuild;

TEST_CASE("the shipped example recipes parse") {
    // Unit tests run from tests/ (meson workdir).
    auto hello = recipe::parse_recipe("../recipes/hello.toml");
    CHECK(hello.base.kind == recipe::BaseSpec::Kind::scratch);

    auto pytorch = recipe::parse_recipe("../recipes/pytorch.toml");
    CHECK(pytorch.base.kind == recipe::BaseSpec::Kind::registry);
    REQUIRE(pytorch.steps.size() == 1);
    const auto& conda = std::get<recipe::CondaStep>(pytorch.steps[0].action);
    CHECK(conda.prefix == "/opt/conda");
    CHECK(conda.channel_priority == "strict");
    CHECK(conda.packages.size() == 8);
}
