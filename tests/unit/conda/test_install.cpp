// conda::install on real artifacts written by tests/integration/conda_packages.py (python3 and the
// zstd command): files, symlinks, prefix placeholders, noarch: python, entry points, conda-meta,
// checksums, the shared cache, file:// and loopback HTTP, hostile packages.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "../registry/loopback_server.hpp"
#include "ocibuild/conda/install.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/registry/http.hpp"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using ocibuild::conda::InstallOptions;
using ocibuild::conda::PackageRecord;
using ocibuild::core::Error;
using ocibuild::core::ErrorCategory;

namespace {

// The fixture's PLACEHOLDER (conda-build's 255-character padded build prefix).
const std::string placeholder = [] {
    std::string p = "/home/conda/feedstock_root/build_artifacts/pkg_1700000000000/_h_env";
    for (int i = 0; i < 30; ++i) p += "_placehold";
    return p.substr(0, 255);
}();

fs::path fixture_script() {
    for (const fs::path& candidate :
         {fs::path("integration/conda_packages.py"), fs::path("tests/integration/conda_packages.py"),
          fs::path("../tests/integration/conda_packages.py"),
          fs::path(__FILE__).parent_path() / "../../integration/conda_packages.py"}) {
        if (fs::exists(candidate)) return fs::absolute(candidate);
    }
    FAIL("cannot find tests/integration/conda_packages.py");
    return {};
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& data) {
    std::ofstream out(p, std::ios::binary);
    out << data;
}

std::string sha256_hex(const std::string& data) { return std::string(ocibuild::core::Digest::of(data).hex()); }

/// A channel folder with artifacts made by the Python fixture.
class TestChannel {
public:
    explicit TestChannel(const fs::path& dir) : dir_(dir) { fs::create_directories(dir_); }

    /// Writes an artifact; `spec` is {"record": {...}, "files": {...}, "fmt": ..., "legacy": ...}
    /// as conda_packages.py's command line takes it. The record points at it by file://.
    PackageRecord add(Json spec) {
        Json& rec = spec["record"];
        if (!rec.contains("build_number")) rec["build_number"] = 0;
        if (!rec.contains("depends")) rec["depends"] = Json::array();
        if (!rec.contains("subdir")) rec["subdir"] = rec.value("noarch", "").empty() ? "linux-64" : "noarch";
        const std::string subdir = rec["subdir"];
        const fs::path spec_file = dir_ / ("spec-" + std::to_string(counter_++) + ".json");
        spit(spec_file, spec.dump());
        const std::string cmd = "python3 '" + fixture_script().string() + "' '" + (dir_ / subdir).string() + "' '" +
                                spec_file.string() + "'";
        FILE* pipe = ::popen(cmd.c_str(), "r");
        REQUIRE(pipe != nullptr);
        std::string out;
        char buf[512];
        while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
        REQUIRE_MESSAGE(::pclose(pipe) == 0, "fixture failed: " << cmd);
        while (!out.empty() && out.back() == '\n') out.pop_back();
        const fs::path artifact = fs::absolute(out);

        PackageRecord r;
        r.name = rec["name"];
        r.version = rec["version"];
        r.build = rec["build"];
        r.build_number = rec["build_number"];
        r.depends = rec["depends"].get<std::vector<std::string>>();
        r.subdir = subdir;
        r.noarch = rec.value("noarch", "");
        r.python_site_packages_path = rec.value("python_site_packages_path", "");
        r.license = "MIT";
        r.timestamp = 1700000000000;
        r.fn = artifact.filename().string();
        r.url = "file://" + artifact.string();
        r.channel = "file://" + dir_.string();
        const std::string data = slurp(artifact);
        r.sha256 = sha256_hex(data);
        r.size = data.size();
        return r;
    }

    [[nodiscard]] const fs::path& dir() const { return dir_; }

private:
    fs::path dir_;
    int counter_ = 0;
};

Json package(const std::string& name, const std::string& version, const std::string& build, Json files,
             Json extra = Json::object()) {
    Json record = {{"name", name}, {"version", version}, {"build", build}};
    Json spec = Json::object();
    for (auto& [k, v] : extra.items()) (k == "fmt" || k == "legacy" ? spec[k] : record[k]) = v;
    spec["record"] = std::move(record);
    spec["files"] = std::move(files);
    return spec;
}

Json base64_file(const std::string& data, int mode = 0644) {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < data.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(data[i]) << 16) |
                           (static_cast<unsigned char>(data[i + 1]) << 8) | static_cast<unsigned char>(data[i + 2]);
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
    }
    if (i + 1 == data.size()) {
        const unsigned v = static_cast<unsigned char>(data[i]) << 16;
        out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == data.size()) {
        const unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8);
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
    }
    return Json{{"base64", out}, {"mode", mode}};
}

