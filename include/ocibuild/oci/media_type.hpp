#pragma once
// Every OCI and Docker media type ocibuild reads or writes.
#include <string_view>

namespace ocibuild::oci::media_type {

inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view oci_layer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view oci_layer_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view oci_layer_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view oci_layer_nondist = "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view oci_layer_nondist_gzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view oci_layer_nondist_zstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
inline constexpr std::string_view oci_empty = "application/vnd.oci.empty.v1+json";
inline constexpr std::string_view oci_layout_header = "application/vnd.oci.layout.header.v1+json";

inline constexpr std::string_view docker_manifest_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_manifest_v1 = "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view docker_manifest_v1_signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr std::string_view docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view docker_layer_gzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view docker_layer_foreign_gzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

[[nodiscard]] bool is_index(std::string_view mt) noexcept;     // OCI index or Docker list
[[nodiscard]] bool is_manifest(std::string_view mt) noexcept;  // OCI or Docker schema2 manifest
[[nodiscard]] bool is_schema1(std::string_view mt) noexcept;
[[nodiscard]] bool is_config(std::string_view mt) noexcept;
[[nodiscard]] bool is_layer(std::string_view mt) noexcept;

enum class Compression { none, gzip, zstd };
/// The compression a layer media type implies; nullopt-like `none` for plain tar.
[[nodiscard]] Compression layer_compression(std::string_view mt) noexcept;
[[nodiscard]] std::string_view oci_layer_type(Compression c) noexcept;
[[nodiscard]] std::string_view to_string(Compression c) noexcept;

}  // namespace ocibuild::oci::media_type

namespace ocibuild::oci {
using media_type::Compression;
}
