#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/core/error.hpp"

using namespace ocibuild::conda;

namespace {

struct Pkg {
    std::string name;
    std::string version;
    std::string build = "0";
    std::uint64_t build_number = 0;
    std::vector<std::string> depends = {};
    std::vector<std::string> constrains = {};
    std::string track_features = {};
    std::string subdir = "linux-64";
};

std::string repodata_json(const std::string& subdir, const std::vector<Pkg>& pkgs) {
    nlohmann::json j;
    j["info"]["subdir"] = subdir;
    j["packages"] = nlohmann::json::object();
    j["packages.conda"] = nlohmann::json::object();
    for (const Pkg& p : pkgs) {
        nlohmann::json r;
        r["name"] = p.name;
        r["version"] = p.version;
        r["build"] = p.build;
        r["build_number"] = p.build_number;
        r["depends"] = p.depends;
        if (!p.constrains.empty()) r["constrains"] = p.constrains;
        if (!p.track_features.empty()) r["track_features"] = p.track_features;
        r["subdir"] = subdir;
        r["sha256"] = std::string(64, 'a');
        r["md5"] = std::string(32, 'b');
        r["size"] = 100;
        j["packages.conda"][p.name + "-" + p.version + "-" + p.build + ".conda"] = r;
    }
    return j.dump();
}

/// Channels built from inline package lists; linux-64 and noarch per channel.
class Channels {
public:
    void add(const std::string& name, const std::vector<Pkg>& pkgs) {
        std::vector<Pkg> arch;
        std::vector<Pkg> noarch;
        for (const Pkg& p : pkgs) (p.subdir == "noarch" ? noarch : arch).push_back(p);
        const std::string url = "https://conda.example/" + name;
        names_.push_back(name);
        data_.push_back({RepoData::parse(repodata_json("linux-64", arch), url + "/linux-64/", url, name + "/linux-64"),
                         RepoData::parse(repodata_json("noarch", noarch), url + "/noarch/", url, name + "/noarch")});
    }

    [[nodiscard]] SolveRequest request(std::vector<std::string> specs,
                                       ChannelPriority priority = ChannelPriority::strict) const {
        SolveRequest r;
        r.specs = std::move(specs);
        r.priority = priority;
        r.channel_names = names_;
        for (const auto& subdirs : data_) {
            r.channels.emplace_back();
            for (const RepoData& d : subdirs) r.channels.back().push_back(&d);
        }
        r.virtual_packages.packages = {{"__archspec", "1", "x86_64"}, {"__glibc", "2.35", "0"}, {"__linux", "4.18", "0"},
                                       {"__unix", "0", "0"}};
        r.virtual_packages.absent_reason["__cuda"] = "the base image sets no CUDA_VERSION";
        return r;
    }

private:
    std::vector<std::string> names_;
    std::vector<std::vector<RepoData>> data_;
};

/// name → "version build" of each package in the answer.
std::map<std::string, std::string> picked(const std::vector<PackageRecord>& records) {
    std::map<std::string, std::string> out;
    for (const auto& r : records) out[r.name] = r.version + " " + r.build;
    return out;
}

std::string version_of(const std::vector<PackageRecord>& records, const std::string& name) {
    for (const auto& r : records) {
        if (r.name == name) return r.version;
    }
    return "(absent)";
}

std::string solve_error(const SolveRequest& request) {
    try {
        auto answer = solve(request);
        return "(solved: " + std::to_string(answer.size()) + " packages)";
    } catch (const SolveError& e) {
        return e.what();
    }
}

void set_cuda(SolveRequest& r, const std::string& version) {
    r.virtual_packages.packages.insert(r.virtual_packages.packages.begin() + 1, {"__cuda", version, "0"});
    r.virtual_packages.origin["__cuda"] = "CUDA_VERSION of the base image";
    r.virtual_packages.absent_reason.erase("__cuda");
}

}  // namespace