struct Fixture {
    ocibuild::core::TempDir temp;
    TestChannel channel{temp.path() / "channel"};
    fs::path cache = temp.path() / "cache";
    std::vector<std::string> log;
    InstallOptions options;

    Fixture() {
        options.package_cache = cache;
        options.jobs = 2;
        options.log = [this](std::string_view line) { log.emplace_back(line); };
    }

    fs::path install(const std::vector<PackageRecord>& packages, const std::string& root_name = "root",
                     const std::string& prefix = "/opt/conda", const std::vector<std::string>& specs = {}) {
        const fs::path root = temp.path() / root_name;
        fs::create_directories(root);
        ocibuild::conda::install(packages, root, prefix, specs, options);
        return root / prefix.substr(1);
    }
};

Json meta(const fs::path& prefix, const PackageRecord& r) {
    return Json::parse(slurp(prefix / "conda-meta" / (r.dist_name() + ".json")));
}

const Json* paths_entry(const Json& m, const std::string& path) {
    for (const Json& e : m["paths_data"]["paths"]) {
        if (e["_path"] == path) return &e;
    }
    return nullptr;
}

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

/// Every file under `dir` (relative path → content, or "-> target" for symlinks).
std::map<std::string, std::string> tree(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
        const std::string rel = fs::relative(it->path(), dir).string();
        if (it->is_symlink()) {
            out[rel] = "-> " + fs::read_symlink(it->path()).string();
        } else if (it->is_regular_file()) {
            out[rel] = slurp(it->path());
        }
    }
    return out;
}

}  // namespace

TEST_CASE("install: files, symlinks and text and binary placeholders, from .conda and .tar.bz2") {
    Fixture f;
    const std::string long_args = " -W ignore::DeprecationWarning:" + std::string(120, 'x');
    const std::string binary = std::string(
                                   "\x7f"
                                   "ELF\0\1",
                                   6) +
                               placeholder + "/lib:" + placeholder + "/lib64" + std::string(1, '\0') + "rest" +
                               placeholder;  // the last one is no C string
    for (const char* fmt_name : {"conda", "tar.bz2"}) {
        const std::string fmt = fmt_name;
        CAPTURE(fmt);
        const PackageRecord a = f.channel.add(
            Json{{"fmt", fmt},
                 {"record",
                  {{"name", "liba" + std::string(fmt == "conda" ? "" : "-bz2")},
                   {"version", "1.0"},
                   {"build", "h0_0"},
                   {"placeholder",
                    {{"etc/a.cfg", "text"}, {"bin/short", "text"}, {"bin/long", "text"}, {"lib/liba.so", "binary"}}}}},
                 {"files",
                  {{"etc/a.cfg", "prefix=" + placeholder + "\nlib=" + placeholder + "/lib\n"},
                   {"bin/short", "#!" + placeholder + "/bin/python3.12 -u\nprint('" + placeholder + "')\n"},
                   {"bin/long", "#!" + placeholder + "/bin/python3.12" + long_args + "\nimport sys\n"},
                   {"lib/liba.so", base64_file(binary, 0755)},
                   {"lib/liba.so.1", {{"symlink", "liba.so"}}},
                   {"share/doc/a.txt", "plain " + placeholder + " not listed as a placeholder\n"}}}});
        const fs::path prefix = f.install({a}, "root-" + fmt);

        CHECK(slurp(prefix / "etc/a.cfg") == "prefix=/opt/conda\nlib=/opt/conda/lib\n");
        CHECK(slurp(prefix / "bin/short") == "#!/opt/conda/bin/python3.12 -u\nprint('/opt/conda')\n");
        // Over 127 bytes after replacement: the kernel would cut it, so /usr/bin/env finds python.
        CHECK(slurp(prefix / "bin/long") == "#!/usr/bin/env python3.12" + long_args + "\nimport sys\n");
        CHECK(mode_of(prefix / "bin/long") == 0755);
        CHECK(mode_of(prefix / "etc/a.cfg") == 0644);

        const std::string patched = slurp(prefix / "lib/liba.so");
        REQUIRE(patched.size() == binary.size());
        const std::string c_string = "/opt/conda/lib:/opt/conda/lib64";
        const std::size_t padding = 2 * (placeholder.size() - std::string("/opt/conda").size());
        CHECK(patched == std::string("\x7f"
                                     "ELF\0\1",
                                     6) +
                             c_string + std::string(1 + padding, '\0') + "rest" + placeholder);
        CHECK(mode_of(prefix / "lib/liba.so") == 0755);

        REQUIRE(fs::is_symlink(prefix / "lib/liba.so.1"));
        CHECK(fs::read_symlink(prefix / "lib/liba.so.1") == "liba.so");
        CHECK(slurp(prefix / "share/doc/a.txt") == "plain " + placeholder + " not listed as a placeholder\n");

        const Json m = meta(prefix, a);
        CHECK(m["name"] == a.name);
        CHECK(m["fn"] == a.fn);
        CHECK(m["url"] == a.url);
        CHECK(m["channel"] == a.channel + "/");
        CHECK(m["sha256"] == a.sha256);
        CHECK(m["link"]["type"] == 3);
        // The package's order (the spec went through a JSON object, so sorted).
        CHECK(m["files"] ==
              Json::array({"bin/long", "bin/short", "etc/a.cfg", "lib/liba.so", "lib/liba.so.1", "share/doc/a.txt"}));
        const Json* cfg = paths_entry(m, "etc/a.cfg");
        REQUIRE(cfg != nullptr);
        CHECK((*cfg)["sha256_in_prefix"] == sha256_hex(slurp(prefix / "etc/a.cfg")));
        CHECK((*cfg)["prefix_placeholder"] == placeholder);
        CHECK((*cfg)["file_mode"] == "text");
        CHECK((*cfg)["size_in_bytes"] == slurp(prefix / "etc/a.cfg").size());
        CHECK((*paths_entry(m, "lib/liba.so"))["file_mode"] == "binary");
        CHECK((*paths_entry(m, "lib/liba.so.1"))["path_type"] == "softlink");
        CHECK((*paths_entry(m, "share/doc/a.txt"))["sha256_in_prefix"] ==
              sha256_hex(slurp(prefix / "share/doc/a.txt")));
    }
}

