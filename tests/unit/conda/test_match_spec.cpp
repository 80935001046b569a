#include <doctest/doctest.h>

#include <string>
#include <unordered_set>

#include "ocibuild/conda/match_spec.hpp"

using ocibuild::conda::MatchSpec;
using ocibuild::conda::StringMatcher;
using ocibuild::conda::Version;

TEST_CASE("MatchSpec parses every form and prints canonically") {
    struct Row { std::string in, out, channel, subdir, name, version, build; };
    const Row rows[] = {
        {"numpy", "numpy", "", "", "numpy", "*", "*"},
        {"  numpy  ", "numpy", "", "", "numpy", "*", "*"},
        {"conda-forge::numpy", "conda-forge::numpy", "conda-forge", "", "numpy", "*", "*"},
        {"conda-forge/linux-64::numpy", "conda-forge/linux-64::numpy", "conda-forge", "linux-64", "numpy", "*", "*"},
        {"*/linux-64::foo", "*/linux-64::foo", "", "linux-64", "foo", "*", "*"},
        {"conda-forge/label/dev::foo", "conda-forge/label/dev::foo", "conda-forge/label/dev", "", "foo", "*", "*"},
        {"https://conda.anaconda.org/conda-forge/noarch::tzdata", "https://conda.anaconda.org/conda-forge/noarch::tzdata",
         "https://conda.anaconda.org/conda-forge", "noarch", "tzdata", "*", "*"},
        {"numpy=1.21", "numpy 1.21.*", "", "", "numpy", "1.21.*", "*"},
        {"numpy =1.21", "numpy 1.21.*", "", "", "numpy", "1.21.*", "*"},
        {"numpy=1.21=py39*", "numpy ==1.21 py39*", "", "", "numpy", "==1.21", "py39*"},
        {"numpy 1.21 py39_0", "numpy ==1.21 py39_0", "", "", "numpy", "==1.21", "py39_0"},
        {"numpy ==1.21 py39_0", "numpy ==1.21 py39_0", "", "", "numpy", "==1.21", "py39_0"},
        {"numpy =1.21 py39_0", "numpy 1.21.* py39_0", "", "", "numpy", "1.21.*", "py39_0"},
        {"numpy 1.21", "numpy ==1.21", "", "", "numpy", "==1.21", "*"},
        {"numpy>=1.21", "numpy >=1.21", "", "", "numpy", ">=1.21", "*"},
        {"numpy==1.2", "numpy ==1.2", "", "", "numpy", "==1.2", "*"},
        {"numpy!=1.2", "numpy !=1.2", "", "", "numpy", "!=1.2", "*"},
        {"numpy~=1.2", "numpy ~=1.2", "", "", "numpy", "~=1.2", "*"},
        {"python >=3.12,<3.13.0a0", "python >=3.12,<3.13.0a0", "", "", "python", ">=3.12,<3.13.0a0", "*"},
        {"python >= 3.12, < 3.13", "python >=3.12,<3.13", "", "", "python", ">=3.12,<3.13", "*"},
        {"python_abi 3.12.* *_cp312", "python_abi 3.12.* *_cp312", "", "", "python_abi", "3.12.*", "*_cp312"},
        {"__glibc >=2.17,<3.0.a0", "__glibc >=2.17,<3.0.a0", "", "", "__glibc", ">=2.17,<3.0.a0", "*"},
        {"libblas * *mkl", "libblas * *mkl", "", "", "libblas", "*", "*mkl"},
        {"numpy 1.2|1.4", "numpy ==1.2|==1.4", "", "", "numpy", "==1.2|==1.4", "*"},
        {"numpy (>=1,<2)|>=3", "numpy >=1,<2|>=3", "", "", "numpy", ">=1,<2|>=3", "*"},
        {"conda-forge::numpy=1.2", "conda-forge::numpy 1.2.*", "conda-forge", "", "numpy", "1.2.*", "*"},
        {"__archspec[version='1.*', build='^(x86_64_v3|skylake)$']", "__archspec 1.* ^(x86_64_v3|skylake)$", "", "",
         "__archspec", "1.*", "^(x86_64_v3|skylake)$"},
        {"numpy 1.2[version='>=2']", "numpy >=2", "", "", "numpy", ">=2", "*"},
        {"numpy 1.2 py_0[build=\"py_1\"]", "numpy ==1.2 py_1", "", "", "numpy", "==1.2", "py_1"},
        {"pytorch[channel=pytorch, subdir=linux-64]", "pytorch/linux-64::pytorch", "pytorch", "linux-64", "pytorch", "*", "*"},
        {"conda-forge::numpy[channel=defaults]", "defaults::numpy", "defaults", "", "numpy", "*", "*"},
        {"numpy[name=numpy]", "numpy", "", "", "numpy", "*", "*"},
        {"py*", "py*", "", "", "py*", "*", "*"},
    };
    for (const auto& r : rows) {
        INFO(r.in);
        auto m = MatchSpec::parse(r.in);
        REQUIRE_MESSAGE(m, (m ? "" : m.error().message));
        CHECK(m->to_string() == r.out);
        CHECK(m->channel() == r.channel);
        CHECK(m->subdir() == r.subdir);
        CHECK(m->name().to_string() == r.name);
        CHECK(m->version().to_string() == r.version);
        CHECK(m->build().to_string() == r.build);
        auto again = MatchSpec::parse(m->to_string());
        REQUIRE(again);
        CHECK(*again == *m);
        CHECK(std::hash<MatchSpec>()(*again) == std::hash<MatchSpec>()(*m));
    }
}