TEST_CASE("solver: the highest version in conda's order wins") {
    struct Row {
        std::vector<std::string> versions;
        std::string spec;
        std::string expected;
    };
    const Row rows[] = {
        {{"1.1.0rc1", "1.1"}, "pkg", "1.1"},
        {{"1.1", "1.1.0rc1"}, "pkg", "1.1"},
        {{"1.1", "1.1.post1"}, "pkg", "1.1.post1"},
        {{"1.1.dev1", "1.0"}, "pkg", "1.1.dev1"},
        {{"1.1.dev1", "1.1a1", "1.1.0rc1"}, "pkg", "1.1.0rc1"},
        {{"1.1dev1", "1.1a1"}, "pkg", "1.1a1"},
        {{"2.0", "1!0.1"}, "pkg", "1!0.1"},
        {{"1.0+local.1", "1.0+local.2", "0.9"}, "pkg", "1.0+local.2"},
        {{"1.9", "1.10"}, "pkg", "1.10"},
        {{"1.2.9", "1.20"}, "pkg", "1.20"},
        {{"1.2.9", "1.20"}, "pkg 1.2.*", "1.2.9"},
        {{"1.2.9", "1.20"}, "pkg=1.2", "1.2.9"},
        {{"1.2.9", "1.20", "1.3"}, "pkg >=1.2,<1.3", "1.2.9"},
        {{"1.0.1_", "1.0.1a"}, "pkg", "1.0.1a"},
        {{"3.12.0", "3.13.0rc1"}, "pkg <3.13.0a0", "3.12.0"},
        {{"1.0", "2.0", "3.0"}, "pkg !=3.0", "2.0"},
        {{"1.0", "2.0", "3.0"}, "pkg 1.0|2.0", "2.0"},
    };
    for (const Row& row : rows) {
        CAPTURE(row.spec);
        CAPTURE(row.expected);
        std::vector<Pkg> pkgs;
        for (const auto& v : row.versions) pkgs.push_back({"pkg", v});
        Channels ch;
        ch.add("main", pkgs);
        CHECK(version_of(solve(ch.request({row.spec})), "pkg") == row.expected);
    }
}

TEST_CASE("solver: build number breaks ties between builds of one version") {
    Channels ch;
    ch.add("main", {{"pkg", "1.0", "h1_0", 0}, {"pkg", "1.0", "h1_2", 2}, {"pkg", "1.0", "h1_1", 1}});
    CHECK(picked(solve(ch.request({"pkg"})))["pkg"] == "1.0 h1_2");
    CHECK(picked(solve(ch.request({"pkg[build_number=1]"})))["pkg"] == "1.0 h1_1");
    CHECK(picked(solve(ch.request({"pkg * h1_0"})))["pkg"] == "1.0 h1_0");
}

TEST_CASE("solver: track_features rank below a lower version, but stay allowed") {
    Channels ch;
    ch.add("main", {{"pkg", "2.0", "special_0", 5, {}, {}, "special"}, {"pkg", "1.0", "0"}});
    CHECK(picked(solve(ch.request({"pkg"})))["pkg"] == "1.0 0");
    CHECK(picked(solve(ch.request({"pkg >=2"})))["pkg"] == "2.0 special_0");
    // Fewer track_features first: one feature beats two.
    Channels two;
    two.add("main", {{"pkg", "3.0", "ab", 0, {}, {}, "a b"}, {"pkg", "2.0", "a", 0, {}, {}, "a"}});
    CHECK(picked(solve(two.request({"pkg"})))["pkg"] == "2.0 a");
}