TEST_CASE("install: conda-meta records, requested specs and history") {
    Fixture f;
    const PackageRecord zlib = f.channel.add(package("zlib", "1.3.1", "h4ab18f5_1", {{"lib/libz.so", "z"}}));
    PackageRecord app = f.channel.add(package("app", "2.0", "h0_0", {{"bin/app", "#!/bin/sh\n"}}));
    // A channel under the alias keeps conda's short name in history.
    app.channel = "https://conda.anaconda.org/conda-forge";
    app.url = "https://conda.anaconda.org/conda-forge/linux-64/" + app.fn;
    f.options.channels.mirrors["https://conda.anaconda.org/conda-forge"] = {"file://" + f.channel.dir().string()};
    app.depends = {"zlib >=1.3"};
    app.track_features = {"feat1", "feat2"};

    const fs::path prefix = f.install({zlib, app}, "root", "/opt/conda", {"app >=2", "python"});
    const Json m = meta(prefix, app);
    CHECK(m["requested_specs"] == Json::array({"app >=2"}));
    CHECK(m["requested_spec"] == "app >=2");
    CHECK(m["depends"] == Json::array({"zlib >=1.3"}));
    CHECK(m["track_features"] == "feat1 feat2");
    CHECK(m["channel"] == "https://conda.anaconda.org/conda-forge/");
    CHECK(m["url"] == app.url);  // records keep the original URL; only fetching used the mirror
    CHECK(m["extracted_package_dir"] == "/opt/conda/pkgs/app-2.0-h0_0");
    CHECK(m["package_tarball_full_path"] == "/opt/conda/pkgs/" + app.fn);
    CHECK(m["paths_data"]["paths_version"] == 1);
    const Json z = meta(prefix, zlib);
    CHECK(z["requested_specs"] == Json::array());
    CHECK_FALSE(z.contains("requested_spec"));
    CHECK(slurp(prefix / "conda-meta/history") ==
          "==> 1970-01-01 00:00:00 <==\n"
          "# cmd: ocibuild build\n"
          "# conda version: 4.0.0\n"
          "+conda-forge/linux-64::app-2.0-h0_0\n"
          "+file://" +
              f.channel.dir().string() +
              "/linux-64::zlib-1.3.1-h4ab18f5_1\n"
              "# update specs: [\"app >=2\", \"python\"]\n");
}