TEST_CASE("MatchSpec bracket keys") {
    auto m = MatchSpec::parse(
        "numpy[version='>=1.2,<2', build_number='>=3', md5=abc, sha256=def, license=\"BSD 3-Clause\", "
        "track_features='mkl debug', fn='numpy-1.2-0.conda', url='https://x/y', features=mkl, license_family=BSD]");
    REQUIRE_MESSAGE(m, (m ? "" : m.error().message));
    CHECK(m->version().to_string() == ">=1.2,<2");
    REQUIRE(m->build_number());
    CHECK(m->build_number()->to_string() == ">=3");
    CHECK(m->extra().at("md5") == "abc");
    CHECK(m->extra().at("sha256") == "def");
    CHECK(m->extra().at("license") == "BSD 3-Clause");
    CHECK(m->extra().at("track_features") == "mkl debug");
    CHECK(m->extra().at("fn") == "numpy-1.2-0.conda");
    CHECK(m->to_string() ==
          "numpy >=1.2,<2[build_number='>=3',features='mkl',fn='numpy-1.2-0.conda',license='BSD 3-Clause',"
          "license_family='BSD',md5='abc',sha256='def',track_features='mkl debug',url='https://x/y']");
    auto again = MatchSpec::parse(m->to_string());
    REQUIRE(again);
    CHECK(again->to_string() == m->to_string());
    std::unordered_set<MatchSpec> set{*m, *again};
    CHECK(set.size() == 1);
}

