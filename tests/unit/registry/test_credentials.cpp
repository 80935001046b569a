#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/registry/credentials.hpp"

using namespace ocibuild;
using registry::Credential;
using registry::CredentialPaths;
using registry::CredentialStore;
namespace fs = std::filesystem;

namespace {

// base64("<user>:<pass>") for the few pairs the tests use.
std::string auth_of(const std::string& user_pass) {
    static constexpr char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < user_pass.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(user_pass[i]) << 16 |
                     static_cast<unsigned char>(user_pass[i + 1]) << 8 | static_cast<unsigned char>(user_pass[i + 2]);
        for (int s : {18, 12, 6, 0}) out += a[v >> s & 63];
    }
    if (i < user_pass.size()) {
        unsigned v = static_cast<unsigned char>(user_pass[i]) << 16;
        if (i + 1 < user_pass.size()) v |= static_cast<unsigned char>(user_pass[i + 1]) << 8;
        out += a[v >> 18 & 63];
        out += a[v >> 12 & 63];
        out += i + 1 < user_pass.size() ? a[v >> 6 & 63] : '=';
        out += '=';
    }
    return out;
}

void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
}

std::string entry(const std::string& key, const std::string& user_pass) {
    return "\"" + key + "\": {\"auth\": \"" + auth_of(user_pass) + "\"}";
}

std::string auths(const std::vector<std::string>& entries) {
    std::string out = "{\"auths\": {";
    for (std::size_t i = 0; i < entries.size(); ++i) out += (i ? ", " : "") + entries[i];
    return out + "}}";
}

struct Fixture {
    core::TempDir tmp;
    CredentialPaths paths;
    Fixture() {
        paths.xdg_runtime_dir = tmp.path() / "run";
        paths.xdg_config_home = tmp.path() / "config";
        paths.docker_config = tmp.path() / "docker";
        paths.home = tmp.path() / "home";
        paths.uid = 4242;
    }
    [[nodiscard]] fs::path runtime() const { return paths.xdg_runtime_dir / "containers/auth.json"; }
    [[nodiscard]] fs::path config() const { return paths.xdg_config_home / "containers/auth.json"; }
    [[nodiscard]] fs::path docker() const { return paths.docker_config / "config.json"; }
    [[nodiscard]] fs::path dockercfg() const { return paths.home / ".dockercfg"; }
    [[nodiscard]] std::optional<Credential> lookup(std::string_view reg, std::string_view repo = "a/b") const {
        return CredentialStore(paths).lookup(reg, repo);
    }
    [[nodiscard]] std::string user(std::string_view reg, std::string_view repo = "a/b") const {
        auto c = lookup(reg, repo);
        return c ? c->username + ":" + c->password : "<none>";
    }
};

// Prepends a directory to PATH for the lifetime of the object (tests only: the library reads no env).
class PathPrepend {
public:
    explicit PathPrepend(const fs::path& dir) {
        const char* old = std::getenv("PATH");
        old_ = old ? old : "";
        ::setenv("PATH", (dir.string() + ":" + old_).c_str(), 1);
    }
    ~PathPrepend() { ::setenv("PATH", old_.c_str(), 1); }
    PathPrepend(const PathPrepend&) = delete;
    PathPrepend& operator=(const PathPrepend&) = delete;

private:
    std::string old_;
};

void write_script(const fs::path& path, const std::string& body) {
    write(path, "#!/bin/sh\n" + body);
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

}  // namespace

TEST_CASE("credential files are searched in containers/image order") {
    Fixture f;
    write(f.runtime(), auths({entry("quay.io", "run:1")}));
    write(f.config(), auths({entry("quay.io", "config:2"), entry("ghcr.io", "config:2")}));
    write(f.docker(), auths({entry("quay.io", "docker:3"), entry("ghcr.io", "docker:3"), entry("nvcr.io", "docker:3")}));
    write(f.dockercfg(), "{" + entry("https://quay.io", "legacy:4") + ", " + entry("https://r.example/v1/", "legacy:4") + "}");

    CHECK(f.user("quay.io") == "run:1");
    CHECK(f.user("ghcr.io") == "config:2");
    CHECK(f.user("nvcr.io") == "docker:3");
    CHECK(f.user("r.example") == "legacy:4");
    CHECK_FALSE(f.lookup("other.example"));

    SUBCASE("an explicit authfile replaces the list") {
        auto paths = f.paths;
        paths.authfile = f.tmp.path() / "explicit.json";
        write(paths.authfile, auths({entry("ghcr.io", "explicit:5")}));
        CredentialStore store(paths);
        CHECK(store.lookup("ghcr.io", "x")->username == "explicit");
        CHECK_FALSE(store.lookup("quay.io", "x"));
    }
    SUBCASE("without XDG_RUNTIME_DIR, XDG_CONFIG_HOME and DOCKER_CONFIG") {
        auto paths = f.paths;
        paths.xdg_runtime_dir.clear();
        paths.xdg_config_home.clear();
        paths.docker_config.clear();
        write(paths.home / ".config/containers/auth.json", auths({entry("quay.io", "homeconfig:6")}));
        write(paths.home / ".docker/config.json", auths({entry("nvcr.io", "homedocker:7")}));
        CredentialStore store(paths);
        CHECK(store.lookup("quay.io", "x")->username == "homeconfig");
        CHECK(store.lookup("nvcr.io", "x")->username == "homedocker");
        CHECK(store.login_file() == "/run/containers/4242/auth.json");
    }
}