TEST_CASE("install: noarch python goes to site-packages and bin, with entry points") {
    Fixture f;
    const PackageRecord python =
        f.channel.add(package("python", "3.12.4", "h0_0_cpython", {{"bin/python3.12", "elf"}}));
    const PackageRecord tool = f.channel.add(package(
        "tool", "1.0", "pyhd8ed1ab_0",
        {{"site-packages/tool/__init__.py", "X = 1\n"},
         {"site-packages/tool-1.0.dist-info/METADATA", "Name: tool\n"},
         {"python-scripts/tool-helper", "#!/usr/bin/env python\n"}},
        {{"noarch", "python"}, {"entry_points", Json::array({"tool = tool.cli:main", "tool-x = tool.cli:App.run"})}}));
    const fs::path prefix = f.install({python, tool});

    CHECK(slurp(prefix / "lib/python3.12/site-packages/tool/__init__.py") == "X = 1\n");
    CHECK(fs::exists(prefix / "lib/python3.12/site-packages/tool-1.0.dist-info/METADATA"));
    CHECK(slurp(prefix / "bin/tool-helper") == "#!/usr/bin/env python\n");
    CHECK_FALSE(fs::exists(prefix / "site-packages"));
    CHECK_FALSE(fs::exists(prefix / "python-scripts"));
    CHECK(slurp(prefix / "bin/tool-x") ==
          "#!/opt/conda/bin/python3.12\n"
          "# -*- coding: utf-8 -*-\n"
          "import re\n"
          "import sys\n"
          "\n"
          "from tool.cli import App\n"
          "\n"
          "if __name__ == '__main__':\n"
          "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
          "    sys.exit(App.run())\n");
    CHECK(mode_of(prefix / "bin/tool") == 0775);
    CHECK(slurp(prefix / "bin/tool").find("from tool.cli import main\n") != std::string::npos);

    const Json m = meta(prefix, tool);
    CHECK(m["noarch"] == "python");
    CHECK(m["files"] == Json::array({"bin/tool-helper", "lib/python3.12/site-packages/tool-1.0.dist-info/METADATA",
                                     "lib/python3.12/site-packages/tool/__init__.py", "bin/tool", "bin/tool-x"}));
    CHECK((*paths_entry(m, "bin/tool"))["path_type"] == "unix_python_entry_point");
    CHECK((*paths_entry(m, "bin/tool"))["sha256_in_prefix"] == sha256_hex(slurp(prefix / "bin/tool")));

    SUBCASE("python_site_packages_path wins (free-threaded python)") {
        PackageRecord ft = f.channel.add(package("python", "3.13.0", "h0_0_cp313t", {{"bin/python3.13t", "elf"}},
                                                 {{"python_site_packages_path", "lib/python3.13t/site-packages"}}));
        const fs::path p2 = f.install({ft, tool}, "root-ft");
        CHECK(fs::exists(p2 / "lib/python3.13t/site-packages/tool/__init__.py"));
        CHECK(slurp(p2 / "bin/tool").starts_with("#!/opt/conda/bin/python3.13t\n"));
    }
    SUBCASE("a python path too long for a shebang gets the sh trampoline") {
        const std::string long_prefix = "/opt/" + std::string(130, 'p');
        const fs::path p3 = f.install({python, tool}, "root-long", long_prefix);
        CHECK(slurp(p3 / "bin/tool")
                  .starts_with("#!/bin/sh\n'''exec' \"" + long_prefix + "/bin/python3.12\" \"$0\" \"$@\" #'''\n" +
                               "# -*- coding: utf-8 -*-\n"));
    }
    SUBCASE("a noarch python package needs a python") {
        CHECK_THROWS_WITH_AS(f.install({tool}, "root-nopy"),
                             doctest::Contains("tool-1.0-pyhd8ed1ab_0 is noarch: python"), Error);
    }
}

