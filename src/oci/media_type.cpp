#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::oci::media_type {

bool is_index(std::string_view mt) noexcept { return mt == oci_index || mt == docker_manifest_list; }
bool is_manifest(std::string_view mt) noexcept { return mt == oci_manifest || mt == docker_manifest; }
bool is_schema1(std::string_view mt) noexcept {
    return mt == docker_manifest_v1 || mt == docker_manifest_v1_signed;
}
bool is_config(std::string_view mt) noexcept { return mt == oci_config || mt == docker_config; }

bool is_layer(std::string_view mt) noexcept {
    return mt == oci_layer || mt == oci_layer_gzip || mt == oci_layer_zstd || mt == oci_layer_nondist ||
           mt == oci_layer_nondist_gzip || mt == oci_layer_nondist_zstd || mt == docker_layer_gzip ||
           mt == docker_layer_foreign_gzip;
}

Compression layer_compression(std::string_view mt) noexcept {
    if (mt.ends_with("+gzip") || mt.ends_with(".tar.gzip")) return Compression::gzip;
    if (mt.ends_with("+zstd")) return Compression::zstd;
    return Compression::none;
}

std::string_view oci_layer_type(Compression c) noexcept {
    switch (c) {
        case Compression::gzip: return oci_layer_gzip;
        case Compression::zstd: return oci_layer_zstd;
        case Compression::none: return oci_layer;
    }
    return oci_layer;
}

std::string_view to_string(Compression c) noexcept {
    switch (c) {
        case Compression::gzip: return "gzip";
        case Compression::zstd: return "zstd";
        case Compression::none: return "none";
    }
    return "none";
}

}  // namespace ocibuild::oci::media_type