TEST_CASE("namespace keys: most specific first, by whole path components") {
    Fixture f;
    write(f.config(), auths({entry("quay.io", "host:1"), entry("quay.io/org", "org:2"),
                             entry("quay.io/org/repo", "repo:3"), entry("quay.io/org/rep", "wrong:4")}));
    CHECK(f.user("quay.io", "org/repo") == "repo:3");
    CHECK(f.user("quay.io", "org/repo/sub") == "repo:3");
    CHECK(f.user("quay.io", "org/other") == "org:2");
    CHECK(f.user("quay.io", "org/repos") == "org:2");
    CHECK(f.user("quay.io", "else/x") == "host:1");

    // Files still come first: a registry-wide key in an earlier file beats a namespace key later.
    write(f.runtime(), auths({entry("quay.io", "early:5")}));
    CHECK(f.user("quay.io", "org/repo") == "early:5");
}

TEST_CASE("docker.io aliases and legacy key forms are one registry") {
    Fixture f;
    write(f.docker(), auths({entry("https://index.docker.io/v1/", "hub:1"), entry("https://ghcr.io/", "gh:2"),
                             entry("nvcr.io/", "nv:3")}));
    CHECK(f.user("docker.io", "library/ubuntu") == "hub:1");
    CHECK(f.user("registry-1.docker.io", "nvidia/cuda") == "hub:1");
    CHECK(f.user("index.docker.io", "x/y") == "hub:1");
    CHECK(f.user("ghcr.io") == "gh:2");
    CHECK(f.user("nvcr.io") == "nv:3");

    write(f.config(), auths({entry("registry-1.docker.io", "alias:4"), entry("docker.io/nvidia", "ns:5")}));
    CHECK(f.user("docker.io", "library/ubuntu") == "alias:4");
    CHECK(f.user("docker.io", "nvidia/cuda") == "ns:5");
}

TEST_CASE("entries: empty ones are skipped, identity tokens, passwords with colons") {
    Fixture f;
    write(f.runtime(), R"({"auths": {"quay.io": {}, "ghcr.io": {"auth": ""}, "nvcr.io": {"auth": ")" +
                           auth_of("$oauthtoken:key:with:colons") + R"("}}})");
    write(f.config(), R"({"auths": {"quay.io": {"auth": ")" + auth_of("later:x") +
                          R"("}, "ghcr.io": {"identitytoken": "refresh-me"}}})");
    CHECK(f.user("quay.io") == "later:x");
    auto gh = f.lookup("ghcr.io");
    REQUIRE(gh);
    CHECK(gh->username.empty());
    CHECK(gh->identity_token == "refresh-me");
    auto nv = f.lookup("nvcr.io");
    REQUIRE(nv);
    CHECK(nv->username == "$oauthtoken");
    CHECK(nv->password == "key:with:colons");
}

TEST_CASE("malformed files are errors naming the file, never quoting secrets") {
    Fixture f;
    const std::string secret = auth_of("user:hunter2");
    write(f.runtime(), R"({"auths": {"quay.io": {"auth": ")" + secret + R"("}}, oops})");
    try {
        static_cast<void>(f.lookup("quay.io"));
        FAIL("no exception");
    } catch (const core::Error& e) {
        const std::string msg = e.what();
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(msg.starts_with(f.runtime().string() + ": not valid JSON"));
        CHECK(msg.find(secret) == std::string::npos);
        CHECK(msg.find("hunter2") == std::string::npos);
    }

    write(f.runtime(), R"({"auths": {"quay.io": {"auth": "bm90LWEtcGFpcg=="}}})");  // "not-a-pair"
    try {
        static_cast<void>(f.lookup("quay.io"));
        FAIL("no exception");
    } catch (const core::Error& e) {
        const std::string msg = e.what();
        CHECK(msg == f.runtime().string() + ": \"auth\" of \"quay.io\" is not base64 of user:password");
    }

    write(f.runtime(), R"({"auths": []})");
    CHECK_THROWS_WITH(static_cast<void>(f.lookup("quay.io")),
                      (f.runtime().string() + ": \"auths\" is not an object").c_str());
}