TEST_CASE("install: a checksum mismatch is an integrity error naming package, URL and digests") {
    Fixture f;
    PackageRecord a = f.channel.add(package("liba", "1.0", "h0_0", {{"lib/a", "a"}}));
    const std::string actual = a.sha256;
    a.sha256 = std::string(64, '0');
    try {
        f.install({a});
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::integrity);
        const std::string msg = e.what();
        CHECK(msg.find("liba-1.0-h0_0") != std::string::npos);
        CHECK(msg.find(a.url) != std::string::npos);
        CHECK(msg.find("expected " + std::string(64, '0')) != std::string::npos);
        CHECK(msg.find("got " + actual) != std::string::npos);
    }
    CHECK(fs::is_empty(f.cache / "pkgs"));  // nothing unverified entered the cache

    SUBCASE("md5 alone verifies") {
        a.sha256.clear();
        a.md5 = "00000000000000000000000000000000";
        CHECK_THROWS_WITH_AS(f.install({a}), doctest::Contains("md5 mismatch"), Error);
    }
    SUBCASE("no checksum at all is refused") {
        a.sha256.clear();
        a.md5.clear();
        CHECK_THROWS_WITH_AS(f.install({a}), doctest::Contains("cannot be verified"), Error);
    }
}

TEST_CASE("install: md5-only records install") {
    Fixture f;
    PackageRecord a = f.channel.add(package("liba", "1.0", "h0_0", {{"lib/a", "a"}}));
    a.sha256.clear();
    const std::string cmd = "md5sum '" + a.url.substr(7) + "'";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    char buf[64] = {};
    REQUIRE(std::fgets(buf, 33, pipe) != nullptr);
    ::pclose(pipe);
    a.md5 = buf;
    CHECK(slurp(f.install({a}) / "lib/a") == "a");
}

TEST_CASE("install: the cache is reused without reading the source again") {
    Fixture f;
    const PackageRecord a = f.channel.add(package("liba", "1.0", "h0_0", {{"lib/a", "a"}}));
    const PackageRecord b = f.channel.add(package("libb", "1.0", "h0_0", {{"lib/b", "b"}}, {{"fmt", "tar.bz2"}}));
    const fs::path first = f.install({a, b}, "root1");
    fs::remove(a.url.substr(7));
    fs::remove(b.url.substr(7));
    const fs::path second = f.install({a, b}, "root2");
    CHECK(tree(first) == tree(second));
    CHECK(slurp(second / "lib/b") == "b");
}

TEST_CASE("install: downloads over HTTP into the cache, once") {
    Fixture f;
    const PackageRecord local = f.channel.add(package("liba", "1.0", "h0_0", {{"lib/a", "from http"}}));
    const std::string body = slurp(local.url.substr(7));
    ocibuild::test::LoopbackServer server([&](const ocibuild::test::SeenRequest& req) {
        if (req.target == "/chan/linux-64/" + local.fn) return ocibuild::test::CannedResponse{200, {}, body};
        return ocibuild::test::CannedResponse{404, {}, "no"};
    });
    ocibuild::registry::HttpClient http;
    f.options.http = &http;
    PackageRecord a = local;
    a.url = server.url("/chan/linux-64/" + a.fn);
    a.channel = server.url("/chan");
    fs::remove(local.url.substr(7));

    CHECK(slurp(f.install({a}, "root1") / "lib/a") == "from http");
    CHECK(server.requests().size() == 1);
    CHECK(fs::exists(f.cache / "archives" / (a.sha256 + "-" + a.fn)));
    CHECK(slurp(f.install({a}, "root2") / "lib/a") == "from http");
    CHECK(server.requests().size() == 1);

    SUBCASE("a busy server is retried; a missing artifact is not, and is named with its package") {
        std::atomic<int> calls{0};
        ocibuild::test::LoopbackServer flaky([&](const ocibuild::test::SeenRequest&) {
            return ++calls == 1 ? ocibuild::test::CannedResponse{503, {}, "busy"}
                                : ocibuild::test::CannedResponse{200, {}, body};
        });
        PackageRecord retried = a;
        retried.url = flaky.url("/x/" + a.fn);
        f.options.package_cache = f.temp.path() / "fresh-cache";
        CHECK(slurp(f.install({retried}, "root5") / "lib/a") == "from http");
        CHECK(calls == 2);
    }
    SUBCASE("a missing artifact names package and URL") {
        PackageRecord missing = a;
        missing.sha256 = std::string(64, 'a');
        missing.url = server.url("/chan/linux-64/gone.conda");
        CHECK_THROWS_WITH_AS(f.install({missing}, "root3"),
                             doctest::Contains(("package liba-1.0-h0_0: GET " + missing.url + ": HTTP 404").c_str()),
                             Error);
        CHECK(server.requests().size() == 2);  // 404 is final
    }
    SUBCASE("a mismatch over HTTP leaves no archive behind") {
        PackageRecord bad = a;
        bad.sha256 = std::string(64, 'b');
        CHECK_THROWS_AS(f.install({bad}, "root4"), Error);
        for (const auto& e : fs::directory_iterator(f.cache / "archives"))
            CHECK(e.path().filename().string().find(std::string(64, 'b')) == std::string::npos);
    }
}

