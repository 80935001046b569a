#include <doctest/doctest.h>

#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/image_config.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/oci/media_type.hpp"

using namespace ocibuild;
using namespace ocibuild::oci;

namespace {
const char* kDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
}

TEST_CASE("manifest serialises canonically: sorted keys, compact, stable") {
    ImageManifest m;
    m.config = Descriptor{std::string(media_type::oci_config), core::Digest::must_parse(kDigest), 2, {}, {}, {}, {}};
    m.layers.push_back(Descriptor{std::string(media_type::oci_layer_gzip), core::Digest::must_parse(kDigest), 2,
                                  {}, {{"b", "2"}, {"a", "1"}}, {}, {}});
    auto bytes = m.serialize();
    CHECK(bytes ==
          std::string(R"({"config":{"digest":")") + kDigest +
              R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":2},"layers":[{"annotations":{"a":"1","b":"2"},"digest":")" +
              kDigest +
              R"(","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":2}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})");
    // Parsing and serialising again gives the same bytes.
    CHECK(ImageManifest::parse(bytes, "m").serialize() == bytes);
}

TEST_CASE("schema1 and wrong media types are refused with clear errors") {
    try {
        (void)ImageManifest::parse(R"({"schemaVersion":1,"name":"x"})", "manifest of x");
        FAIL("no throw");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::unsupported);
        CHECK(std::string(e.what()).starts_with("manifest of x: Docker schema 1 manifests are not supported"));
    }
    CHECK_THROWS_WITH_AS((void)ImageManifest::parse(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})", "m"),
                         "m: mediaType \"application/vnd.oci.image.index.v1+json\" is not an image manifest", core::Error);
    CHECK_THROWS_WITH_AS((void)ImageManifest::parse("{nope", "m"), "m: malformed JSON at byte 3", core::Error);
}

TEST_CASE("index with platforms round-trips; Docker lists are indexes") {
    std::string text = std::string(R"({"manifests":[{"digest":")") + kDigest +
                       R"(","mediaType":"application/vnd.docker.distribution.manifest.v2+json","platform":{"architecture":"arm64","os":"linux","variant":"v8"},"size":2}],"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","schemaVersion":2})";
    auto idx = ImageIndex::parse(text, "list");
    REQUIRE(idx.manifests.size() == 1);
    REQUIRE(idx.manifests[0].platform);
    CHECK(idx.manifests[0].platform->to_string() == "linux/arm64/v8");
    CHECK(idx.serialize() == text);
}

TEST_CASE("platform parse and match") {
    auto p = Platform::parse("linux/arm64");
    REQUIRE(p);
    CHECK(p->matches(*Platform::parse("linux/arm64/v8")));
    CHECK(!Platform::parse("linux/amd64")->matches(*p));
    auto bad = Platform::parse("linux");
    REQUIRE(!bad);
    CHECK(bad.error().message == "platform must look like os/arch[/variant], e.g. linux/amd64");
}

TEST_CASE("image config keeps what matters and tolerates Docker's extra fields") {
    std::string text = R"({"architecture":"amd64","os":"linux","container":"abc","docker_version":"20",
      "config":{"Env":["PATH=/usr/bin","CUDA_VERSION=12.4.1"],"Cmd":null,"ExposedPorts":{"80/tcp":{}},"Labels":null},
      "rootfs":{"type":"layers","diff_ids":[")" + std::string(kDigest) + R"("]},
      "history":[{"created":"2024-01-01T00:00:00Z","created_by":"x","empty_layer":true}]})";
    auto c = ImageConfig::parse(text, "config");
    CHECK(c.config.get_env("CUDA_VERSION") == "12.4.1");
    CHECK(!c.config.cmd);
    CHECK(c.config.exposed_ports.count("80/tcp") == 1);
    c.config.set_env("PATH", "/opt/conda/bin:/usr/bin");
    c.config.set_env("NEW", "1");
    CHECK(c.config.env == std::vector<std::string>{"PATH=/opt/conda/bin:/usr/bin", "CUDA_VERSION=12.4.1", "NEW=1"});
    auto again = ImageConfig::parse(c.serialize(), "again");
    CHECK(again.serialize() == c.serialize());
    CHECK(again.history.at(0).empty_layer);
    CHECK(rfc3339(0) == "1970-01-01T00:00:00Z");
    CHECK(rfc3339(1700000000) == "2023-11-14T22:13:20Z");
}

TEST_CASE("media type helpers") {
    CHECK(media_type::layer_compression(media_type::docker_layer_gzip) == Compression::gzip);
    CHECK(media_type::layer_compression(media_type::oci_layer_zstd) == Compression::zstd);
    CHECK(media_type::layer_compression(media_type::oci_layer) == Compression::none);
    CHECK(media_type::is_index(media_type::docker_manifest_list));
    CHECK(media_type::is_layer(media_type::oci_layer_nondist_gzip));
    CHECK(!media_type::is_layer(media_type::oci_config));
}
