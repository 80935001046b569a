#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/core/error.hpp"

using ocibuild::conda::PackageRecord;
using ocibuild::conda::RepoData;
using ocibuild::core::Error;
using ocibuild::core::ErrorCategory;

namespace {

const char* const kSubdirUrl = "https://conda.anaconda.org/conda-forge/linux-64/";
const char* const kChannel = "https://conda.anaconda.org/conda-forge";

RepoData parse(std::string json, std::string subdir_url = kSubdirUrl) {
    return RepoData::parse(std::move(json), std::move(subdir_url), kChannel, "test.json");
}

std::string parse_error(std::string json) {
    try {
        (void)parse(std::move(json));
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
        return e.what();
    }
    return "(no error)";
}

std::vector<std::string> fns(const RepoData& r, std::string_view name) {
    std::vector<std::string> out;
    for (auto i : r.by_name(name)) out.push_back(r.record(i).fn);
    return out;
}

const char* const kRepodata = R"({
  "info": {"subdir": "linux-64"},
  "packages": {
    "zlib-1.3.1-h4ab18f5_0.tar.bz2": {
      "build": "h4ab18f5_0", "build_number": 0, "depends": ["libgcc-ng >=12", "libzlib 1.3.1 h4ab18f5_0"],
      "license": "Zlib", "license_family": "Other", "md5": "9653F1BF3766164D0E65FA723CABBC54",
      "name": "zlib", "sha256": "cDD1E81F8B8B2EE5F9AA5ED1A4A19A8A83E32D1A7BF1F2B7C7B8F6D2D6E1A0B1",
      "size": 92883, "subdir": "linux-64", "timestamp": 1716874213000, "version": "1.3.1"
    },
    "python-3.12.4-h194c7f8_0_cpython.tar.bz2": {
      "name": "python", "version": "3.12.4", "build": "h194c7f8_0_cpython", "build_number": 0,
      "depends": ["bzip2 >=1.0.8,<2.0a0", "zlib"], "constrains": ["python_abi 3.12.* *_cp312"],
      "track_features": "", "timestamp": 1717000000, "license": null, "subdir": "linux-64"
    },
    "old-1.0-0.tar.bz2": {"name": "old", "version": "1.0", "build": "0", "subdir": "linux-64"},
    "future-1.0-0.tar.bz2": {"name": "future", "version": "1.0", "build": "0", "record_version": 2}
  },
  "packages.conda": {
    "python-3.12.4-h194c7f8_0_cpython.conda": {
      "name": "python", "version": "3.12.4", "build": "h194c7f8_0_cpython", "build_number": 0,
      "constrains": ["python_abi 3.12.* *_cp312"], "depends": ["bzip2 >=1.0.8,<2.0a0", "zlib"],
      "track_features": "a, b  c", "python_site_packages_path": "lib/python3.12/site-packages",
      "md5": "00000000000000000000000000000001", "size": 31000000, "timestamp": 1717000000000
    },
    "python-3.11.9-hb806964_0_cpython.conda": {
      "name": "python", "version": "3.11.9", "build": "hb806964_0_cpython", "build_number": 0,
      "depends": [], "track_features": ["x"]
    },
    "tzdata-2024a-h0c530f3_0.conda": {"name": "tzdata", "version": "2024a", "build": "h0c530f3_0", "noarch": "generic"},
    "six-1.16.0-pyh6c4a22f_0.conda": {"name": "six", "version": "1.16.0", "build": "pyh6c4a22f_0", "noarch": "python",
                                      "depends": ["python"]},
    "oldstyle-1.0-0.conda": {"name": "oldstyle", "version": "1.0", "build": "0", "noarch": true},
    "plain-1.0-0.conda": {"name": "plain", "version": "1.0", "build": "0", "noarch": false},
    "renamed.conda": {"name": "renamed", "version": "2.0", "build": "1", "build_number": 1,
                      "sig\u006eatures": {}, "extra": [1, {"deep": [true]}]}
  },
  "removed": ["old-1.0-0.tar.bz2"],
  "repodata_version": 1,
  "signatures": {"x": {}}
})";

}  // namespace

