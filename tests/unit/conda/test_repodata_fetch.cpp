#include <doctest/doctest.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../registry/loopback_server.hpp"
#include "ocibuild/conda/repodata_fetch.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"

using ocibuild::conda::Channel;
using ocibuild::conda::ChannelConfig;
using ocibuild::conda::FetchOptions;
using ocibuild::conda::load_channels;
using ocibuild::conda::load_repodata;
using ocibuild::conda::RepoData;
using ocibuild::core::Error;
using ocibuild::core::ErrorCategory;
using ocibuild::test::CannedResponse;
using ocibuild::test::LoopbackServer;
using ocibuild::test::SeenRequest;

namespace {

// A zstd frame without a content size, as streaming compressors write it.
std::string zstd(const std::string& text) {
    ZSTD_CCtx* ctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 0);
    std::string out(ZSTD_compressBound(text.size()) + 64, '\0');
    ZSTD_inBuffer in{text.data(), text.size(), 0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    while (ZSTD_compressStream2(ctx, &o, &in, ZSTD_e_end) != 0) {
    }
    ZSTD_freeCCtx(ctx);
    out.resize(o.pos);
    REQUIRE(ZSTD_getFrameContentSize(out.data(), out.size()) == ZSTD_CONTENTSIZE_UNKNOWN);
    return out;
}

std::string repodata(const std::string& subdir, const std::vector<std::string>& names) {
    std::string out = R"({"info": {"subdir": ")" + subdir + R"("}, "packages.conda": {)";
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out += ",";
        out += "\"" + names[i] + "-1.0-0.conda\": {\"name\": \"" + names[i] + R"(", "version": "1.0", "build": "0"})";
    }
    return out + "}}";
}

std::vector<std::string> dists(const RepoData& r) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < r.size(); ++i) out.push_back(r.record(i).url);
    return out;
}

/// Serves files from a map with ETag and Last-Modified, answering 304 to a matching
/// If-None-Match; paths not in the map are 404; `status_override` answers everything.
class RepoServer {
public:
    RepoServer()
        : server_([this](const SeenRequest& req) { return answer(req); }) {}

    void put(const std::string& path, std::string body) {
        std::lock_guard lock(mutex_);
        files_[path] = std::move(body);
        ++version_;
    }
    void fail_with(int status) {
        std::lock_guard lock(mutex_);
        status_override_ = status;
    }
    [[nodiscard]] std::string url(const std::string& path = "") const { return server_.url(path); }
    [[nodiscard]] std::vector<std::string> targets() const {
        std::vector<std::string> out;
        for (const auto& r : server_.requests()) out.push_back(r.target);
        return out;
    }
    [[nodiscard]] std::vector<SeenRequest> requests() const { return server_.requests(); }

private:
    CannedResponse answer(const SeenRequest& req) {
        std::lock_guard lock(mutex_);
        if (status_override_ != 0) return {status_override_, {}, "unavailable"};
        auto it = files_.find(req.target);
        if (it == files_.end()) return {404, {}, "not found"};
        const std::string etag = "\"v" + std::to_string(version_) + "-" + std::to_string(it->second.size()) + "\"";
        const std::string modified = "Wed, 01 May 2024 10:00:00 GMT";
        if (req.header("if-none-match") == etag) return {304, {{"ETag", etag}}, ""};
        return {200, {{"ETag", etag}, {"Last-Modified", modified}}, it->second};
    }

    std::mutex mutex_;
    std::map<std::string, std::string> files_;
    int version_ = 0;
    int status_override_ = 0;
    LoopbackServer server_;  // last: its thread stops before the state above goes
};

struct Fixture {
    ocibuild::core::TempDir tmp;
    ocibuild::registry::HttpClient http;
    FetchOptions options;
    std::vector<std::string> logs;

    Fixture() {
        options.http = &http;
        options.cache_dir = tmp.path() / "cache";
        options.log = [this](std::string_view line) { logs.emplace_back(line); };
    }
    Channel channel(const std::string& url) const { return Channel::parse(url, options.channels, tmp.path()); }
};