TEST_CASE("solver: dependencies follow the chosen versions") {
    Channels ch;
    ch.add("main", {
                       {"python", "3.11.9", "h_0"},
                       {"python", "3.12.4", "h_0"},
                       {"numpy", "1.26.4", "py311_0", 0, {"python >=3.11,<3.12.0a0", "libblas >=3"}},
                       {"numpy", "1.26.4", "py312_0", 0, {"python >=3.12,<3.13.0a0", "libblas >=3"}},
                       {"libblas", "3.9.0", "openblas", 0},
                       {"libblas", "2.0", "old", 0},
                   });
    auto answer = picked(solve(ch.request({"numpy"})));
    CHECK(answer == std::map<std::string, std::string>{
                        {"libblas", "3.9.0 openblas"}, {"numpy", "1.26.4 py312_0"}, {"python", "3.12.4 h_0"}});
    auto pinned = picked(solve(ch.request({"numpy", "python 3.11.*"})));
    CHECK(pinned["numpy"] == "1.26.4 py311_0");
    CHECK(pinned["python"] == "3.11.9 h_0");
}

TEST_CASE("solver: strict priority keeps a name in its highest-priority channel; flexible falls back") {
    Channels ch;
    ch.add("high", {{"foo", "1.0", "0"}, {"other", "1.0", "0"}});
    ch.add("low", {{"foo", "2.0", "0"}, {"bar", "1.0", "0", 0, {"foo >=2"}}});

    CHECK(version_of(solve(ch.request({"foo"})), "foo") == "1.0");
    CHECK(version_of(solve(ch.request({"foo"}, ChannelPriority::flexible)), "foo") == "1.0");
    CHECK(version_of(solve(ch.request({"foo"}, ChannelPriority::disabled)), "foo") == "2.0");

    CHECK(version_of(solve(ch.request({"foo >=2"}, ChannelPriority::flexible)), "foo") == "2.0");
    CHECK(version_of(solve(ch.request({"bar"}, ChannelPriority::flexible)), "foo") == "2.0");
    const std::string strict_error = solve_error(ch.request({"foo >=2"}));
    CHECK(strict_error.find("nothing matches 'foo >=2'") != std::string::npos);
    CHECK(strict_error.find("low has foo 2.0, but strict channel priority takes foo from high only") !=
          std::string::npos);
    const std::string strict_dep_error = solve_error(ch.request({"bar"}));
    CHECK(strict_dep_error.find("bar 1.0 needs foo >=2, which no channel provides") != std::string::npos);

    // A spec naming the channel takes the name from that channel.
    CHECK(version_of(solve(ch.request({"low::foo"})), "foo") == "2.0");
    CHECK(picked(solve(ch.request({"low::foo"}))).count("other") == 0);
}

TEST_CASE("solver: constrains are honoured without pulling the package in") {
    Channels ch;
    ch.add("main", {
                       {"numpy", "2.1.0", "0"},
                       {"numpy", "1.26.4", "0"},
                       {"scipy", "1.10", "0", 0, {}, {"numpy <2"}},
                   });
    CHECK(version_of(solve(ch.request({"numpy"})), "numpy") == "2.1.0");
    CHECK(version_of(solve(ch.request({"numpy", "scipy"})), "numpy") == "1.26.4");
    CHECK(version_of(solve(ch.request({"scipy"})), "numpy") == "(absent)");
    const std::string error = solve_error(ch.request({"numpy >=2", "scipy"}));
    CHECK(error.find("'numpy >=2' and 'scipy'") != std::string::npos);
    CHECK(error.find("scipy 1.10 allows only numpy <2") != std::string::npos);
}

