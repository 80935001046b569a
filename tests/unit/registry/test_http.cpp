#include <doctest/doctest.h>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "loopback_server.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/sink.hpp"
#include "ocibuild/registry/http.hpp"

using namespace ocibuild;
using registry::HttpClient;
using registry::HttpRequest;
using test::CannedResponse;
using test::LoopbackServer;
using test::SeenRequest;

namespace {

class StringSink : public core::ByteSink {
public:
    void write(const void* data, std::size_t size) override { text.append(static_cast<const char*>(data), size); }
    std::string text;
};

class ThrowingSink : public core::ByteSink {
public:
    void write(const void*, std::size_t) override { throw std::runtime_error("disk full"); }
};

HttpRequest get(const std::string& url) {
    HttpRequest r;
    r.url = url;
    r.timeout_seconds = 30;
    return r;
}

// A port nobody listens on (bound, then released).
int closed_port() {
    LoopbackServer s([](const SeenRequest&) { return CannedResponse{}; });
    return s.port();
}

}  // namespace

TEST_CASE("resolve_url follows RFC 3986 section 5.4") {
    const std::string base = "http://a/b/c/d;p?q";
    const std::pair<const char*, const char*> cases[] = {
        {"g:h", "g:h"},
        {"g", "http://a/b/c/g"},
        {"./g", "http://a/b/c/g"},
        {"g/", "http://a/b/c/g/"},
        {"/g", "http://a/g"},
        {"//g", "http://g"},
        {"?y", "http://a/b/c/d;p?y"},
        {"g?y", "http://a/b/c/g?y"},
        {"#s", "http://a/b/c/d;p?q#s"},
        {"g?y#s", "http://a/b/c/g?y#s"},
        {";x", "http://a/b/c/;x"},
        {"", "http://a/b/c/d;p?q"},
        {".", "http://a/b/c/"},
        {"./", "http://a/b/c/"},
        {"..", "http://a/b/"},
        {"../g", "http://a/b/g"},
        {"../..", "http://a/"},
        {"../../g", "http://a/g"},
        {"../../../g", "http://a/g"},
        {"/./g", "http://a/g"},
        {"/../g", "http://a/g"},
        {"g.", "http://a/b/c/g."},
        {"..g", "http://a/b/c/..g"},
        {"./../g", "http://a/b/g"},
        {"./g/.", "http://a/b/c/g/"},
        {"g/./h", "http://a/b/c/g/h"},
        {"g/../h", "http://a/b/c/h"},
        {"g;x=1/../y", "http://a/b/c/y"},
    };
    for (const auto& [ref, want] : cases) {
        CAPTURE(std::string(ref));
        CHECK(registry::resolve_url(base, ref) == want);
    }
}

TEST_CASE("resolve_url handles registry upload locations") {
    const std::string post = "https://r.example:5000/v2/ml/pytorch/blobs/uploads/";
    CHECK(registry::resolve_url(post, "/v2/ml/pytorch/blobs/uploads/u1?_state=abc%3D") ==
          "https://r.example:5000/v2/ml/pytorch/blobs/uploads/u1?_state=abc%3D");
    CHECK(registry::resolve_url(post, "u1?_state=x") == "https://r.example:5000/v2/ml/pytorch/blobs/uploads/u1?_state=x");
    CHECK(registry::resolve_url(post, "https://storage.example/upload?sig=1&x=2") ==
          "https://storage.example/upload?sig=1&x=2");
    CHECK(registry::resolve_url(post, "//cdn.example/blob?sig=1") == "https://cdn.example/blob?sig=1");
    CHECK(registry::resolve_url("https://r.example", "v2/") == "https://r.example/v2/");
    CHECK(registry::resolve_url("https://r.example/v2/a/b/c", "../x") == "https://r.example/v2/a/x");
}

TEST_CASE("url_host and url_escape") {
    CHECK(registry::url_host("https://r.example:5000/v2/") == "r.example:5000");
    CHECK(registry::url_host("https://user:pw@r.example/v2/") == "r.example");
    CHECK(registry::url_host("http://[::1]:5000/v2/") == "[::1]:5000");
    CHECK(registry::url_host("https://auth.docker.io?x=1") == "auth.docker.io");
    CHECK(registry::url_escape("repository:ml/pytorch:pull,push") == "repository%3Aml%2Fpytorch%3Apull%2Cpush");
    CHECK(registry::url_escape("a b~._-Z9") == "a%20b~._-Z9");
    CHECK(registry::url_escape("\xff&=") == "%FF%26%3D");
}

TEST_CASE("a GET returns status, lower-cased headers and body") {
    LoopbackServer server([](const SeenRequest& r) {
        return CannedResponse{200, {{"Docker-Content-Digest", "sha256:x"}, {"X-Multi", "a"}, {"X-Multi", "b"}},
                              "hello " + r.target};
    });
    HttpClient http;
    auto req = get(server.url("/v2/?q=1"));
    req.headers = {{"Accept", "application/json"}};
    auto resp = http.perform(req);
    CHECK(resp.status == 200);
    CHECK(resp.body == "hello /v2/?q=1");
    CHECK(resp.url == server.url("/v2/?q=1"));
    CHECK(resp.header("Docker-Content-Digest") == "sha256:x");
    CHECK(resp.headers.count("x-multi") == 2);
    CHECK_FALSE(resp.header("missing").has_value());
    auto seen = server.requests();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].header("accept") == "application/json");
    CHECK(seen[0].header("user-agent").starts_with("ocibuild/"));
}