TEST_CASE("credHelpers and credsStore run docker-credential-* helpers") {
    Fixture f;
    const fs::path bin = f.tmp.path() / "bin";
    const fs::path log = f.tmp.path() / "helper.log";
    write_script(bin / "docker-credential-testhelper",
                 "read -r url\n"
                 "echo \"testhelper $1 $url\" >> '" + log.string() + "'\n"
                 "case \"$url\" in\n"
                 "  quay.io) echo '{\"ServerURL\":\"quay.io\",\"Username\":\"qu\",\"Secret\":\"qs\"}' ;;\n"
                 "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
                 "esac\n");
    write_script(bin / "docker-credential-teststore",
                 "read -r url\n"
                 "echo \"teststore $1 $url\" >> '" + log.string() + "'\n"
                 "case \"$url\" in\n"
                 "  https://index.docker.io/v1/) echo '{\"Username\":\"<token>\",\"Secret\":\"idtok\"}' ;;\n"
                 "  broken.example) echo 'keychain locked' >&2; exit 3 ;;\n"
                 "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
                 "esac\n");
    write_script(bin / "docker-credential-silent", "cat > /dev/null; exit 1\n");
    PathPrepend path(bin);

    write(f.docker(), R"({"auths": {"ghcr.io": {"auth": ")" + auth_of("file:entry") +
                          R"("}, "docker.io": {}}, "credHelpers": {"quay.io": "testhelper", "missing.example": "nope"},
                          "credsStore": "teststore"})");

    CHECK(f.user("quay.io") == "qu:qs");
    auto hub = f.lookup("docker.io", "library/ubuntu");
    REQUIRE(hub);
    CHECK(hub->identity_token == "idtok");
    CHECK(hub->username.empty());
    CHECK(f.user("ghcr.io") == "file:entry");  // an auths entry beats the default store
    CHECK_FALSE(f.lookup("other.example"));    // the store has nothing

    auto lines = core::read_file(log);
    CHECK(lines == "testhelper get quay.io\n"
                   "teststore get https://index.docker.io/v1/\n"
                   "teststore get other.example\n");

    try {
        static_cast<void>(f.lookup("broken.example"));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::unavailable);
        CHECK(std::string(e.what()) ==
              "docker-credential-teststore get broken.example: exited with status 3: keychain locked");
    }
    try {
        static_cast<void>(f.lookup("missing.example"));
        FAIL("no exception");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::not_found);
        CHECK(std::string(e.what()) == f.docker().string() +
                                           ": credential helper docker-credential-nope for missing.example is not in PATH");
    }

    SUBCASE("a credsStore that is not installed is no credential") {
        write(f.docker(), R"({"credsStore": "not-installed"})");
        CHECK_FALSE(f.lookup("quay.io"));
    }
    SUBCASE("a helper that fails without output is an error") {
        write(f.docker(), R"({"credHelpers": {"quay.io": "silent"}})");
        CHECK_THROWS_WITH(static_cast<void>(f.lookup("quay.io")),
                          "docker-credential-silent get quay.io: exited with status 1");
    }
    SUBCASE("helper names cannot be paths") {
        write(f.docker(), R"({"credHelpers": {"quay.io": "../../bin/sh"}})");
        CHECK_THROWS_AS(static_cast<void>(f.lookup("quay.io")), core::Error);
    }
}

TEST_CASE("login and logout round trip, mode 0600") {
    Fixture f;
    CredentialStore store(f.paths);
    CHECK(store.login_file() == f.runtime());
    CHECK_FALSE(store.logout("quay.io"));  // no file yet

    store.login("quay.io", Credential{"user", "p@ss:word", ""});
    struct stat st{};
    REQUIRE(::stat(f.runtime().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat(f.runtime().parent_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    auto got = store.lookup("quay.io", "x/y");
    REQUIRE(got);
    CHECK(got->username == "user");
    CHECK(got->password == "p@ss:word");

    // Other entries and top-level keys survive; an alias key is replaced by the normalised one.
    write(f.runtime(), R"({"auths": {"https://index.docker.io/v1/": {"auth": ")" + auth_of("old:hub") +
                           R"("}, "quay.io": {"auth": ")" + auth_of("user:pw") + R"("}}, "credHelpers": {}})");
    store.login("docker.io", Credential{"new", "hub", ""});
    store.login("ghcr.io/org", Credential{"", "", "tok"});
    auto text = core::read_file(f.runtime());
    CHECK(text.find("index.docker.io") == std::string::npos);
    CHECK(text.find("\"docker.io\"") != std::string::npos);
    CHECK(text.find("credHelpers") != std::string::npos);
    CHECK(f.user("docker.io", "library/x") == "new:hub");
    CHECK(f.user("quay.io") == "user:pw");
    CHECK(f.lookup("ghcr.io", "org/x")->identity_token == "tok");
    REQUIRE(::stat(f.runtime().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    CHECK(store.logout("https://quay.io"));
    CHECK_FALSE(store.logout("quay.io"));
    CHECK_FALSE(f.lookup("quay.io"));
    CHECK(store.logout("registry-1.docker.io"));
    CHECK_FALSE(f.lookup("docker.io", "library/x"));
    CHECK(f.lookup("ghcr.io", "org/x"));
}