TEST_CASE("install: hostile packages are refused") {
    Fixture f;
    const fs::path outside = f.temp.path() / "outside";
    fs::create_directories(outside);
    SUBCASE("a path with ..") {
        const PackageRecord evil = f.channel.add(package("evil", "1.0", "h0_0", {{"../../outside/pwned", "x"}}));
        CHECK_THROWS_WITH_AS(f.install({evil}), doctest::Contains("\"..\" paths are not allowed"), Error);
    }
    SUBCASE("a file written through a symlink the package made") {
        const PackageRecord evil =
            f.channel.add(package("evil", "1.0", "h0_0", {{"lib", {{"symlink", outside.string()}}}, {"lib/pwned", "x"}},
                                  {{"fmt", "tar.bz2"}}));
        CHECK_THROWS_WITH_AS(f.install({evil}), doctest::Contains("is a symlink or not a directory"), Error);
    }
    SUBCASE("a later package writing through an earlier package's symlink to outside") {
        const PackageRecord link =
            f.channel.add(package("link", "1.0", "h0_0", {{"share", {{"symlink", outside.string()}}}}));
        const PackageRecord evil = f.channel.add(package("evil", "1.0", "h0_0", {{"share/pwned", "x"}}));
        CHECK_THROWS_WITH_AS(
            f.install({link, evil}),
            doctest::Contains(("\"share\" is a symlink to " + outside.string() + ", outside the prefix").c_str()),
            Error);
    }
    SUBCASE("... or to a relative path that climbs out") {
        const PackageRecord link =
            f.channel.add(package("link", "1.0", "h0_0", {{"share/up", {{"symlink", "../../../outside"}}}}));
        const PackageRecord evil = f.channel.add(package("evil", "1.0", "h0_0", {{"share/up/pwned", "x"}}));
        CHECK_THROWS_WITH_AS(f.install({link, evil}), doctest::Contains("leads out of the prefix"), Error);
    }
    CHECK(fs::is_empty(outside));
    CHECK_FALSE(fs::exists(f.temp.path() / "pwned"));
}

TEST_CASE("install: a prefix longer than a binary placeholder is an error naming file and package") {
    Fixture f;
    const PackageRecord a = f.channel.add(package(
        "liba", "1.0", "h0_0", {{"lib/liba.so", base64_file("x" + placeholder.substr(0, 40) + std::string(1, '\0'))}},
        {{"placeholder", {{"lib/liba.so", {{"mode", "binary"}, {"placeholder", placeholder.substr(0, 40)}}}}}}));
    const std::string long_prefix = "/opt/" + std::string(60, 'p');
    CHECK_THROWS_WITH_AS(f.install({a}, "root", long_prefix),
                         doctest::Contains("package liba-1.0-h0_0: \"lib/liba.so\": the prefix"), Error);
}

TEST_CASE("install: legacy packages without paths.json (info/files, info/has_prefix)") {
    Fixture f;
    Json spec = package("old", "0.1", "0",
                        {{"bin/old", "#!/opt/anaconda1anaconda2anaconda3/bin/python\n"},
                         {"lib/libold.so", base64_file(std::string("A") + placeholder + std::string(1, '\0') + "B")},
                         {"lib/libold.so.0", {{"symlink", "libold.so"}}}},
                        {{"placeholder",
                          {{"bin/old", {{"mode", "text"}, {"placeholder", "/opt/anaconda1anaconda2anaconda3"}}},
                           {"lib/libold.so", "binary"}}}});
    spec["legacy"] = true;
    spec["fmt"] = "tar.bz2";
    const PackageRecord old = f.channel.add(spec);
    const fs::path prefix = f.install({old});
    CHECK(slurp(prefix / "bin/old") == "#!/opt/conda/bin/python\n");
    CHECK(slurp(prefix / "lib/libold.so") == "A/opt/conda" + std::string(1 + placeholder.size() - 10, '\0') + "B");
    CHECK(fs::is_symlink(prefix / "lib/libold.so.0"));
    const Json m = meta(prefix, old);
    CHECK((*paths_entry(m, "lib/libold.so.0"))["path_type"] == "softlink");
    CHECK((*paths_entry(m, "bin/old"))["prefix_placeholder"] == "/opt/anaconda1anaconda2anaconda3");
}