TEST_CASE("only a 2xx body goes to the response sink") {
    LoopbackServer server([](const SeenRequest& r) {
        return r.target == "/ok" ? CannedResponse{200, {}, "blob bytes"} : CannedResponse{404, {}, "{\"errors\":[]}"};
    });
    HttpClient http;
    StringSink sink;
    auto req = get(server.url("/ok"));
    req.response_sink = &sink;
    auto ok = http.perform(req);
    CHECK(ok.status == 200);
    CHECK(sink.text == "blob bytes");
    CHECK(ok.body.empty());

    sink.text.clear();
    req.url = server.url("/missing");
    auto missing = http.perform(req);
    CHECK(missing.status == 404);
    CHECK(sink.text.empty());
    CHECK(missing.body == "{\"errors\":[]}");
}

TEST_CASE("an exception from the sink reaches the caller") {
    LoopbackServer server([](const SeenRequest&) { return CannedResponse{200, {}, std::string(100000, 'x')}; });
    HttpClient http;
    ThrowingSink sink;
    auto req = get(server.url("/blob"));
    req.response_sink = &sink;
    CHECK_THROWS_WITH_AS(static_cast<void>(http.perform(req)), "disk full", std::runtime_error);
    // The handle goes back to the pool in a usable state.
    req.response_sink = nullptr;
    CHECK(http.perform(req).status == 200);
}

TEST_CASE("error bodies are capped at 4 MiB") {
    LoopbackServer server([](const SeenRequest&) { return CannedResponse{500, {}, std::string(5u << 20, 'e')}; });
    HttpClient http;
    auto resp = http.perform(get(server.url("/big")));
    CHECK(resp.status == 500);
    CHECK(resp.body.size() == (4u << 20));
}

TEST_CASE("a cross-origin redirect drops Authorization; a same-origin one keeps it") {
    LoopbackServer storage([](const SeenRequest&) { return CannedResponse{200, {}, "from storage"}; });
    LoopbackServer registry_server([&](const SeenRequest& r) {
        if (r.target == "/v2/a/blobs/x") return CannedResponse{307, {{"Location", storage.url("/blob?sig=s3cr3t")}}, ""};
        if (r.target == "/v2/a/manifests/t") return CannedResponse{301, {{"Location", "../manifests/u"}}, ""};
        return CannedResponse{200, {}, "same host"};
    });
    HttpClient http;

    auto req = get(registry_server.url("/v2/a/blobs/x"));
    req.headers = {{"Authorization", "Bearer tok"}, {"Accept", "*/*"}};
    auto resp = http.perform(req);
    CHECK(resp.status == 200);
    CHECK(resp.body == "from storage");
    CHECK(resp.url == storage.url("/blob?sig=s3cr3t"));
    REQUIRE(storage.requests().size() == 1);
    CHECK_FALSE(storage.requests()[0].has_header("authorization"));
    CHECK(storage.requests()[0].header("accept") == "*/*");
    CHECK(storage.requests()[0].target == "/blob?sig=s3cr3t");

    req.url = registry_server.url("/v2/a/manifests/t");
    resp = http.perform(req);
    CHECK(resp.body == "same host");
    auto seen = registry_server.requests();
    REQUIRE(seen.size() == 3);
    CHECK(seen[2].target == "/v2/a/manifests/u");
    CHECK(seen[2].header("authorization") == "Bearer tok");

    SUBCASE("follow_redirects = false returns the redirect") {
        req.follow_redirects = false;
        CHECK(http.perform(req).status == 301);
    }
}

TEST_CASE("303 turns a POST into a GET without body; endless redirects fail") {
    LoopbackServer server([](const SeenRequest& r) {
        if (r.target == "/post") return CannedResponse{303, {{"Location", "/done"}}, ""};
        if (r.target.starts_with("/loop")) return CannedResponse{302, {{"Location", "/loop"}}, ""};
        return CannedResponse{200, {}, r.method};
    });
    HttpClient http;
    HttpRequest req = get(server.url("/post"));
    req.method = "POST";
    req.body = "payload";
    req.headers = {{"Content-Type", "text/plain"}};
    auto resp = http.perform(req);
    CHECK(resp.body == "GET");
    auto seen = server.requests();
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].body == "payload");
    CHECK(seen[0].header("content-type") == "text/plain");
    CHECK(seen[1].body.empty());
    CHECK_FALSE(seen[1].has_header("content-type"));

    try {
        static_cast<void>(http.perform(get(server.url("/loop"))));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::unavailable);
        CHECK(std::string(e.what()).find("redirects") != std::string::npos);
    }
}