std::string error_of(const std::function<void()>& fn, ErrorCategory category) {
    try {
        fn();
    } catch (const Error& e) {
        CHECK(e.category() == category);
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("load_repodata prefers repodata.json.zst and falls back to repodata.json") {
    RepoServer server;
    server.put("/chan/linux-64/repodata.json.zst", zstd(repodata("linux-64", {"from-zst"})));
    server.put("/chan/linux-64/repodata.json", repodata("linux-64", {"from-json"}));
    server.put("/chan/noarch/repodata.json", repodata("noarch", {"plain"}));
    Fixture f;
    const Channel chan = f.channel(server.url("/chan"));

    const RepoData linux = load_repodata(chan, "linux-64", f.options);
    CHECK(dists(linux) == std::vector<std::string>{server.url("/chan/linux-64/from-zst-1.0-0.conda")});
    CHECK(linux.channel_url() == server.url("/chan"));
    CHECK(server.targets() == std::vector<std::string>{"/chan/linux-64/repodata.json.zst"});

    const RepoData noarch = load_repodata(chan, "noarch", f.options);
    CHECK(dists(noarch) == std::vector<std::string>{server.url("/chan/noarch/plain-1.0-0.conda")});
    CHECK(server.targets() == std::vector<std::string>{"/chan/linux-64/repodata.json.zst",
                                                       "/chan/noarch/repodata.json.zst", "/chan/noarch/repodata.json"});
    CHECK(f.logs.size() == 2);
    CHECK(f.logs[0].starts_with("repodata: " + server.url("/chan") + "/linux-64 (200, "));
}

TEST_CASE("load_repodata revalidates its cache with If-None-Match and uses it on 304") {
    RepoServer server;
    server.put("/chan/linux-64/repodata.json.zst", zstd(repodata("linux-64", {"a", "b"})));
    server.put("/chan/noarch/repodata.json", repodata("noarch", {"n"}));
    Fixture f;
    const Channel chan = f.channel(server.url("/chan"));

    const RepoData first = load_repodata(chan, "linux-64", f.options);
    const RepoData second = load_repodata(chan, "linux-64", f.options);
    CHECK(dists(first).size() == 2);
    CHECK(dists(second) == dists(first));
    const auto requests = server.requests();
    REQUIRE(requests.size() == 2);
    CHECK_FALSE(requests[0].has_header("if-none-match"));
    CHECK(requests[1].header("if-none-match").starts_with("\"v"));
    CHECK(requests[1].header("if-modified-since") == "Wed, 01 May 2024 10:00:00 GMT");
    CHECK(f.logs.back() == "repodata: " + server.url("/chan") + "/linux-64 (304, cached)");

    // A changed file is fetched again (and replaces the cache).
    server.put("/chan/linux-64/repodata.json.zst", zstd(repodata("linux-64", {"c"})));
    CHECK(dists(load_repodata(chan, "linux-64", f.options)) ==
          std::vector<std::string>{server.url("/chan/linux-64/c-1.0-0.conda")});
    CHECK(dists(load_repodata(chan, "linux-64", f.options)) ==
          std::vector<std::string>{server.url("/chan/linux-64/c-1.0-0.conda")});
    CHECK(f.logs.back().ends_with("(304, cached)"));

    // A server without .zst is not asked for it again while the cache remembers.
    (void)load_repodata(chan, "noarch", f.options);
    const std::size_t before = server.requests().size();
    CHECK(dists(load_repodata(chan, "noarch", f.options)) == std::vector<std::string>{server.url("/chan/noarch/n-1.0-0.conda")});
    CHECK(server.targets().size() == before + 1);
    CHECK(server.targets().back() == "/chan/noarch/repodata.json");
    CHECK(server.requests().back().has_header("if-none-match"));
}

TEST_CASE("load_repodata offline uses the cache only") {
    RepoServer server;
    server.put("/chan/linux-64/repodata.json.zst", zstd(repodata("linux-64", {"a"})));
    Fixture f;
    const Channel chan = f.channel(server.url("/chan"));
    const RepoData online = load_repodata(chan, "linux-64", f.options);
    (void)load_repodata(chan, "linux-aarch64", f.options);  // 404: cached as missing
    const std::size_t requests = server.requests().size();

    FetchOptions offline = f.options;
    offline.offline = true;
    offline.http = nullptr;
    CHECK(dists(load_repodata(chan, "linux-64", offline)) == dists(online));
    CHECK(f.logs.back() == "repodata: " + server.url("/chan") + "/linux-64 (offline, cached)");
    CHECK(load_repodata(chan, "linux-aarch64", offline).size() == 0);
    CHECK(server.requests().size() == requests);
    CHECK(error_of([&] { (void)load_repodata(chan, "noarch", offline); }, ErrorCategory::not_found) ==
          "repodata of " + server.url("/chan") + "/noarch is not cached (offline): " +
              server.url("/chan/noarch/repodata.json"));
}

TEST_CASE("load_repodata tries mirrors in order: a dead or failing mirror moves on") {
    RepoServer origin, failing, mirror;
    origin.put("/chan/linux-64/repodata.json", repodata("linux-64", {"origin"}));
    mirror.put("/m/chan/linux-64/repodata.json", repodata("linux-64", {"mirrored"}));
    failing.fail_with(503);
    Fixture f;
    const std::string origin_root = origin.url("/chan");
    f.options.channels.mirrors[origin.url("")] = {"http://127.0.0.1:1/dead", failing.url("/x"), mirror.url("/m")};
    const Channel chan = f.channel(origin_root);
    const RepoData r = load_repodata(chan, "linux-64", f.options);
    // Records keep the channel's own URLs; only the transfer used the mirror.
    CHECK(dists(r) == std::vector<std::string>{origin_root + "/linux-64/mirrored-1.0-0.conda"});
    CHECK(r.record(0).channel == origin_root);
    CHECK(failing.targets() == std::vector<std::string>{"/x/chan/linux-64/repodata.json.zst", "/x/chan/linux-64/repodata.json"});
    CHECK(mirror.targets() == std::vector<std::string>{"/m/chan/linux-64/repodata.json.zst", "/m/chan/linux-64/repodata.json"});
    CHECK(origin.targets().empty());

    mirror.fail_with(500);
    origin.fail_with(502);
    const std::string message = error_of([&] { (void)load_repodata(chan, "noarch", f.options); }, ErrorCategory::unavailable);
    CHECK(message.starts_with("fetching " + origin_root + "/noarch/repodata.json.zst failed from every mirror; "));
    CHECK(message.find(mirror.url("/m/chan/noarch/repodata.json.zst") + ": HTTP 500") != std::string::npos);
    CHECK(message.ends_with(origin_root + "/noarch/repodata.json.zst: HTTP 502"));
}

TEST_CASE("load_repodata: a missing subdir is empty, a missing noarch means no channel") {
    RepoServer server;
    Fixture f;
    const Channel chan = f.channel(server.url("/nope"));
    const RepoData linux = load_repodata(chan, "linux-64", f.options);
    CHECK(linux.size() == 0);
    CHECK(linux.subdir() == "linux-64");
    CHECK(error_of([&] { (void)load_repodata(chan, "noarch", f.options); }, ErrorCategory::not_found) ==
          "channel " + server.url("/nope") + " not found: " + server.url("/nope/noarch/repodata.json") + ": HTTP 404");
    CHECK(error_of([&] { (void)load_channels({chan}, "linux-64", f.options); }, ErrorCategory::not_found)
              .starts_with("channel " + server.url("/nope") + " not found"));
}

TEST_CASE("load_repodata: corrupt data and HTTP errors name the URL, never credentials") {
    RepoServer server;
    server.put("/chan/noarch/repodata.json", R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": 1}}})");
    server.put("/chan/linux-64/repodata.json.zst", "not zstd at all");
    Fixture f;
    const Channel chan = f.channel(server.url("/chan"));
    CHECK(error_of([&] { (void)load_repodata(chan, "noarch", f.options); }, ErrorCategory::invalid_input) ==
          server.url("/chan/noarch/repodata.json") +
              ": byte 56: packages \"a-1-0.tar.bz2\" field \"version\": The JSON element does not have the requested type.");
    CHECK(error_of([&] { (void)load_repodata(chan, "linux-64", f.options); }, ErrorCategory::invalid_input) ==
          server.url("/chan/linux-64/repodata.json.zst") + ": zstd: Unknown frame descriptor");

    const std::string secret_root = "http://user:s3cret@127.0.0.1:" + std::to_string(std::stoi(server.url("").substr(17))) + "/t/tok-123/chan";
    const Channel secret = f.channel(secret_root);
    server.fail_with(403);
    const std::string denied = error_of([&] { (void)load_repodata(secret, "noarch", f.options); }, ErrorCategory::unauthorized);
    CHECK(denied == "fetching " + server.url("/t/<token>/chan/noarch/repodata.json.zst") + ": HTTP 403");
    server.fail_with(418);
    const std::string teapot = error_of([&] { (void)load_repodata(secret, "noarch", f.options); }, ErrorCategory::unavailable);
    CHECK(teapot.ends_with(": HTTP 418"));
    CHECK(teapot.find("s3cret") == std::string::npos);
    CHECK(teapot.find("tok-123") == std::string::npos);
    CHECK(server.requests().back().header("authorization").starts_with("Basic "));
    server.fail_with(404);
    CHECK(error_of([&] { (void)load_repodata(secret, "noarch", f.options); }, ErrorCategory::not_found) ==
          "channel " + server.url("/t/<token>/chan") + " not found: " + server.url("/t/<token>/chan/noarch/repodata.json") +
              ": HTTP 404");
}

TEST_CASE("load_repodata: data that does not parse is not kept in the cache") {
    RepoServer server;
    server.put("/chan/noarch/repodata.json", R"({"packages": {"a-1-0.tar.bz2": {"name": "a", "version": 1}}})");
    Fixture f;
    const Channel chan = f.channel(server.url("/chan"));
    CHECK(error_of([&] { (void)load_repodata(chan, "noarch", f.options); }, ErrorCategory::invalid_input)
              .starts_with(server.url("/chan/noarch/repodata.json") + ": byte 56:"));
    // The next load asks for the whole file again (no If-None-Match a 304 could answer with the
    // corrupt copy) and, the server fixed, succeeds.
    server.put("/chan/noarch/repodata.json", repodata("noarch", {"a"}));
    CHECK(dists(load_repodata(chan, "noarch", f.options)) == std::vector<std::string>{server.url("/chan/noarch/a-1.0-0.conda")});
    CHECK_FALSE(server.requests().back().has_header("if-none-match"));
    // Offline, nothing corrupt was left to fall back on either: the good copy is what is cached now.
    f.options.offline = true;
    CHECK(dists(load_repodata(chan, "noarch", f.options)).size() == 1);
}

TEST_CASE("load_channels reads file:// channels in place and keeps priority order") {
    RepoServer server;
    server.put("/web/linux-64/repodata.json", repodata("linux-64", {"w"}));
    server.put("/web/noarch/repodata.json.zst", zstd(repodata("noarch", {"wn"})));
    Fixture f;
    const auto local = f.tmp.path() / "local chan";
    std::filesystem::create_directories(local / "noarch");
    std::filesystem::create_directories(local / "linux-64");
    std::ofstream(local / "noarch" / "repodata.json.zst") << zstd(repodata("noarch", {"ln"}));
    std::ofstream(local / "linux-64" / "repodata.json") << repodata("linux-64", {"l"});

    const std::vector<Channel> channels{f.channel("./local chan"), f.channel(server.url("/web"))};
    CHECK(channels[0].url == "file://" + f.tmp.path().string() + "/local%20chan");
    const auto result = load_channels(channels, "linux-64", f.options);
    REQUIRE(result.size() == 2);
    REQUIRE(result[0].size() == 2);
    CHECK(dists(result[0][0]) == std::vector<std::string>{channels[0].url + "/linux-64/l-1.0-0.conda"});
    CHECK(dists(result[0][1]) == std::vector<std::string>{channels[0].url + "/noarch/ln-1.0-0.conda"});
    CHECK(result[0][1].subdir() == "noarch");
    CHECK(dists(result[1][0]) == std::vector<std::string>{server.url("/web/linux-64/w-1.0-0.conda")});
    CHECK(dists(result[1][1]) == std::vector<std::string>{server.url("/web/noarch/wn-1.0-0.conda")});
    CHECK(std::count(f.logs.begin(), f.logs.end(), "repodata: ./local chan/linux-64 (file)") == 1);
    CHECK(f.logs.size() == 4);
    // Nothing of a file:// channel goes to the cache.
    CHECK(std::distance(std::filesystem::directory_iterator(f.options.cache_dir), {}) == 4);  // web: 2 × (meta + body)

    CHECK(load_repodata(channels[0], "linux-aarch64", f.options).size() == 0);
    std::filesystem::remove(local / "noarch" / "repodata.json.zst");
    CHECK(error_of([&] { (void)load_repodata(channels[0], "noarch", f.options); }, ErrorCategory::not_found) ==
          "channel ./local chan not found: " + channels[0].url + "/noarch/repodata.json: no such file (nor repodata.json.zst)");
    // Only noarch asked for: one RepoData per channel.
    std::filesystem::create_directories(local / "noarch");
    std::ofstream(local / "noarch" / "repodata.json") << repodata("noarch", {"ln2"});
    const auto only_noarch = load_channels({channels[0]}, "noarch", f.options);
    REQUIRE(only_noarch.size() == 1);
    CHECK(only_noarch[0].size() == 1);
}

TEST_CASE("load_repodata decompresses concatenated zstd frames and refuses truncated ones") {
    Fixture f;
    const auto dir = f.tmp.path() / "chan" / "noarch";
    std::filesystem::create_directories(dir);
    const std::string json = repodata("noarch", {"a", "b", "c"});
    const std::size_t half = json.size() / 2;
    std::ofstream(dir / "repodata.json.zst") << zstd(json.substr(0, half)) + zstd(json.substr(half));
    const Channel chan = f.channel(f.tmp.path().string() + "/chan");
    CHECK(load_repodata(chan, "noarch", f.options).size() == 3);

    const std::string whole = zstd(json);
    std::ofstream(dir / "repodata.json.zst", std::ios::trunc) << whole.substr(0, whole.size() - 5);
    CHECK(error_of([&] { (void)load_repodata(chan, "noarch", f.options); }, ErrorCategory::invalid_input) ==
          (dir / "repodata.json.zst").string() + ": zstd: truncated data");
}
