#include <doctest/doctest.h>

#include "loopback_server.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/registry/auth.hpp"

using namespace ocibuild;
using registry::Authenticator;
using registry::Challenge;
using registry::Credential;
using registry::HttpClient;
using registry::HttpResponse;
using test::CannedResponse;
using test::LoopbackServer;
using test::SeenRequest;

namespace {

HttpResponse unauthorized(const std::string& challenge) {
    HttpResponse r;
    r.status = 401;
    r.headers.emplace("www-authenticate", challenge);
    return r;
}

std::string query_of(const std::string& target) {
    auto q = target.find('?');
    return q == std::string::npos ? std::string() : target.substr(q + 1);
}

}  // namespace

TEST_CASE("Challenge::parse: the Docker Hub challenge, scope with commas") {
    auto cs = Challenge::parse(
        R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push")");
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].scheme == "bearer");
    CHECK(cs[0].params.size() == 3);
    CHECK(cs[0].params.at("realm") == "https://auth.docker.io/token");
    CHECK(cs[0].params.at("service") == "registry.docker.io");
    CHECK(cs[0].params.at("scope") == "repository:samalba/my-app:pull,push");
}

TEST_CASE("Challenge::parse: corner cases") {
    SUBCASE("realm with a query") {
        auto cs = Challenge::parse(R"(Bearer realm="https://nvcr.io/proxy_auth?scope=repository:nvidia/cuda:pull,push")");
        REQUIRE(cs.size() == 1);
        CHECK(cs[0].params.at("realm") == "https://nvcr.io/proxy_auth?scope=repository:nvidia/cuda:pull,push");
    }
    SUBCASE("several challenges in one header") {
        auto cs = Challenge::parse(R"(Basic realm="Registry Realm", Bearer realm="https://a/t",service=svc, Negotiate)");
        REQUIRE(cs.size() == 3);
        CHECK(cs[0].scheme == "basic");
        CHECK(cs[0].params.at("realm") == "Registry Realm");
        CHECK(cs[1].scheme == "bearer");
        CHECK(cs[1].params.at("realm") == "https://a/t");
        CHECK(cs[1].params.at("service") == "svc");
        CHECK(cs[2].scheme == "negotiate");
        CHECK(cs[2].params.empty());
    }
    SUBCASE("case-insensitive scheme and names, values kept as sent") {
        auto cs = Challenge::parse(R"(BEARER Realm="https://A/Token", SERVICE=Reg.Example)");
        REQUIRE(cs.size() == 1);
        CHECK(cs[0].scheme == "bearer");
        CHECK(cs[0].params.at("realm") == "https://A/Token");
        CHECK(cs[0].params.at("service") == "Reg.Example");
    }
    SUBCASE("escaped quotes and commas inside quoted strings, whitespace around '='") {
        auto cs = Challenge::parse(R"(Bearer realm = "a\"b,c\\d" ,  error="insufficient_scope",scope="x:y:pull")");
        REQUIRE(cs.size() == 1);
        CHECK(cs[0].params.at("realm") == R"(a"b,c\d)");
        CHECK(cs[0].params.at("error") == "insufficient_scope");
        CHECK(cs[0].params.at("scope") == "x:y:pull");
    }
    SUBCASE("token68") {
        auto cs = Challenge::parse(R"(Newauth abc+/9==, Basic realm="simple")");
        REQUIRE(cs.size() == 2);
        CHECK(cs[0].scheme == "newauth");
        CHECK(cs[0].params.at("token68") == "abc+/9==");
        CHECK(cs[1].params.at("realm") == "simple");
    }
    SUBCASE("empty and junk") {
        CHECK(Challenge::parse("").empty());
        CHECK(Challenge::parse(" , ,").empty());
        auto cs = Challenge::parse(R"(Bearer realm="unterminated)");
        REQUIRE(cs.size() == 1);
        CHECK(cs[0].params.at("realm") == "unterminated");
    }
}

TEST_CASE("repository_scope") {
    CHECK(registry::repository_scope("ml/pytorch", "pull,push") == "repository:ml/pytorch:pull,push");
}

TEST_CASE("Bearer tokens: GET with Basic credentials, cached per scope set") {
    int issued = 0;
    LoopbackServer server([&](const SeenRequest& r) {
        if (r.header("authorization") != "Basic dXNlcjpwYTpzcw==")  // user:pa:ss
            return CannedResponse{401, {}, "{\"details\":\"bad password pa:ss\"}"};
        ++issued;
        return CannedResponse{200, {}, R"({"token":"T)" + std::to_string(issued) + R"(","expires_in":300})"};
    });
    HttpClient http;
    Authenticator auth(http, {}, Credential{"user", "pa:ss", ""});
    CHECK(auth.has_credential());
    CHECK_FALSE(auth.authorization({"repository:a:pull"}).has_value());  // no challenge yet

    auth.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/token?x=1") + R"(",service="reg")"));
    CHECK(auth.authorization({"repository:a:pull"}) == "Bearer T1");
    auto seen = server.requests();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].method == "GET");
    CHECK(seen[0].target.starts_with("/token?"));
    CHECK(query_of(seen[0].target) == "x=1&service=reg&scope=repository%3Aa%3Apull&account=user");

    // Cached: no second request.
    CHECK(auth.authorization({"repository:a:pull"}) == "Bearer T1");
    CHECK(server.requests().size() == 1);

    // Another scope set, in any order, is one more token.
    CHECK(auth.authorization({"repository:b:pull", "repository:a:pull,push"}) == "Bearer T2");
    CHECK(auth.authorization({"repository:a:pull,push", "repository:b:pull"}) == "Bearer T2");
    CHECK(server.requests().size() == 2);
    CHECK(query_of(server.requests()[1].target) ==
          "x=1&service=reg&scope=repository%3Ab%3Apull&scope=repository%3Aa%3Apull%2Cpush&account=user");

    auth.invalidate({"repository:a:pull"});
    CHECK(auth.authorization({"repository:a:pull"}) == "Bearer T3");
    CHECK(server.requests().size() == 3);
}