TEST_CASE("request bodies: streamed, in memory, and empty") {
    LoopbackServer server([](const SeenRequest& r) { return CannedResponse{201, {}, std::to_string(r.body.size())}; });
    HttpClient http;

    SUBCASE("a streamed PATCH arrives intact") {
        std::string payload;
        for (int i = 0; payload.size() < (3u << 20) + 7; ++i) payload += std::to_string(i) + ",";
        std::size_t offset = 0;
        HttpRequest req = get(server.url("/upload"));
        req.method = "PATCH";
        req.body_size = static_cast<std::int64_t>(payload.size());
        req.body_reader = [&](char* buf, std::size_t max) {
            std::size_t n = std::min({max, std::size_t{1000}, payload.size() - offset});
            std::copy_n(payload.data() + offset, n, buf);
            offset += n;
            return n;
        };
        auto resp = http.perform(req);
        CHECK(resp.status == 201);
        auto seen = server.requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].method == "PATCH");
        CHECK(seen[0].header("content-length") == std::to_string(payload.size()));
        CHECK_FALSE(seen[0].has_header("expect"));
        CHECK(seen[0].body == payload);
    }
    SUBCASE("a streamed POST") {
        std::string payload(200000, 'p');
        std::size_t offset = 0;
        HttpRequest req = get(server.url("/post"));
        req.method = "POST";
        req.body_size = static_cast<std::int64_t>(payload.size());
        req.body_reader = [&](char* buf, std::size_t max) {
            std::size_t n = std::min(max, payload.size() - offset);
            std::copy_n(payload.data() + offset, n, buf);
            offset += n;
            return n;
        };
        CHECK(http.perform(req).status == 201);
        auto seen = server.requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].method == "POST");
        CHECK(seen[0].body == payload);
        CHECK_FALSE(seen[0].has_header("content-type"));  // not curl's form default
    }
    SUBCASE("an empty PUT sends Content-Length: 0 without waiting for 100-continue") {
        HttpRequest req = get(server.url("/v2/a/blobs/uploads/u?digest=sha256%3Aabc"));
        req.method = "PUT";
        auto start = std::chrono::steady_clock::now();
        CHECK(http.perform(req).status == 201);
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(900));
        auto seen = server.requests();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].method == "PUT");
        CHECK(seen[0].header("content-length") == "0");
        CHECK_FALSE(seen[0].has_header("expect"));
        CHECK_FALSE(seen[0].has_header("transfer-encoding"));
    }
    SUBCASE("an in-memory PUT and a DELETE") {
        HttpRequest req = get(server.url("/m"));
        req.method = "PUT";
        req.body = std::string(2u << 20, 'm');
        req.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}};
        CHECK(http.perform(req).body == std::to_string(2u << 20));
        HttpRequest del = get(server.url("/d"));
        del.method = "DELETE";
        CHECK(http.perform(del).status == 201);
        auto seen = server.requests();
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].header("content-type") == "application/vnd.oci.image.manifest.v1+json");
        CHECK_FALSE(seen[0].has_header("expect"));
        CHECK(seen[1].method == "DELETE");
    }
    SUBCASE("HEAD") {
        HttpRequest req = get(server.url("/h"));
        req.method = "HEAD";
        auto resp = http.perform(req);
        CHECK(resp.status == 201);
        CHECK(resp.body.empty());
        CHECK(server.requests().at(0).method == "HEAD");
    }
}

TEST_CASE("transport errors are 'unavailable' and never show userinfo or query") {
    HttpClient http;
    const int port = closed_port();
    auto req = get("http://user:s3cr3t@127.0.0.1:" + std::to_string(port) + "/v2/x?sig=t0ken");
    req.headers = {{"Authorization", "Bearer t0ken"}};
    try {
        static_cast<void>(http.perform(req));
        FAIL("no exception");
    } catch (const core::Error& e) {
        const std::string msg = e.what();
        CHECK(e.category() == core::ErrorCategory::unavailable);
        CHECK(msg.starts_with("GET http://127.0.0.1:" + std::to_string(port) + "/v2/x?...: "));
        CHECK(msg.find("s3cr3t") == std::string::npos);
        CHECK(msg.find("t0ken") == std::string::npos);
    }
}

TEST_CASE("perform is thread-safe") {
    LoopbackServer server([](const SeenRequest& r) { return CannedResponse{200, {}, r.target}; });
    HttpClient http;
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 5; ++i) {
                std::string path = "/t" + std::to_string(t) + "/" + std::to_string(i);
                if (http.perform(get(server.url(path))).body == path) ++good;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(good == 20);
}

TEST_CASE("unusable requests are invalid input, not retryable") {
    LoopbackServer server([](const SeenRequest&) { return CannedResponse{302, {{"Location", "ftp://elsewhere/x"}}, ""}; });
    HttpClient http;
    auto req = get(server.url("/x"));
    try {
        static_cast<void>(http.perform(req));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()).starts_with("GET ftp://elsewhere/x: "));
    }
    req.headers = {{"Authorization", "Bearer x\r\nX-Injected: 1"}};
    try {
        static_cast<void>(http.perform(req));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()).find("X-Injected") == std::string::npos);
    }
    CHECK(server.requests().size() == 1);
}