TEST_CASE("MatchSpec::matches") {
    struct Row { std::string spec, name, version, build; unsigned long long number; bool expected; };
    const Row rows[] = {
        {"numpy", "numpy", "1.0", "py_0", 0, true},
        {"numpy", "scipy", "1.0", "py_0", 0, false},
        {"NumPy", "numpy", "1.0", "py_0", 0, true},
        {"py*", "python", "3.12", "h0", 0, true},
        {"py*", "numpy", "3.12", "h0", 0, false},
        {"numpy 1.21 py39_0", "numpy", "1.21.0", "py39_0", 0, true},
        {"numpy 1.21 py39_0", "numpy", "1.21.0", "py39_1", 0, false},
        {"numpy 1.21 py39_0", "numpy", "1.21.1", "py39_0", 0, false},
        {"numpy=1.21=py39*", "numpy", "1.21", "PY39_h123", 0, true},
        {"numpy=1.21=py39*", "numpy", "1.21.1", "py39_h123", 0, false},
        {"numpy=1.2", "numpy", "1.2.5", "x", 0, true},
        {"numpy=1.2", "numpy", "1.20", "x", 0, false},
        {"libblas * *mkl", "libblas", "3.9", "20_linux64_mkl", 0, true},
        {"libblas * *mkl", "libblas", "3.9", "20_linux64_openblas", 0, false},
        {"libblas * *mkl*", "libblas", "3.9", "mkl", 0, true},
        {"foo * a*b*c", "foo", "1", "axxbyyc", 0, true},
        {"foo * a*b*c", "foo", "1", "axxbyycd", 0, false},
        {"__archspec[version='1.*', build='^(x86_64_v3|skylake)$']", "__archspec", "1", "x86_64_v3", 0, true},
        {"__archspec[version='1.*', build='^(x86_64_v3|skylake)$']", "__archspec", "1", "x86_64_v2", 0, false},
        {"__archspec[version='1.*', build='^(x86_64_v3|skylake)$']", "__archspec", "2", "skylake", 0, false},
        {"foo[build_number='>=3']", "foo", "1", "b", 3, true},
        {"foo[build_number='>=3']", "foo", "1", "b", 2, false},
        {"foo[build_number=3]", "foo", "1", "b", 3, true},
        {"foo[build_number=3]", "foo", "1", "b", 4, false},
        {"foo[build_number='!=3']", "foo", "1", "b", 4, true},
        {"foo[build_number='<3']", "foo", "1", "b", 3, false},
        {"python >=3.12,<3.13.0a0", "python", "3.13.0rc1", "h0", 0, false},
        {"python >=3.12,<3.13.0a0", "python", "3.12.7", "h0", 0, true},
        {"python_abi 3.12.* *_cp312", "python_abi", "3.12", "5_cp312", 0, true},
        {"python_abi 3.12.* *_cp312", "python_abi", "3.12", "5_cp313", 0, false},
    };
    for (const auto& r : rows) {
        INFO(r.spec, " / ", r.name, " ", r.version, " ", r.build, " ", r.number);
        auto m = MatchSpec::parse(r.spec);
        REQUIRE(m);
        auto v = Version::parse(r.version);
        REQUIRE(v);
        CHECK(m->matches(r.name, *v, r.build, r.number) == r.expected);
    }
}

TEST_CASE("MatchSpec errors point at the offending character") {
    struct Row { std::string text, message; std::size_t offset; };
    const Row rows[] = {
        {"", "empty match spec", 0},
        {"   ", "empty match spec", 0},
        {"numpy=1.2 py39", "cannot mix '=' and ' ' separators", 9},
        {"numpy 1.2=py39", "cannot mix '=' and ' ' separators", 9},
        {"numpy 1.2 py39 extra", "unexpected text after the build string", 15},
        {"numpy >=1.2,<2#", "invalid character '#' in version", 14},
        {"numpy=1.2=", "empty build string", 10},
        {"numpy=", "missing version after '='", 6},
        {"numpy >=", "missing version after '>='", 8},
        {"numpy=>1", "invalid operator '=>'", 6},
        {"numpy[version=1.2", "unterminated '['", 5},
        {"numpy[foo=1]", "unknown bracket key 'foo'", 6},
        {"numpy[=1]", "expected a key, got '='", 6},
        {"numpy[version 1]", "expected '=' after 'version'", 14},
        {"numpy[version='1.2]", "unterminated quote", 14},
        {"numpy[version='>=1.2#']", "invalid character '#' in version", 20},
        {"numpy[version='1.2' build=x]", "expected ',' or ']', got 'b'", 20},
        {"numpy[md5=a,md5=b]", "duplicate bracket key 'md5'", 12},
        {"numpy[build_number=x]", "build number must be a non-negative integer", 19},
        {"numpy[build_number='>=']", "missing build number", 22},
        {"numpy[md5=a] x", "unexpected text after ']'", 12},
        {"numpy[name=scipy]", "bracket name 'scipy' conflicts with 'numpy'", 11},
        {"conda-forge:numpy", "expected '::' between channel and name", 11},
        {"num$py", "invalid character '$' in package name", 3},
        {">=1.2", "missing package name", 0},
        {"conda-forge::", "missing package name", 13},
        {"numpy 1.2 ^py(39$", "invalid regex", 10},
        {"numpy 1.2 ^py39", "regex must start with '^' and end with '$'", 15},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        auto m = MatchSpec::parse(r.text);
        REQUIRE(!m);
        CHECK(m.error().message == r.message);
        CHECK(m.error().offset == r.offset);
    }
}

TEST_CASE("StringMatcher kinds") {
    CHECK(StringMatcher().is_any());
    CHECK(StringMatcher::parse("py39_0")->is_exact());
    CHECK(StringMatcher::parse("*")->matches(""));
    CHECK(StringMatcher::parse("^CUDA.*$")->matches("cuda12"));
    CHECK(!StringMatcher::parse("cuda*")->matches("xcuda"));
}