TEST_CASE("install: the same packages give the same bytes, whatever the cache") {
    Fixture f;
    const PackageRecord python = f.channel.add(package("python", "3.11.0", "h0", {{"bin/python3.11", "elf"}}));
    const PackageRecord a =
        f.channel.add(package("liba", "1.0", "h0_0", {{"etc/a", placeholder}, {"lib/l", {{"symlink", "x"}}}},
                              {{"placeholder", {{"etc/a", "text"}}}}));
    const PackageRecord n =
        f.channel.add(package("n", "1.0", "py_0", {{"site-packages/n.py", "n"}},
                              {{"noarch", "python"}, {"entry_points", Json::array({"n = n:main"})}}));
    const fs::path one = f.install({python, a, n}, "one", "/opt/conda", {"n"});
    f.options.package_cache = f.temp.path() / "other-cache";
    f.options.jobs = 1;
    const fs::path two = f.install({python, a, n}, "two", "/opt/conda", {"n"});
    CHECK(tree(one) == tree(two));
    CHECK(tree(one).count("conda-meta/n-1.0-py_0.json") == 1);
}

TEST_CASE("install: post-link scripts are not run but reported; later packages replace files") {
    Fixture f;
    const PackageRecord a = f.channel.add(
        package("liba", "1.0", "h0_0", {{"bin/.liba-post-link.sh", "touch /x\n"}, {"share/common", "a"}}));
    const PackageRecord b = f.channel.add(package("libb", "1.0", "h0_0", {{"share/common", "b"}}));
    const fs::path prefix = f.install({a, b});
    CHECK(slurp(prefix / "share/common") == "b");
    bool warned = false;
    for (const std::string& line : f.log) {
        if (line.find("post-link script (bin/.liba-post-link.sh)") != std::string::npos) warned = true;
    }
    CHECK(warned);
}

TEST_CASE("install: a relative prefix is refused") {
    Fixture f;
    CHECK_THROWS_WITH_AS(f.install({}, "root", "opt/conda"), doctest::Contains("must be an absolute path"), Error);
}

TEST_CASE("install: concurrent installs share one cache") {
    Fixture f;
    std::vector<PackageRecord> packages;
    for (int i = 0; i < 4; ++i) {
        const std::string name = "pkg" + std::to_string(i);
        packages.push_back(f.channel.add(
            package(name, "1.0", "h0_0", {{"share/" + name, name}}, {{"fmt", i % 2 == 0 ? "conda" : "tar.bz2"}})));
    }
    std::vector<std::string> errors(3);
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&, t] {
            try {
                InstallOptions options;
                options.package_cache = f.cache;
                options.jobs = 2;
                const fs::path root = f.temp.path() / ("concurrent" + std::to_string(t));
                fs::create_directories(root);
                ocibuild::conda::install(packages, root, "/opt/conda", {}, options);
            } catch (const std::exception& e) {
                errors[t] = e.what();
            }
        });
    }
    for (std::thread& t : threads) t.join();
    for (const std::string& e : errors) CHECK(e.empty());
    CHECK(tree(f.temp.path() / "concurrent0") == tree(f.temp.path() / "concurrent1"));
    CHECK(tree(f.temp.path() / "concurrent0") == tree(f.temp.path() / "concurrent2"));
    CHECK(tree(f.temp.path() / "concurrent0").count("opt/conda/share/pkg3") == 1);
    CHECK(fs::is_empty(f.cache / "tmp"));
}

TEST_CASE("install: a package may write through an earlier package's symlink that stays in the prefix") {
    Fixture f;
    const PackageRecord base = f.channel.add(package(
        "base", "1.0", "h0_0",
        {{"lib/.keep", ""}, {"lib64", {{"symlink", "lib"}}}, {"etc/conf.d", {{"symlink", "/opt/conda/share/conf"}}}}));
    const PackageRecord user =
        f.channel.add(package("user", "1.0", "h0_0", {{"lib64/libu.so", "u"}, {"etc/conf.d/u", "c"}}));
    const fs::path prefix = f.install({base, user});
    CHECK(slurp(prefix / "lib/libu.so") == "u");
    CHECK(fs::is_symlink(prefix / "lib64"));
    CHECK(slurp(prefix / "share/conf/u") == "c");
    CHECK(meta(prefix, user)["files"] == Json::array({"etc/conf.d/u", "lib64/libu.so"}));
}

