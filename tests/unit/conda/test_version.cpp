#include <doctest/doctest.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "ocibuild/conda/version.hpp"

using ocibuild::conda::Version;
using ocibuild::conda::VersionSpec;

namespace {
Version V(const std::string& s) {
    auto v = Version::parse(s);
    REQUIRE_MESSAGE(v, s);
    return *v;
}
}  // namespace

TEST_CASE("VersionOrder: a sorted list stays sorted (conda test_version.py)") {
    // "==" marks a version equal to the one before it; otherwise each is strictly greater.
    const std::vector<std::pair<bool, std::string>> sorted = {
        {false, "0.4"},        {true, "0.4.0"},      {false, "0.4.1.rc"},   {true, "0.4.1.RC"},
        {false, "0.4.1"},      {false, "0.5a1"},     {false, "0.5b3"},      {false, "0.5C1"},
        {false, "0.5z"},       {false, "0.5za"},     {false, "0.5"},        {false, "0.5_5"},
        {true, "0.5-5"},       {false, "0.9.6"},     {false, "0.960923"},   {false, "1.0"},
        {false, "1.1dev1"},    {false, "1.1_"},      {false, "1.1a1"},      {false, "1.1.dev1"},
        {true, "1.1.0dev1"},   {false, "1.1.a1"},    {true, "1.1.0a1"},     {false, "1.1.0rc1"},
        {false, "1.1.0"},      {true, "1.1"},        {true, "1.1.0.0"},     {false, "1.1.0post1"},
        {true, "1.1.post1"},   {false, "1.1post1"},  {false, "1996.07.12"}, {false, "1!0.4.1"},
        {false, "1!3.1.1.6"},  {false, "2!0.4.1"},
    };
    std::vector<Version> vs;
    for (const auto& [eq, s] : sorted) vs.push_back(V(s));
    for (std::size_t i = 0; i < vs.size(); ++i) {
        for (std::size_t j = i + 1; j < vs.size(); ++j) {
            bool all_eq = true;
            for (std::size_t k = i + 1; k <= j; ++k) all_eq = all_eq && sorted[k].first;
            INFO(vs[i].to_string(), " vs ", vs[j].to_string());
            if (all_eq) {
                CHECK(vs[i] == vs[j]);
                CHECK(std::hash<Version>()(vs[i]) == std::hash<Version>()(vs[j]));
            } else {
                CHECK(vs[i] < vs[j]);
                CHECK(vs[j] > vs[i]);
                CHECK(vs[i] != vs[j]);
            }
        }
    }
}

TEST_CASE("VersionOrder: every rule in conda.md") {
    struct Row { std::string a, op, b; };
    const Row rows[] = {
        // the reference's example order
        {"1.1dev1", "<", "1.1a1"}, {"1.1a1", "<", "1.1.0dev1"}, {"1.1.0dev1", "<", "1.1.a1"},
        {"1.1.a1", "<", "1.1.0rc1"}, {"1.1.0rc1", "<", "1.1"}, {"1.1", "<", "1.1.post1"},
        {"1.1.post1", "<", "1!0.1"},
        // lower-case, '-' is '_'
        {"1.0RC1", "==", "1.0rc1"}, {"1.0-1", "==", "1.0_1"}, {"1.0-1", "==", "1.0.1"},
        // trailing '_' stays attached (openssl style)
        {"1.0.1_", "<", "1.0.1a"}, {"1.0.1_", "<", "1.0.1"},  // "_" is a string: below the fill 0
        // leading zeros dropped; fill 0 before a leading letter
        {"1.01", "==", "1.1"}, {"1.1.a1", "==", "1.1.0a1"}, {"1.1rc", "<", "1.1.0rc"},
        // dev smallest, strings < numbers, post largest
        {"1.0dev", "<", "1.0a"}, {"1.0a", "<", "1.0"}, {"1.0z", "<", "1.0.0.1"}, {"1.0", "<", "1.0post"},
        {"1.0post", ">", "1.0.99999"}, {"1.0dev", "<", "1.0_"}, {"1.0a", "<", "1.0b"}, {"1.0alpha", "<", "1.0beta"},
        // missing elements count as 0
        {"1.1", "==", "1.1.0"}, {"1.1", "==", "1.1.0.0"}, {"1", "<", "1.0.1"},
        // epochs dominate
        {"1!0.1", ">", "999.9"}, {"0!1.0", "==", "1.0"}, {"2!1", ">", "1!9"},
        // local versions only when the main versions tie
        {"1.0+1", "<", "1.0+2"}, {"1.0", "<", "1.0+1"}, {"1.0+zzz", "<", "1.1"}, {"1.0+abc", "<", "1.0+abd"},
        {"1.0+1.0", "==", "1.0+1"},
        // the .0a0 idiom
        {"3.13.0a0", "<", "3.13.0rc1"}, {"3.13.0a0", "<", "3.13.0"}, {"3.12.99", "<", "3.13.0a0"},
        // big numbers do not overflow
        {"20240101000000000000001", ">", "20240101000000000000000"},
    };
    for (const auto& r : rows) {
        INFO(r.a, " ", r.op, " ", r.b);
        Version a = V(r.a), b = V(r.b);
        std::string op = r.op;
        if (op == "==") {
            CHECK(a == b);
            CHECK(std::hash<Version>()(a) == std::hash<Version>()(b));
        } else if (op == "<") {
            CHECK(a < b);
        } else {
            CHECK(a > b);
        }
    }
}