TEST_CASE("RepoData::parse reads records with conda's rules") {
    const RepoData r = parse(kRepodata);
    CHECK(r.subdir() == "linux-64");
    CHECK(r.channel_url() == kChannel);
    // zlib, python (.conda replaced the .tar.bz2), python 3.11, tzdata, six, oldstyle, plain, renamed;
    // old (removed) and future (record_version 2) are gone.
    CHECK(r.size() == 8);
    CHECK(r.names() == std::vector<std::string_view>{"oldstyle", "plain", "python", "renamed", "six", "tzdata", "zlib"});
    CHECK(fns(r, "python") ==
          std::vector<std::string>{"python-3.12.4-h194c7f8_0_cpython.conda", "python-3.11.9-hb806964_0_cpython.conda"});
    CHECK(r.by_name("old").empty());
    CHECK(r.by_name("future").empty());
    CHECK(r.by_name("bzip2 >=1.0.8,<2.0a0").empty());  // interned, but not a package name
    CHECK(r.by_name("nope").empty());

    const PackageRecord zlib = r.record(r.by_name("zlib")[0]);
    CHECK(zlib.name == "zlib");
    CHECK(zlib.version == "1.3.1");
    CHECK(zlib.build == "h4ab18f5_0");
    CHECK(zlib.depends == std::vector<std::string>{"libgcc-ng >=12", "libzlib 1.3.1 h4ab18f5_0"});
    CHECK(zlib.constrains.empty());
    CHECK(zlib.md5 == "9653f1bf3766164d0e65fa723cabbc54");
    CHECK(zlib.sha256 == "cdd1e81f8b8b2ee5f9aa5ed1a4a19a8a83e32d1a7bf1f2b7c7b8f6d2d6e1a0b1");
    CHECK(zlib.size == 92883);
    CHECK(zlib.timestamp == 1716874213000);
    CHECK(zlib.license == "Zlib");
    CHECK(zlib.license_family == "Other");
    CHECK(zlib.subdir == "linux-64");
    CHECK(zlib.noarch.empty());
    CHECK(zlib.fn == "zlib-1.3.1-h4ab18f5_0.tar.bz2");
    CHECK(zlib.url == "https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-h4ab18f5_0.tar.bz2");
    CHECK(zlib.channel == kChannel);
    CHECK(zlib.dist_name() == "zlib-1.3.1-h4ab18f5_0");

    const std::size_t py = r.by_name("python")[0];
    const PackageRecord python = r.record(py);
    CHECK(python.depends == std::vector<std::string>{"bzip2 >=1.0.8,<2.0a0", "zlib"});
    CHECK(python.constrains == std::vector<std::string>{"python_abi 3.12.* *_cp312"});
    CHECK(python.track_features == std::vector<std::string>{"a", "b", "c"});
    CHECK(python.md5 == "00000000000000000000000000000001");
    CHECK(python.sha256.empty());
    CHECK(python.subdir == "linux-64");  // from info.subdir
    CHECK(python.python_site_packages_path == "lib/python3.12/site-packages");
    CHECK(python.license.empty());
    CHECK(r.name(py) == "python");
    CHECK(r.version(py) == "3.12.4");
    CHECK(r.build(py) == "h194c7f8_0_cpython");
    CHECK(r.build_number(py) == 0);
    CHECK(r.track_feature_count(py) == 3);
    CHECK(r.timestamp(py) == 1717000000000);
    CHECK(r.depends(py) == std::vector<std::string_view>{"bzip2 >=1.0.8,<2.0a0", "zlib"});
    CHECK(r.constrains(py) == std::vector<std::string_view>{"python_abi 3.12.* *_cp312"});

    CHECK(r.record(r.by_name("python")[1]).track_features == std::vector<std::string>{"x"});
    CHECK(r.record(r.by_name("tzdata")[0]).noarch == "generic");
    CHECK(r.record(r.by_name("six")[0]).noarch == "python");
    CHECK(r.record(r.by_name("oldstyle")[0]).noarch == "generic");
    CHECK(r.record(r.by_name("plain")[0]).noarch.empty());
    const PackageRecord renamed = r.record(r.by_name("renamed")[0]);
    CHECK(renamed.fn == "renamed.conda");
    CHECK(renamed.url == "https://conda.anaconda.org/conda-forge/linux-64/renamed.conda");
    CHECK(renamed.build_number == 1);
}

TEST_CASE("RepoData::parse: seconds timestamps become milliseconds") {
    const RepoData r = parse(kRepodata);
    CHECK(r.timestamp(r.by_name("python")[0]) == 1717000000000);
    const RepoData s = parse(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": "0",
                                                                "timestamp": 1600000000.5}}})");
    CHECK(s.timestamp(0) == 1600000000000);
}

