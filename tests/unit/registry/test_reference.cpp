#include <doctest/doctest.h>

#include "ocibuild/registry/reference.hpp"

using ocibuild::registry::Reference;

TEST_CASE("references normalise like docker and podman") {
    struct Case {
        const char* in;
        const char* out;
    };
    const Case cases[] = {
        {"ubuntu", "docker.io/library/ubuntu:latest"},
        {"ubuntu:22.04", "docker.io/library/ubuntu:22.04"},
        {"nvidia/cuda:12.4.1-runtime-ubuntu22.04", "docker.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04"},
        {"index.docker.io/nvidia/cuda:12", "docker.io/nvidia/cuda:12"},
        {"docker.io/busybox", "docker.io/library/busybox:latest"},
        {"nvcr.io/nvidia/pytorch:24.01-py3", "nvcr.io/nvidia/pytorch:24.01-py3"},
        {"localhost:5000/ml/pytorch", "localhost:5000/ml/pytorch:latest"},
        {"127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:1"},
        {"localhost/x", "localhost/x:latest"},
        {"r.example/x@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
         "r.example/x@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
        {"r.example/x:t@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
         "r.example/x:t@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.in));
        auto r = Reference::parse(c.in);
        REQUIRE(r);
        CHECK(r->to_string() == c.out);
        // Normalised form parses to itself.
        CHECK(Reference::parse(r->to_string())->to_string() == c.out);
    }
    CHECK(Reference::parse("ubuntu")->api_host() == "registry-1.docker.io");
    CHECK(Reference::parse("localhost:5000/a")->api_host() == "localhost:5000");
    CHECK(Reference::parse("ml/pytorch", false)->tag.empty());
}

TEST_CASE("bad references point at the fault") {
    struct Case {
        const char* in;
        const char* message;
        std::size_t offset;
    };
    const Case cases[] = {
        {"CUDA:12", "repository name must be lowercase", 0},
        {"nvidia/Cuda", "repository name must be lowercase", 7},
        {"nvidia/cuda:", "bad tag \"\" (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})", 12},
        {"nvidia/cuda:-x", "bad tag \"-x\" (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})", 12},
        {"a//b", "bad repository name component \"\"", 2},
        {"a/b@sha256:zz", "sha256 digest needs 64 hex digits, got 2", 11},
        {"", "empty reference", 0},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.in));
        auto r = Reference::parse(c.in);
        REQUIRE(!r);
        CHECK(r.error().message == c.message);
        CHECK(r.error().offset == c.offset);
    }
}