TEST_CASE("solver: CUDA builds only when the target provides __cuda") {
    SUBCASE("cpu build ranked lower by build number") {
        Channels ch;
        ch.add("main", {
                           {"pytorch", "2.4.0", "cuda_1", 1, {"__cuda", "cuda-version >=12,<13"}},
                           {"pytorch", "2.4.0", "cpu_0", 0, {}},
                           {"cuda-version", "12.4", "0", 0, {}, {"__cuda >=12"}},
                           {"cuda-version", "11.8", "0", 0, {}, {"__cuda >=11"}},
                       });
        CHECK(picked(solve(ch.request({"pytorch"})))["pytorch"] == "2.4.0 cpu_0");
        auto with_cuda = ch.request({"pytorch"});
        set_cuda(with_cuda, "12.4");
        auto answer = solve(with_cuda);
        CHECK(picked(answer)["pytorch"] == "2.4.0 cuda_1");
        CHECK(picked(answer)["cuda-version"] == "12.4 0");
        for (const auto& r : answer) CHECK_FALSE(r.name.starts_with("__"));
        // An old driver: the cuda-version constrain rules the CUDA 12 build out.
        auto old_driver = ch.request({"pytorch"});
        set_cuda(old_driver, "11.8");
        CHECK(picked(solve(old_driver))["pytorch"] == "2.4.0 cpu_0");
    }
    SUBCASE("cpu build ranked lower by track_features") {
        Channels ch;
        ch.add("main", {
                           {"pytorch", "2.4.0", "cuda_0", 0, {"__cuda >=12"}},
                           {"pytorch", "2.4.0", "cpu_0", 0, {}, {}, "pytorch-cpu"},
                       });
        CHECK(picked(solve(ch.request({"pytorch"})))["pytorch"] == "2.4.0 cpu_0");
        auto with_cuda = ch.request({"pytorch"});
        set_cuda(with_cuda, "12.4");
        CHECK(picked(solve(with_cuda))["pytorch"] == "2.4.0 cuda_0");
    }
}

TEST_CASE("solver: unsatisfiable requests explain themselves") {
    Channels ch;
    ch.add("conda-forge", {
                              {"pytorch", "2.4.0", "cuda_0", 0, {"__cuda"}},
                              {"torchnew", "2.5.0", "cuda_0", 0, {"__cuda >=12"}},
                              {"python", "3.11.9", "0"},
                              {"python", "3.12.4", "0"},
                              {"foo", "1.0", "0", 0, {"python >=3.12"}},
                              {"needsbar", "1.0", "0", 0, {"bar >=2"}},
                              {"bar", "1.0", "0"},
                              {"broken", "1.0", "0", 0, {"bar >=>2"}},
                          });
    SUBCASE("virtual package absent") {
        CHECK(solve_error(ch.request({"pytorch"})) ==
              "cannot install 'pytorch':\n"
              "  pytorch 2.4.0 (build cuda_0) needs __cuda, but the target provides no __cuda: the base image sets "
              "no CUDA_VERSION");
    }
    SUBCASE("virtual package too old") {
        auto r = ch.request({"torchnew"});
        set_cuda(r, "11.8");
        CHECK(solve_error(r) ==
              "cannot install 'torchnew':\n"
              "  torchnew 2.5.0 (build cuda_0) needs __cuda >=12, but the target provides __cuda 11.8 (CUDA_VERSION "
              "of the base image)");
    }
    SUBCASE("two user specs in conflict") {
        const std::string error = solve_error(ch.request({"python 3.11.*", "foo"}));
        CHECK(error.find("cannot install 'python 3.11.*' and 'foo' together:") != std::string::npos);
        CHECK(error.find("\n  foo 1.0 needs python >=3.12") != std::string::npos);
    }
    SUBCASE("a dependency no channel provides") {
        CHECK(solve_error(ch.request({"needsbar"})) ==
              "cannot install 'needsbar':\n"
              "  needsbar 1.0 needs bar >=2, which no channel provides (bar has 1.0)");
    }
    SUBCASE("a dependency that does not parse") {
        CHECK(solve_error(ch.request({"broken"})).find("broken 1.0 needs 'bar >=>2', which does not parse") !=
              std::string::npos);
    }
    SUBCASE("no version matches the user's spec") {
        CHECK(solve_error(ch.request({"python >=4"})) ==
              "cannot install 'python >=4':\n  nothing matches 'python >=4' (python has 3.12.4, 3.11.9)");
    }
    SUBCASE("unknown package names, with suggestions") {
        CHECK(solve_error(ch.request({"pytorchh"})) ==
              "no package named 'pytorchh' in conda-forge (linux-64, noarch); did you mean 'pytorch'?");
        CHECK(solve_error(ch.request({"zzzzzz", "python"})) ==
              "no package named 'zzzzzz' in conda-forge (linux-64, noarch)");
    }
    SUBCASE("a spec that does not parse") {
        try {
            (void)solve(ch.request({"python >=>3"}));
            FAIL("expected an error");
        } catch (const SolveError&) {
            FAIL("a bad spec is not a solve error");
        } catch (const ocibuild::core::Error& e) {
            CHECK(e.category() == ocibuild::core::ErrorCategory::invalid_input);
            CHECK(std::string(e.what()).find("spec 'python >=>3'") != std::string::npos);
        }
    }
}