TEST_CASE("Version round-trips as written and works in hashed sets") {
    CHECK(V(" 1.2.0RC1 ").to_string() == "1.2.0RC1");
    CHECK(V("1!2.0+local_1").to_string() == "1!2.0+local_1");
    std::unordered_set<Version> set{V("1.1"), V("1.1.0"), V("1.01"), V("1.2")};
    CHECK(set.size() == 2);
}

TEST_CASE("Version parse errors point at the offending character") {
    struct Row { std::string text, message; std::size_t offset; };
    const Row rows[] = {
        {"", "empty version", 0},
        {"   ", "empty version", 3},
        {"1.2$", "invalid character '$' in version", 3},
        {" 1.2 3", "invalid character ' ' in version", 4},
        {"1.*", "invalid character '*' in version", 2},
        {"1..2", "empty version component", 2},
        {".1", "empty version component", 0},
        {"1.", "empty version component", 2},
        {"1!2!3", "duplicated epoch separator '!'", 3},
        {"a!1", "epoch must be an integer", 0},
        {"1!", "empty version", 2},
        {"1+a+b", "duplicated local version separator '+'", 3},
        {"1+", "empty local version", 1},
        {"1+a..b", "empty version component", 4},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        auto v = Version::parse(r.text);
        REQUIRE(!v);
        CHECK(v.error().message == r.message);
        CHECK(v.error().offset == r.offset);
    }
}