TEST_CASE("Bearer tokens: anonymous, access_token, and refusals without secrets") {
    LoopbackServer server([&](const SeenRequest& r) {
        if (r.target.starts_with("/anon")) return CannedResponse{200, {}, R"({"access_token":"A","expires_in":1})"};
        if (r.target.starts_with("/busy")) return CannedResponse{503, {}, ""};
        if (r.target.starts_with("/empty")) return CannedResponse{200, {}, "{}"};
        return CannedResponse{401, {}, "wrong password: s3cr3t"};
    });
    HttpClient http;

    Authenticator anon(http, {}, std::nullopt);
    anon.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/anon") + R"(",service="reg")"));
    CHECK(anon.authorization({"repository:a:pull"}) == "Bearer A");
    // expires_in under the 60 s minimum still caches.
    CHECK(anon.authorization({"repository:a:pull"}) == "Bearer A");
    auto seen = server.requests();
    REQUIRE(seen.size() == 1);
    CHECK_FALSE(seen[0].has_header("authorization"));
    CHECK(query_of(seen[0].target) == "service=reg&scope=repository%3Aa%3Apull");

    Authenticator refused(http, {}, Credential{"me", "s3cr3t", ""});
    refused.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/deny") + R"(",service="reg.example")"));
    try {
        static_cast<void>(refused.authorization({"repository:a:pull"}));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::unauthorized);
        CHECK(std::string(e.what()) == "authenticating to reg.example: token server answered 401");
    }

    Authenticator busy(http, {}, std::nullopt);
    busy.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/busy") + R"(")"));
    try {
        static_cast<void>(busy.authorization({}));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::unavailable);
        CHECK(std::string(e.what()) == "authenticating to 127.0.0.1:" + std::to_string(server.port()) +
                                           ": token server answered 503");
    }

    Authenticator empty(http, {}, std::nullopt);
    empty.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/empty") + R"(")"));
    CHECK_THROWS_AS(static_cast<void>(empty.authorization({})), core::Error);

    Authenticator no_realm(http, {}, std::nullopt);
    no_realm.on_challenge(unauthorized(R"(Bearer service="x")"));
    CHECK_THROWS_AS(static_cast<void>(no_realm.authorization({})), core::Error);
}

TEST_CASE("Bearer tokens: OAuth2 POST with an identity token") {
    LoopbackServer server([](const SeenRequest&) { return CannedResponse{200, {}, R"({"access_token":"O"})"}; });
    HttpClient http;
    Authenticator auth(http, {}, Credential{"", "", "refresh/tok+en"});
    auth.on_challenge(unauthorized(R"(Bearer realm=")" + server.url("/oauth") + R"(",service="reg")"));
    CHECK(auth.authorization({"repository:a:pull", "repository:b:pull"}) == "Bearer O");
    auto seen = server.requests();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].method == "POST");
    CHECK(seen[0].target == "/oauth");
    CHECK(seen[0].header("content-type") == "application/x-www-form-urlencoded");
    CHECK_FALSE(seen[0].has_header("authorization"));
    CHECK(seen[0].body ==
          "grant_type=refresh_token&refresh_token=refresh%2Ftok%2Ben&service=reg&client_id=ocibuild"
          "&scope=repository%3Aa%3Apull%20repository%3Ab%3Apull");
}

TEST_CASE("Basic challenges and challenge choice") {
    HttpClient http;
    Authenticator with(http, {}, Credential{"user", "pass", ""});
    with.on_challenge(unauthorized(R"(Basic realm="Registry")"));
    CHECK(with.authorization({"repository:a:pull"}) == "Basic dXNlcjpwYXNz");

    Authenticator without(http, {}, std::nullopt);
    without.on_challenge(unauthorized(R"(Basic realm="Registry")"));
    CHECK_FALSE(without.authorization({}).has_value());

    // Bearer is preferred when both are offered; a 401 without a challenge keeps the old one.
    LoopbackServer server([](const SeenRequest&) { return CannedResponse{200, {}, R"({"token":"B"})"}; });
    Authenticator both(http, {}, Credential{"user", "pass", ""});
    both.on_challenge(unauthorized(R"(Basic realm="R", Bearer realm=")" + server.url("/t") + R"(")"));
    HttpResponse bare;
    bare.status = 401;
    both.on_challenge(bare);
    CHECK(both.authorization({}) == "Bearer B");
}