TEST_CASE("install: archives that are not conda packages are refused, naming the package") {
    Fixture f;
    const fs::path dir = f.channel.dir() / "linux-64";
    fs::create_directories(dir);
    auto record_for = [&](const std::string& fn, const std::string& data) {
        spit(dir / fn, data);
        PackageRecord r;
        r.name = "junk";
        r.version = "1";
        r.build = "0";
        r.subdir = "linux-64";
        r.fn = fn;
        r.url = "file://" + (dir / fn).string();
        r.sha256 = sha256_hex(data);
        return r;
    };
    CHECK_THROWS_WITH_AS(f.install({record_for("junk-1-0.conda", "not a zip at all")}),
                         doctest::Contains("package junk-1-0"), Error);
    CHECK_THROWS_WITH_AS(f.install({record_for("junk-1-0.tar.bz2", "not bzip2 either")}),
                         doctest::Contains("package junk-1-0"), Error);
    CHECK_THROWS_WITH_AS(f.install({record_for("junk-1-0.whl", "PK")}),
                         doctest::Contains("unknown package format \"junk-1-0.whl\""), Error);
    CHECK(fs::is_empty(f.cache / "pkgs"));
    CHECK(fs::is_empty(f.cache / "tmp"));
}

TEST_CASE("install: a paths.json naming a file the package lacks stops linking, naming both") {
    Fixture f;
    f.options.jobs = 4;
    Json files = Json::object();
    Json paths = Json::array();
    for (int i = 0; i < 200; ++i) {
        const std::string path = "share/many/f" + std::to_string(i);
        files[path] = std::string(1000, 'x');
        paths.push_back({{"_path", path}, {"path_type", "hardlink"}});
    }
    paths.push_back({{"_path", "share/missing"}, {"path_type", "hardlink"}});
    const Json paths_json = {{"paths_version", 1}, {"paths", paths}};
    const PackageRecord bad =
        f.channel.add(package("bad", "1.0", "h0_0", files, {{"extra_info", {{"info/paths.json", paths_json.dump()}}}}));
    CHECK_THROWS_WITH_AS(f.install({bad}),
                         doctest::Contains("package bad-1.0-h0_0: the package lists \"share/missing\" but does not "
                                           "contain it"),
                         Error);
}

TEST_CASE("install: old noarch packages name entry points in info/noarch.json") {
    Fixture f;
    const PackageRecord python = f.channel.add(package("python", "3.10.2", "h0", {{"bin/python3.10", "elf"}}));
    const PackageRecord old = f.channel.add(package(
        "oldtool", "0.9", "py_0", {{"site-packages/oldtool.py", "def main(): pass\n"}},
        {{"noarch", "python"},
         {"link_json", false},
         {"extra_info", {{"info/noarch.json", R"({"type": "python", "entry_points": ["oldtool = oldtool:main"]})"}}}}));
    const fs::path prefix = f.install({python, old});
    CHECK(slurp(prefix / "bin/oldtool").starts_with("#!/opt/conda/bin/python3.10\n"));
}

TEST_CASE("install: a missing file:// artifact is named with its package") {
    Fixture f;
    PackageRecord a = f.channel.add(package("liba", "1.0", "h0_0", {{"lib/a", "a"}}));
    fs::remove(a.url.substr(7));
    CHECK_THROWS_WITH_AS(f.install({a}),
                         doctest::Contains(("package liba-1.0-h0_0: cannot open " + a.url.substr(7)).c_str()), Error);
}

TEST_CASE("install: an unreachable server is retried, then named with the package") {
    Fixture f;
    ocibuild::registry::HttpClient http;
    f.options.http = &http;
    PackageRecord a;
    a.name = "liba";
    a.version = "1.0";
    a.build = "h0_0";
    a.subdir = "linux-64";
    a.fn = "liba-1.0-h0_0.conda";
    a.url = "http://127.0.0.1:1/linux-64/" + a.fn;  // nothing listens on port 1
    a.sha256 = std::string(64, 'a');
    try {
        f.install({a});
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unavailable);
        CHECK(std::string(e.what()).starts_with("package liba-1.0-h0_0: "));
        CHECK(std::string(e.what()).find(a.url) != std::string::npos);
    }
    int retries = 0;
    for (const std::string& line : f.log) retries += line.find("retrying") != std::string::npos ? 1 : 0;
    CHECK(retries == 2);
}