TEST_CASE("solver: answers are deterministic and sorted by name") {
    Channels ch;
    std::vector<Pkg> pkgs;
    for (int i = 0; i < 30; ++i) {
        const std::string n = "lib" + std::to_string(i);
        pkgs.push_back({n, "1.0", "a", 0, i ? std::vector<std::string>{"lib" + std::to_string(i - 1)} : std::vector<std::string>{}});
        pkgs.push_back({n, "1.0", "b", 0, {}});  // same version and build number: a tie
    }
    ch.add("main", pkgs);
    auto first = solve(ch.request({"lib29"}));
    REQUIRE_FALSE(first.empty());
    for (int i = 0; i < 5; ++i) CHECK(solve(ch.request({"lib29"})) == first);
    for (std::size_t i = 1; i < first.size(); ++i) CHECK(first[i - 1].name < first[i].name);
    auto chain = solve(ch.request({"lib29 * a", "lib0"}));
    CHECK(chain.size() == 30);
    for (std::size_t i = 1; i < chain.size(); ++i) CHECK(chain[i - 1].name < chain[i].name);
}

TEST_CASE("solver: preferred records are kept while still allowed") {
    Channels ch;
    ch.add("main", {{"numpy", "2.1.0", "0"}, {"numpy", "1.26.4", "0"}, {"pandas", "2.2", "0", 0, {"numpy >=1.22"}}});
    auto request = ch.request({"pandas"});
    PackageRecord locked;
    locked.name = "numpy";
    locked.version = "1.26.4";
    locked.build = "0";
    locked.subdir = "linux-64";
    locked.channel = "https://conda.example/main";
    request.preferred = {locked};
    CHECK(version_of(solve(request), "numpy") == "1.26.4");
    request.specs.push_back("numpy >=2");
    CHECK(version_of(solve(request), "numpy") == "2.1.0");
}

TEST_CASE("solver: noarch records and subdir specs") {
    Channels ch;
    ch.add("main", {{"tzdata", "2024a", "0", 0, {}, {}, {}, "noarch"}, {"tool", "1.0", "0", 0, {"tzdata"}}});
    auto answer = solve(ch.request({"tool"}));
    REQUIRE(answer.size() == 2);
    CHECK(answer[1].name == "tzdata");
    CHECK(answer[1].subdir == "noarch");
    CHECK(solve(ch.request({"*/noarch::tzdata"})).size() == 1);
    CHECK(solve_error(ch.request({"*/linux-64::tzdata"})).find("nothing matches '*/linux-64::tzdata'") !=
          std::string::npos);
}

TEST_CASE("sort_topologically: dependencies first, ties by name, cycles broken deterministically") {
    auto rec = [](std::string name, std::vector<std::string> depends) {
        PackageRecord r;
        r.name = std::move(name);
        r.version = "1";
        r.depends = std::move(depends);
        return r;
    };
    auto names = [](const std::vector<PackageRecord>& records) {
        std::vector<std::string> out;
        for (const auto& r : records) out.push_back(r.name);
        return out;
    };
    CHECK(names(sort_topologically({rec("a", {"b >=1"}), rec("d", {}), rec("b", {"c"}), rec("c", {"python"})})) ==
          std::vector<std::string>{"c", "b", "a", "d"});
    CHECK(names(sort_topologically({rec("y", {"x"}), rec("x", {"y"}), rec("z", {"x"})})) ==
          std::vector<std::string>{"x", "y", "z"});
    CHECK(names(sort_topologically({rec("python", {"libzlib"}), rec("pip", {"python", "setuptools"}),
                                    rec("setuptools", {"python"}), rec("libzlib", {})})) ==
          std::vector<std::string>{"libzlib", "python", "setuptools", "pip"});
    CHECK(sort_topologically({}).empty());
}


