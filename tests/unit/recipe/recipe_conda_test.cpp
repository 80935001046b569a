// Conda steps and the [conda] section: match specs checked at parse time, virtual packages,
// channel priority, channel alias and mirrors.
#include "ocibuild/conda/match_spec.hpp"
#include "ocibuild/conda/version.hpp"
#include "recipe_helpers.hpp"

using namespace ocibuild::recipe;
using namespace ocibuild::recipe::test;

TEST_CASE("conda steps: every field, and [conda]") {
    Context c;
    auto r = c.parse(with_base(R"([[step]]
[step.conda]
prefix = "/opt/conda"
channels = ["conda-forge", "./local-channel"]
packages = ["python=3.11", "pytorch 2.4.* *cuda*", "conda-forge::numpy>=1.26,<2"]
channel_priority = "flexible"
virtual_packages = { __cuda = "12.4", __glibc = "", __archspec = "x86_64_v3", __cuda_arch = "8.0" }

[conda]
channel_alias = "https://conda.example.org"
mirrors = { "https://conda.anaconda.org/conda-forge" = ["https://mirror-a.example/cf", "https://mirror-b.example/cf"], "https://repo.example" = "file:///srv/mirror" }
)"));
    REQUIRE(r.steps.size() == 1);
    const auto& conda = std::get<CondaStep>(r.steps[0].action);
    CHECK(conda.prefix == "/opt/conda");
    CHECK(conda.channels == std::vector<std::string>{"conda-forge", "./local-channel"});
    CHECK(conda.packages ==
          std::vector<std::string>{"python=3.11", "pytorch 2.4.* *cuda*", "conda-forge::numpy>=1.26,<2"});
    CHECK(conda.channel_priority == "flexible");
    CHECK(conda.virtual_packages == std::map<std::string, std::string>{
                                        {"__archspec", "x86_64_v3"}, {"__cuda", "12.4"}, {"__cuda_arch", "8.0"},
                                        {"__glibc", ""}});
    CHECK(to_string(conda.packages_pos) == "recipes/x.toml:7:12");
    CHECK(r.conda.channel_alias == "https://conda.example.org");
    CHECK(r.conda.mirrors ==
          std::map<std::string, std::vector<std::string>>{
              {"https://conda.anaconda.org/conda-forge", {"https://mirror-a.example/cf", "https://mirror-b.example/cf"}},
              {"https://repo.example", {"file:///srv/mirror"}}});
}

TEST_CASE("conda steps: defaults") {
    Context c;
    auto r = c.parse(with_base("[[step]]\nconda = { prefix = \"/opt/conda\", packages = [\"python\"] }\n"));
    const auto& conda = std::get<CondaStep>(r.steps[0].action);
    CHECK(conda.channel_priority == "strict");
    CHECK(conda.virtual_packages.empty());
    CHECK(r.conda.channel_alias.empty());
    CHECK(r.conda.mirrors.empty());
}

TEST_CASE("conda steps: a bad package spec points at the offending character") {
    Context c;
    // The caret sits under the character the match spec parser stopped at, inside the string.
    const std::string text = with_base("[[step]]\n[step.conda]\nprefix = \"/opt/conda\"\n"
                                       "packages = [\"python\", \"numpy >=1.2,<\"]\n");
    const std::string got = c.errors(text);
    INFO(got);
    CHECK(got.starts_with("recipes/x.toml:6:"));
    CHECK(got.find("bad package spec \"numpy >=1.2,<\" (item 2 of \"packages\" in [[step]] #1.conda): ") !=
          std::string::npos);
    const auto spec = ocibuild::conda::MatchSpec::parse("numpy >=1.2,<");
    REQUIRE_FALSE(spec);
    // Column of the opening quote of the second item is 23; the value starts one further.
    const int column = 23 + 1 + static_cast<int>(spec.error().offset);
    CHECK(got.starts_with("recipes/x.toml:6:" + std::to_string(column) + ": "));
    CHECK(got.ends_with("\n  packages = [\"python\", \"numpy >=1.2,<\"]\n  " + std::string(column - 1, ' ') + "^"));
}

TEST_CASE("conda steps: carets inside strings account for escapes and non-ASCII") {
    Context c;
    const auto spec = ocibuild::conda::MatchSpec::parse("a[license=\"\xC3\xA9\", version=\"1..2\"]");
    REQUIRE_FALSE(spec);
    REQUIRE(spec.error().offset == 27);  // the second '.' of "1..2"
    // Escapes (\" is 2 columns for 1 byte, \u00e9 6 columns for 2 bytes) and a literal 'é' (1
    // column for 2 bytes) between the string's start and the offending character.
    const std::string escaped = c.errors(
        with_base("[[step]]\nconda = { prefix = \"/p\", packages = [\"a[license=\\\"\\u00e9\\\", version=\\\"1..2\\\"]\"] }\n"));
    const std::string literal = c.errors(
        with_base("[[step]]\nconda = { prefix = \"/p\", packages = ['a[license=\"\xC3\xA9\", version=\"1..2\"]'] }\n"));
    INFO(escaped);
    INFO(literal);
    const int opening = 38;  // the column of the string's opening quote
    CHECK(escaped.starts_with("recipes/x.toml:4:" + std::to_string(opening + 1 + 34) + ": "));
    CHECK(literal.starts_with("recipes/x.toml:4:" + std::to_string(opening + 1 + 26) + ": "));
    CHECK(literal.ends_with("\n  " + std::string(opening + 26, ' ') + "^"));
}

TEST_CASE("conda steps: virtual packages, channel priority and prefix mistakes") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\n[step.conda]\nprefix = \"/\"\npackages = [\"x\"]\n"
                             "channel_priority = \"highest\"\n"
                             "virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = 2.35 }\n")) ==
          "recipes/x.toml:5:10: \"prefix\" in [[step]] #1.conda must be a folder below /, like \"/opt/conda\"\n"
          "  prefix = \"/\"\n"
          "           ^\n"
          "recipes/x.toml:7:20: \"channel_priority\" in [[step]] #1.conda must be \"strict\", \"flexible\" or "
          "\"disabled\", not \"highest\"\n"
          "  channel_priority = \"highest\"\n"
          "                     ^\n"
          "recipes/x.toml:8:74: \"__glibc\" in [[step]] #1.conda.virtual_packages must be a string, not a float\n"
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = 2.35 }\n"
          "                                                                           ^");
    CHECK(c.errors(with_base("[[step]]\n[step.conda]\nprefix = \"/opt/conda\"\npackages = [\"x\"]\n"
                             "virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", "
                             "__archspec = \"x86 64\" }\n")) ==
          "recipes/x.toml:7:22: virtual package \"cuda\" in [[step]] #1.conda.virtual_packages must start with "
          "\"__\"; did you mean \"__cuda\"?\n"
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", __archspec = "
          "\"x86 64\" }\n"
          "                       ^\n"
          "recipes/x.toml:7:35: unknown virtual package \"__cdua\" in [[step]] #1.conda.virtual_packages; did you "
          "mean \"__cuda\"?\n"
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", __archspec = "
          "\"x86 64\" }\n"
          "                                    ^\n"
          "recipes/x.toml:7:50: virtual package \"__unix\" in [[step]] #1.conda.virtual_packages cannot be "
          "overridden: the platform sets it\n"
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", __archspec = "
          "\"x86 64\" }\n"
          "                                                   ^\n"
          "recipes/x.toml:7:78: bad version \"2.3?\" for \"__glibc\" in [[step]] #1.conda.virtual_packages: " +
              ocibuild::conda::Version::parse("2.3?").error().message + "\n" +
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", __archspec = "
          "\"x86 64\" }\n"
          "                                                                               ^\n"
          "recipes/x.toml:7:99: bad microarchitecture \"x86 64\" for \"__archspec\" in [[step]] "
          "#1.conda.virtual_packages (like \"x86_64_v3\" or \"skylake\")\n"
          "  virtual_packages = { cuda = \"12\", __cdua = \"12\", __unix = \"1\", __glibc = \"2.3?\", __archspec = "
          "\"x86 64\" }\n"
          "                                                                                                    ^");
}

