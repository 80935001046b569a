#pragma once
// Image references, normalised the way the Docker/containers ecosystem does:
//   ubuntu                 → docker.io/library/ubuntu:latest
//   nvidia/cuda:12.4.1     → docker.io/nvidia/cuda:12.4.1
//   index.docker.io/x/y    → docker.io/x/y:latest
//   localhost:5000/a/b@sha256:…, host/name:tag@sha256:… (both kept)
#include <string>
#include <string_view>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/result.hpp"

namespace ocibuild::registry {

inline constexpr std::string_view docker_hub = "docker.io";

struct Reference {
    std::string registry;    // "docker.io", "nvcr.io", "127.0.0.1:5000"
    std::string repository;  // "library/ubuntu", "nvidia/cuda"
    std::string tag;         // empty when only a digest was given
    core::Digest digest;     // empty when not pinned

    /// Parses and normalises; an error points at the offending character. A reference with
    /// neither tag nor digest gets tag "latest" unless `default_tag` is false.
    [[nodiscard]] static Result<Reference> parse(std::string_view text, bool default_tag = true);

    /// Fully qualified: registry/repository[:tag][@digest].
    [[nodiscard]] std::string to_string() const;
    /// registry/repository.
    [[nodiscard]] std::string name() const;
    /// Host to talk to: docker.io → registry-1.docker.io.
    [[nodiscard]] std::string api_host() const;
    bool operator==(const Reference&) const = default;
};

}  // namespace ocibuild::registry