TEST_CASE("solver: one package per name") {
    Channels ch;
    ch.add("main", {
                       {"pkg", "1.0", "0"},
                       {"pkg", "2.0", "0"},
                       {"pkg", "3.0", "0"},
                       {"old", "1.0", "0", 0, {"pkg 1.0"}},
                       {"new", "1.0", "0", 0, {"pkg >=2"}},
                   });
    const std::string both = solve_error(ch.request({"pkg 1.0", "pkg 3.0"}));
    CHECK(both.find("cannot install 'pkg 1.0' and 'pkg 3.0' together") != std::string::npos);
    const std::string deps = solve_error(ch.request({"old", "new"}));
    CHECK(deps.find("cannot install 'old' and 'new' together:") != std::string::npos);
    CHECK(deps.find("new 1.0 needs pkg >=2") != std::string::npos);
    CHECK(deps.find("old 1.0 needs pkg 1.0") != std::string::npos);
    for (const auto& r : solve(ch.request({"old", "pkg"}))) CHECK(r.name != "pkg\x1fs0");
    CHECK(picked(solve(ch.request({"old", "pkg"}))) ==
          std::map<std::string, std::string>{{"old", "1.0 0"}, {"pkg", "1.0 0"}});
    CHECK(picked(solve(ch.request({"new", "pkg <3"})))["pkg"] == "2.0 0");
}

TEST_CASE("solver: specs on virtual packages and glob names") {
    Channels ch;
    ch.add("main", {{"py-a", "1.0", "0"}, {"py-b", "2.0", "0"}, {"other", "1.0", "0"}});
    CHECK(solve(ch.request({"__glibc >=2.17"})).empty());
    CHECK(solve_error(ch.request({"__cuda >=12"})) ==
          "cannot install '__cuda >=12':\n  nothing matches '__cuda >=12': the target provides no __cuda (the base "
          "image sets no CUDA_VERSION)");
    CHECK(solve_error(ch.request({"__glibc >=2.40"})) ==
          "cannot install '__glibc >=2.40':\n  nothing matches '__glibc >=2.40': the target provides __glibc 2.35");
    auto answer = picked(solve(ch.request({"py-*"})));
    CHECK(answer.size() == 1);
    CHECK(answer.count("other") == 0);
}

TEST_CASE("solver: a conflict through dependencies names the chain and both specs") {
    Channels ch;
    ch.add("main", {
                       {"a", "1.0", "0", 0, {"b >=2"}},
                       {"a", "0.9", "0", 0, {"b >=2", "d"}},
                       {"b", "2.0", "0", 0, {"c <1"}},
                       {"b", "2.1", "0", 0, {"c <1"}},
                       {"b", "1.0", "0"},
                       {"c", "0.5", "0"},
                       {"c", "1.5", "0"},
                       {"torch", "2.4", "cuda_0", 1, {"__cuda >=12"}},
                       {"torch", "2.4", "cuda_1", 1, {"__cuda >=12"}},
                   });
    CHECK(solve_error(ch.request({"a", "c >=1"})) ==
          "cannot install 'a' and 'c >=1' together:\n"
          "  a 0.9 needs d, which no channel provides\n"
          "  a 1.0 needs b >=2\n"
          "  b 2.1, 2.0 need c <1");
    auto r = ch.request({"torch"});
    set_cuda(r, "11.2");
    CHECK(solve_error(r) ==
          "cannot install 'torch':\n"
          "  torch 2.4 (builds cuda_0, cuda_1) need __cuda >=12, but the target provides __cuda 11.2 (CUDA_VERSION of "
          "the base image)");
}