TEST_CASE("[conda]: channel alias and mirrors must be URLs") {
    Context c;
    CHECK(c.errors(with_base("[conda]\nchannel_alias = \"conda.example.org\"\nmirrors = { \"conda-forge\" = "
                             "\"https://m.example\", \"https://a.example\" = [\"ftp://x\"], \"https://b.example\" = 3 }\n"
                             "channels = []\n")) ==
          "recipes/x.toml:4:17: \"channel_alias\" in [conda] must be a URL (an http://, https:// or file:/// URL), "
          "not \"conda.example.org\"\n"
          "  channel_alias = \"conda.example.org\"\n"
          "                  ^\n"
          "recipes/x.toml:5:13: mirrored prefix \"conda-forge\" in [conda].mirrors must be a URL (an http://, "
          "https:// or file:/// URL)\n"
          "  mirrors = { \"conda-forge\" = \"https://m.example\", \"https://a.example\" = [\"ftp://x\"], "
          "\"https://b.example\" = 3 }\n"
          "              ^\n"
          "recipes/x.toml:5:73: mirror \"ftp://x\" of \"https://a.example\" in [conda].mirrors must be a URL (an "
          "http://, https:// or file:/// URL)\n"
          "  mirrors = { \"conda-forge\" = \"https://m.example\", \"https://a.example\" = [\"ftp://x\"], "
          "\"https://b.example\" = 3 }\n"
          "                                                                          ^\n"
          "recipes/x.toml:5:107: \"https://b.example\" in [conda].mirrors must be a URL or an array of URLs, not an "
          "integer\n"
          "  mirrors = { \"conda-forge\" = \"https://m.example\", \"https://a.example\" = [\"ftp://x\"], "
          "\"https://b.example\" = 3 }\n"
          "                                                                                                            ^\n"
          "recipes/x.toml:6:1: unknown key \"channels\" in [conda]\n"
          "  channels = []\n"
          "  ^");
}
