#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ocibuild/conda/channel.hpp"
#include "ocibuild/core/error.hpp"

using ocibuild::conda::Channel;
using ocibuild::conda::ChannelConfig;
using ocibuild::conda::mirror_urls;
using ocibuild::conda::subdir_for;
using ocibuild::core::Error;
using ocibuild::core::ErrorCategory;

namespace {

ocibuild::oci::Platform platform(const char* text) { return *ocibuild::oci::Platform::parse(text); }

std::string parse_error(std::string_view text) {
    try {
        (void)Channel::parse(text, ChannelConfig{}, "/work/recipes");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_input);
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("Channel::parse turns names, URLs and paths into canonical URLs") {
    const ChannelConfig config;
    struct Row { std::string in, url; };
    const Row rows[] = {
        {"conda-forge", "https://conda.anaconda.org/conda-forge"},
        {" conda-forge ", "https://conda.anaconda.org/conda-forge"},
        {"conda-forge/", "https://conda.anaconda.org/conda-forge"},
        {"conda-forge/label/dev", "https://conda.anaconda.org/conda-forge/label/dev"},
        {"pkgs/main", "https://conda.anaconda.org/pkgs/main"},
        {"https://repo.prefix.dev/my-channel/", "https://repo.prefix.dev/my-channel"},
        {"https://repo.prefix.dev/my-channel", "https://repo.prefix.dev/my-channel"},
        {"HTTP://example.com:8080/chan", "http://example.com:8080/chan"},
        {"file:///srv/chan/", "file:///srv/chan"},
        {"file:///srv/./x/../chan", "file:///srv/chan"},
        {"file://localhost/srv/chan", "file:///srv/chan"},
        {"/srv/chan", "file:///srv/chan"},
        {"/srv/chan/", "file:///srv/chan"},
        {"./chan", "file:///work/recipes/chan"},
        {"../shared/chan", "file:///work/shared/chan"},
        {".", "file:///work/recipes"},
        {"./my chan", "file:///work/recipes/my%20chan"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.in);
        const Channel c = Channel::parse(row.in, config, "/work/recipes");
        CHECK(c.url == row.url);
        CHECK(c.name == (row.in == " conda-forge " ? "conda-forge" : row.in));
    }
}

TEST_CASE("Channel::parse uses the configured channel alias") {
    ChannelConfig config;
    config.channel_alias = "https://mirror.example.org/conda/";
    CHECK(Channel::parse("bioconda", config, "/").url == "https://mirror.example.org/conda/bioconda");
}

TEST_CASE("Channel::parse refuses malformed channels, naming them") {
    CHECK(parse_error("") == "channel \"\": empty channel");
    CHECK(parse_error("   ") == "channel \"   \": empty channel");
    CHECK(parse_error("s3://bucket/chan") ==
          "channel \"s3://bucket/chan\": unsupported URL scheme \"s3\" (use https://, http:// or file://)");
    CHECK(parse_error("https:///chan") == "channel \"https:///chan\": URL without a host");
    CHECK(parse_error("file://relative/chan") ==
          "channel \"file://relative/chan\": a file:// URL needs an absolute path (file:///folder)");
    CHECK(parse_error("~/chan") == "channel \"~/chan\": '~' is not expanded; write the folder's full path");
    CHECK(parse_error("conda forge") ==
          "channel \"conda forge\": not a channel name, URL or path (names use letters, digits, '-', '_', '.')");
    CHECK(parse_error("a//b").starts_with("channel \"a//b\": not a channel name"));
    CHECK(parse_error("a/../b").starts_with("channel \"a/../b\": not a channel name"));
}

TEST_CASE("Channel::subdir_url ends with a slash") {
    const Channel c = Channel::parse("conda-forge", ChannelConfig{}, "/");
    CHECK(c.subdir_url("linux-64") == "https://conda.anaconda.org/conda-forge/linux-64/");
    CHECK(c.subdir_url("noarch") == "https://conda.anaconda.org/conda-forge/noarch/");
}

TEST_CASE("mirror_urls tries the longest matching prefixes' mirrors first, then the URL") {
    ChannelConfig config;
    config.mirrors["https://conda.anaconda.org"] = {"https://m1.example/conda", "https://m2.example/conda/"};
    config.mirrors["https://conda.anaconda.org/conda-forge/"] = {"https://cf.example/cf"};
    config.mirrors["https://conda.anaconda.org/conda"] = {"https://wrong.example"};
    const std::string url = "https://conda.anaconda.org/conda-forge/linux-64/repodata.json";
    CHECK(mirror_urls(url, config) == std::vector<std::string>{
                                          "https://cf.example/cf/linux-64/repodata.json",
                                          "https://m1.example/conda/conda-forge/linux-64/repodata.json",
                                          "https://m2.example/conda/conda-forge/linux-64/repodata.json",
                                          url,
                                      });
    CHECK(mirror_urls("https://repo.prefix.dev/x/noarch/repodata.json", config) ==
          std::vector<std::string>{"https://repo.prefix.dev/x/noarch/repodata.json"});
    CHECK(mirror_urls("https://conda.anaconda.org/conda/noarch/a", config) ==
          std::vector<std::string>{"https://wrong.example/noarch/a", "https://m1.example/conda/conda/noarch/a",
                                   "https://m2.example/conda/conda/noarch/a", "https://conda.anaconda.org/conda/noarch/a"});
}

TEST_CASE("subdir_for maps OCI platforms to conda subdirs") {
    CHECK(subdir_for(platform("linux/amd64")) == "linux-64");
    CHECK(subdir_for(platform("linux/arm64")) == "linux-aarch64");
    CHECK(subdir_for(platform("linux/arm64/v8")) == "linux-aarch64");
    CHECK(subdir_for(platform("linux/ppc64le")) == "linux-ppc64le");
    CHECK(subdir_for(platform("linux/s390x")) == "linux-s390x");
    CHECK(subdir_for(platform("linux/386")) == "linux-32");
    CHECK(subdir_for(platform("linux/arm/v7")) == "linux-armv7l");
    for (const char* p : {"linux/arm/v6", "windows/amd64", "linux/mips64le", "darwin/arm64"}) {
        CAPTURE(p);
        try {
            (void)subdir_for(platform(p));
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.category() == ErrorCategory::unsupported);
            CHECK(std::string(e.what()).starts_with(std::string("no conda subdir for platform ") + p + " (supported:"));
        }
    }
}

TEST_CASE("redact_url drops passwords and anaconda.org tokens; restore_credentials puts them back") {
    using ocibuild::conda::redact_url;
    using ocibuild::conda::restore_credentials;
    CHECK(redact_url("https://alice:s3cret@repo.example/chan/linux-64/a-1-0.conda") ==
          "https://repo.example/chan/linux-64/a-1-0.conda");
    CHECK(redact_url("https://conda.anaconda.org/t/tk-1234/private/noarch/") ==
          "https://conda.anaconda.org/t/<token>/private/noarch/");
    CHECK(redact_url("https://repo.example/a/t/b/noarch/") == "https://repo.example/a/t/b/noarch/");  // a folder "t"
    CHECK(redact_url("file:///srv/t/x/noarch/") == "file:///srv/t/x/noarch/");
    CHECK(redact_url("https://repo.example/chan?sig=abc") == "https://repo.example/chan?...");

    const ChannelConfig config;
    std::vector<Channel> channels{Channel::parse("https://alice:s3cret@repo.example/chan", config, "/work"),
                                  Channel::parse("conda-forge", config, "/work")};
    CHECK(restore_credentials("https://repo.example/chan/linux-64/a-1-0.conda", channels) ==
          "https://alice:s3cret@repo.example/chan/linux-64/a-1-0.conda");
    // Whole path segments only, and URLs of other channels stay as they are.
    CHECK(restore_credentials("https://repo.example/chan2/linux-64/a.conda", channels) ==
          "https://repo.example/chan2/linux-64/a.conda");
    CHECK(restore_credentials("https://conda.anaconda.org/conda-forge/noarch/b.conda", channels) ==
          "https://conda.anaconda.org/conda-forge/noarch/b.conda");
}