TEST_CASE("VersionSpec: every operator") {
    struct Row { std::string spec, version; bool expected; };
    const Row rows[] = {
        {"*", "0.0.1", true},
        {"1.2", "1.2", true}, {"1.2", "1.2.0", true}, {"1.2", "1.2.1", false},  // bare: exact
        {"==1.2", "1.2.0", true}, {"==1.2", "1.2.1", false},
        {"!=1.2", "1.2.0", false}, {"!=1.2", "1.2.1", true},
        {"1.2.*", "1.2", true}, {"1.2.*", "1.2.0", true}, {"1.2.*", "1.2.9", true}, {"1.2.*", "1.20", false},
        {"1.2.*", "1.3", false}, {"1.2*", "1.2.9", true}, {"1.2*", "1.20", false},
        {"=1.2", "1.2.9", true}, {"=1.2", "1.20", false}, {"=1.2.*", "1.2.3", true},
        {"!=1.2.*", "1.2.3", false}, {"!=1.2.*", "1.3", true},
        {"<1.2", "1.1.9", true}, {"<1.2", "1.2", false}, {"<1.2", "1.2a", true},
        {"<=1.2", "1.2.0", true}, {"<=1.2", "1.2.0.1", false},
        {">1.2", "1.2.0.1", true}, {">1.2", "1.2", false},
        {">=1.2", "1.2", true}, {">=1.2", "1.1", false}, {">=1.2.*", "1.2", true}, {">=1.2.*", "1.1.9", false},
        {"<1.2.*", "1.1", true},   // stripped, deprecated
        {"==1.2.*", "1.2", true},  // stripped, deprecated
        {"~=1.2.3", "1.2.3", true}, {"~=1.2.3", "1.2.9", true}, {"~=1.2.3", "1.2.2", false}, {"~=1.2.3", "1.3", false},
        {"~=1.2", "1.9", true}, {"~=1.2", "2.0", false},
        {">=1.2,<2", "1.5", true}, {">=1.2,<2", "2.0", false},
        {">=3.12,<3.13.0a0", "3.13.0rc1", false}, {">=3.12,<3.13.0a0", "3.12.7", true},
        {"1.2|1.4", "1.4", true}, {"1.2|1.4", "1.3", false},
        {">=1,<2|>=3", "3.5", true}, {">=1,<2|>=3", "2.5", false}, {">=1,<2|>=3", "1.5", true},
        {">=1,(<2|>=3)", "2.5", false}, {"(1.2|1.4),!=1.4", "1.4", false}, {"(1.2|1.4),!=1.4", "1.2", true},
        {">= 1.2 , < 2", "1.9", true},  // spaces dropped
        {"1.*.3", "1.7.3", true}, {"1.*.3", "1.7.4", false},  // non-trailing '*': regex
        {"^1\\.[0-9]+$", "1.42", true}, {"^1\\.[0-9]+$", "1.42.1", false},
        {"1!1.0", "1.0", false}, {">=1!0", "99", false}, {"1.0+abc", "1.0+ABC", true},
        {"1.0.*", "1.0+local", true}, {"1.0+a.*", "1.0+a.7", true}, {"1.0+a.*", "1.1+a", false},
        {"1.1a.*", "1.1alpha", true}, {"1.1a.*", "1.1b", false},
    };
    for (const auto& r : rows) {
        INFO(r.spec, " contains ", r.version);
        auto spec = VersionSpec::parse(r.spec);
        REQUIRE(spec);
        CHECK(spec->contains(V(r.version)) == r.expected);
        // round trip keeps the meaning
        auto again = VersionSpec::parse(spec->to_string());
        REQUIRE(again);
        CHECK(again->to_string() == spec->to_string());
        CHECK(again->contains(V(r.version)) == r.expected);
    }
}

TEST_CASE("VersionSpec prints canonically") {
    struct Row { std::string in, out; };
    const Row rows[] = {
        {"*", "*"}, {"1.2", "==1.2"}, {"=1.2", "1.2.*"}, {"1.2*", "1.2.*"}, {"!=1.2.*", "!=1.2.*"},
        {">= 1.2 , <2", ">=1.2,<2"}, {"(1|2),3", "(==1|==2),==3"}, {"((1))", "==1"}, {"1|(2|3)", "==1|==2|==3"},
        {"~=1.2", "~=1.2"}, {"1.*.3", "1.*.3"}, {">=1.2.*", ">=1.2"},
    };
    for (const auto& r : rows) {
        INFO(r.in);
        auto spec = VersionSpec::parse(r.in);
        REQUIRE(spec);
        CHECK(spec->to_string() == r.out);
    }
    CHECK(*VersionSpec::parse("=1.2") == *VersionSpec::parse("1.2.*"));
    CHECK(VersionSpec().is_any());
}

TEST_CASE("VersionSpec errors point at the offending character") {
    struct Row { std::string text, message; std::size_t offset; };
    const Row rows[] = {
        {"", "empty version spec", 0},
        {">=", "missing version after '>='", 2},
        {"=>1.2", "invalid operator '=>'", 1},
        {"!1.2", "invalid operator '!'", 0},
        {"~=1", "'~=' needs at least two version components", 2},
        {"~=1.2.*", "invalid operator '~=' with '.*'", 6},
        {"(1.2", "unbalanced '(' in version spec", 0},
        {"1.2|", "expected a version", 4},
        {"1.2)", "unexpected ')' in version spec", 3},
        {"1.2,,1.3", "unexpected ',' in version spec", 4},
        {"^1.2", "version regex must start with '^' and end with '$'", 0},
        {"^(1$", "invalid version regex", 0},
        {">= 1.2, < 2.0#", "invalid character '#' in version", 13},
        {">=1.2,<1..3", "empty version component", 9},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        auto v = VersionSpec::parse(r.text);
        REQUIRE(!v);
        CHECK(v.error().message == r.message);
        CHECK(v.error().offset == r.offset);
    }
}