TEST_CASE("RepoData::parse: artifact URLs follow info.base_url (CEP 15)") {
    const char* const record = R"("packages.conda": {"a-1-0.conda": {"name": "a", "version": "1", "build": "0"}})";
    auto url_with = [&](std::string info) {
        return parse("{" + info + record + ", \"repodata_version\": 2}").record(0).url;
    };
    CHECK(url_with("") == "https://conda.anaconda.org/conda-forge/linux-64/a-1-0.conda");
    CHECK(url_with(R"("info": {"base_url": "https://cdn.example/pkgs"}, )") == "https://cdn.example/pkgs/a-1-0.conda");
    CHECK(url_with(R"("info": {"base_url": "https://cdn.example/pkgs/"}, )") == "https://cdn.example/pkgs/a-1-0.conda");
    CHECK(url_with(R"("info": {"base_url": "../../files/linux-64/", "repodata_version": 2}, )") ==
          "https://conda.anaconda.org/files/linux-64/a-1-0.conda");
    CHECK(url_with(R"("info": {"base_url": "/x"}, )") == "https://conda.anaconda.org/x/a-1-0.conda");
    // The subdir comes from the URL when info lacks it; a subdir URL without the slash still works.
    const RepoData r = parse(std::string("{") + record + "}", "file:///srv/chan/noarch");
    CHECK(r.subdir() == "noarch");
    CHECK(r.record(0).subdir == "noarch");
    CHECK(r.record(0).url == "file:///srv/chan/noarch/a-1-0.conda");
}

TEST_CASE("RepoData::parse: empty documents and sections") {
    const RepoData empty = parse("{}", "https://conda.anaconda.org/conda-forge/linux-aarch64/");
    CHECK(empty.size() == 0);
    CHECK(empty.subdir() == "linux-aarch64");
    CHECK(empty.names().empty());
    CHECK(empty.by_name("x").empty());
    CHECK(parse(R"({"info": {}, "packages": {}, "packages.conda": {}, "removed": []})").size() == 0);
    const RepoData d;
    CHECK(d.size() == 0);
    CHECK(d.names().empty());
}

TEST_CASE("RepoData::parse: .conda wins whatever the key order; removed applies to both formats") {
    const RepoData r = parse(R"({"removed": ["c-1-0.conda"],
        "packages.conda": {"a-1-0.conda": {"name": "a", "version": "1", "build": "0", "size": 1},
                           "c-1-0.conda": {"name": "c", "version": "1", "build": "0"}},
        "packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": "0", "size": 2},
                     "a-1-1.tar.bz2": {"name": "a", "version": "1", "build": "1", "size": 3},
                     "c-1-0.tar.bz2": {"name": "c", "version": "1", "build": "0"}}})");
    CHECK(fns(r, "a") == std::vector<std::string>{"a-1-0.conda", "a-1-1.tar.bz2"});
    CHECK(fns(r, "c") == std::vector<std::string>{"c-1-0.tar.bz2"});
    CHECK(r.record(r.by_name("a")[0]).size == 1);
}

TEST_CASE("RepoData::parse: escaped strings are unescaped") {
    const RepoData r = parse(R"({"packages.conda": {"esc\u0061pe-1-0.conda": {"n\u0061me": "x", "name": "esc\u0061pe",
        "version": "1", "build": "0", "license": "\"quoted\"", "depends": ["a \u003e=1", "b"]}}})");
    REQUIRE(r.size() == 1);
    const PackageRecord p = r.record(0);
    CHECK(p.name == "escape");
    CHECK(p.fn == "escape-1-0.conda");
    CHECK(p.license == "\"quoted\"");
    CHECK(p.depends == std::vector<std::string>{"a >=1", "b"});
}

TEST_CASE("RepoData::parse: padding spare capacity is used in place, short capacity is grown") {
    std::string tight = R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": "0"}}})";
    tight.shrink_to_fit();
    CHECK(parse(tight).size() == 1);
    std::string roomy = tight;
    roomy.reserve(tight.size() + 4096);
    CHECK(parse(std::move(roomy)).record(0).fn == "a-1-0.tar.bz2");
}

TEST_CASE("RepoData::parse errors name the source, byte and field") {
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": "0", "depends": 5}}})") ==
          "test.json: byte 86: packages \"a-1-0.tar.bz2\" field \"depends\": "
          "The JSON element does not have the requested type.");
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": "0", "md5": "xyz"}}})") ==
          "test.json: byte 82: packages \"a-1-0.tar.bz2\" field \"md5\": expected 32 hex digits, got \"xyz\"");
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"version": "1", "build": "0"}}})") ==
          "test.json: byte 31: packages \"a-1-0.tar.bz2\": missing \"name\"");
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": 1, "version": "1", "build": "0"}}})") ==
          "test.json: byte 40: packages \"a-1-0.tar.bz2\" field \"name\": "
          "The JSON element does not have the requested type.");
    CHECK(parse_error("[]").starts_with("test.json: byte 0: "));
    CHECK(parse_error("") == "test.json: Empty: no JSON found");
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "vers)") ==
          "test.json: A string is opened, but never closed.");
    CHECK(parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1")") ==
          "test.json: byte 59: JSON document ended early in the middle of an object or array.");
    const std::string garbage = parse_error(R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "build": tru}}})");
    CHECK(garbage.starts_with("test.json: byte 70: packages \"a-1-0.tar.bz2\" field \"build\": "));
}
