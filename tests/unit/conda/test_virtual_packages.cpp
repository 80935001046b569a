#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "ocibuild/conda/virtual_packages.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/compress.hpp"
#include "ocibuild/layer/tar_writer.hpp"
#include "ocibuild/oci/media_type.hpp"

using namespace ocibuild;
using conda::TargetFacts;
using conda::VirtualPackage;
using conda::VirtualPackageSet;

namespace {

layer::TarEntry file_entry(std::string path, std::string content) {
    layer::TarEntry e;
    e.path = std::move(path);
    e.content = std::move(content);
    e.size = static_cast<std::int64_t>(e.content.size());
    return e;
}

layer::TarEntry link_entry(std::string path, std::string target) {
    layer::TarEntry e;
    e.path = std::move(path);
    e.type = layer::EntryType::symlink;
    e.mode = 0777;
    e.link_target = std::move(target);
    return e;
}

layer::TarEntry dir_entry(std::string path) {
    layer::TarEntry e;
    e.path = std::move(path);
    e.type = layer::EntryType::directory;
    e.mode = 0755;
    return e;
}

/// Writes the entries as a layer blob (gzip-compressed when asked) and returns its descriptor.
oci::Descriptor put_layer(const store::Store& store, std::vector<layer::TarEntry> entries, bool gzip = false) {
    auto writer = store.ingest();
    if (gzip) {
        auto compressor = layer::make_compressor({oci::Compression::gzip, 0, 1}, writer);
        layer::write_tar(std::move(entries), 0, *compressor);
        return writer.commit(oci::media_type::oci_layer_gzip);
    }
    layer::write_tar(std::move(entries), 0, writer);
    return writer.commit("application/vnd.oci.image.layer.v1.tar");
}

oci::ImageManifest manifest_of(std::vector<oci::Descriptor> layers) {
    oci::ImageManifest m;
    m.layers = std::move(layers);
    return m;
}

const std::string ubuntu_libc =
    std::string("\x7f" "ELF\2\1\1", 7) + std::string(100, '\0') + "GLIBC_2.2.5" + std::string(3, '\0') +
    "GLIBC_2.34" + std::string(5, '\0') +
    "GNU C Library (Ubuntu GLIBC 2.35-0ubuntu3.8) stable release version 2.35.\nCopyright (C) 2022" +
    std::string(40, '\0');

const VirtualPackage* find(const VirtualPackageSet& set, std::string_view name) {
    for (const auto& p : set.packages)
        if (p.name == name) return &p;
    return nullptr;
}

}  // namespace

TEST_CASE("glibc_version_from_libc: file names and the strings inside libc") {
    CHECK(conda::glibc_version_from_libc("libc-2.31.so", "") == "2.31");
    CHECK(conda::glibc_version_from_libc("lib/x86_64-linux-gnu/libc-2.17.so", "") == "2.17");
    CHECK(conda::glibc_version_from_libc("libc.so.6", ubuntu_libc) == "2.35");
    CHECK(conda::glibc_version_from_libc("libc.so.6", std::string("xx\0(Debian GLIBC 2.31-13+deb11u5) yy", 36)) ==
          "2.31");
    // Symbol version names (GLIBC_2.34) are not the release.
    CHECK_FALSE(conda::glibc_version_from_libc("libc.so.6", "GLIBC_2.2.5 GLIBC_2.34").has_value());
    CHECK_FALSE(conda::glibc_version_from_libc("libc.so.6", "release version .").has_value());
    CHECK_FALSE(conda::glibc_version_from_libc("libc-x.so", "").has_value());
    // The release string wins over a distro tag that could differ.
    CHECK(conda::glibc_version_from_libc("libc.so.6", "GLIBC 2.99 ... release version 2.28.") == "2.28");
}

TEST_CASE("cuda_version_from_env: major.minor of CUDA_VERSION") {
    CHECK(conda::cuda_version_from_env({"PATH=/usr/bin", "CUDA_VERSION=12.4.1"}) == "12.4");
    CHECK(conda::cuda_version_from_env({"CUDA_VERSION=11.8"}) == "11.8");
    CHECK(conda::cuda_version_from_env({"CUDA_VERSION=12"}) == "12.0");
    CHECK(conda::cuda_version_from_env({"CUDA_VERSION=11.8.0", "CUDA_VERSION=12.1.0"}) == "12.1");
    CHECK_FALSE(conda::cuda_version_from_env({"NV_CUDA_VERSION=12.4", "CUDA_VERSIONS=1.2"}).has_value());
    CHECK_FALSE(conda::cuda_version_from_env({"CUDA_VERSION="}).has_value());
    CHECK_FALSE(conda::cuda_version_from_env({}).has_value());
}

TEST_CASE("detect_glibc: finds libc in the image's layers") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");

    SUBCASE("a merged-/usr image with a regular libc.so.6 (Ubuntu 22.04)") {
        const auto base = put_layer(store, {dir_entry("usr"), dir_entry("usr/lib"), dir_entry("usr/lib/x86_64-linux-gnu"),
                                            link_entry("lib", "usr/lib"),
                                            file_entry("usr/lib/x86_64-linux-gnu/libc.so.6", ubuntu_libc),
                                            file_entry("usr/lib/x86_64-linux-gnu/libcrypt.so.1", "release version 9.9.")},
                                    /*gzip=*/true);
        CHECK(conda::detect_glibc(store, manifest_of({base})) == "2.35");
    }
    SUBCASE("a libc.so.6 symlink names the version (Debian 11)") {
        const auto base = put_layer(store, {dir_entry("lib"), dir_entry("lib/x86_64-linux-gnu"),
                                            link_entry("lib/x86_64-linux-gnu/libc.so.6", "libc-2.31.so"),
                                            file_entry("lib/x86_64-linux-gnu/libc-2.31.so", "no strings here")});
        CHECK(conda::detect_glibc(store, manifest_of({base})) == "2.31");
    }
    SUBCASE("a libc-X.Y.so alone (CentOS 7)") {
        const auto base = put_layer(store, {dir_entry("usr"), dir_entry("usr/lib64"), file_entry("usr/lib64/libc-2.17.so", "x")});
        CHECK(conda::detect_glibc(store, manifest_of({base})) == "2.17");
    }
    SUBCASE("a symlink to an unversioned name is followed to the file's bytes, in a lower layer") {
        const auto lower = put_layer(store, {dir_entry("lib"), file_entry("lib/libc-real.so", ubuntu_libc)});
        const auto upper = put_layer(store, {dir_entry("lib"), link_entry("lib/libc.so.6", "/lib/libc-real.so")});
        CHECK(conda::detect_glibc(store, manifest_of({lower, upper})) == "2.35");
    }
    SUBCASE("the top-most libc wins") {
        const auto lower = put_layer(store, {dir_entry("lib"), file_entry("lib/libc-2.28.so", "x")});
        const auto upper = put_layer(store, {dir_entry("usr"), dir_entry("usr/lib"), file_entry("usr/lib/libc.so.6", ubuntu_libc)});
        const auto unrelated = put_layer(store, {dir_entry("opt"), file_entry("opt/app", "release version 1.0.")});
        CHECK(conda::detect_glibc(store, manifest_of({lower, upper, unrelated})) == "2.35");
        CHECK(conda::detect_glibc(store, manifest_of({upper, lower})) == "2.28");
    }
    SUBCASE("a libc deleted by an upper layer does not count") {
        const auto lower = put_layer(store, {dir_entry("lib"), file_entry("lib/libc-2.28.so", "x")});
        const auto upper = put_layer(store, {dir_entry("lib"), file_entry("lib/.wh.libc-2.28.so", "")});
        CHECK_FALSE(conda::detect_glibc(store, manifest_of({lower, upper})).has_value());
        const auto opaque = put_layer(store, {dir_entry("lib"), file_entry("lib/.wh..wh..opq", "")});
        CHECK_FALSE(conda::detect_glibc(store, manifest_of({lower, opaque})).has_value());
    }
    SUBCASE("no glibc: musl (Alpine), a libc outside lib*/, scratch") {
        const auto alpine = put_layer(store, {dir_entry("lib"), file_entry("lib/ld-musl-x86_64.so.1", "musl libc (x86_64)"),
                                              link_entry("lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")});
        CHECK_FALSE(conda::detect_glibc(store, manifest_of({alpine})).has_value());
        const auto elsewhere = put_layer(store, {dir_entry("opt"), file_entry("opt/libc.so.6", ubuntu_libc)});
        CHECK_FALSE(conda::detect_glibc(store, manifest_of({elsewhere})).has_value());
        CHECK_FALSE(conda::detect_glibc(store, manifest_of({})).has_value());
    }
    SUBCASE("a missing layer blob is an error naming the layer") {
        const auto base = put_layer(store, {dir_entry("lib")});
        auto missing = base;
        missing.digest = core::Digest::of("not stored");
        try {
            (void)conda::detect_glibc(store, manifest_of({base, missing}));
            FAIL("expected an error");
        } catch (const core::Error& e) {
            CHECK(std::string(e.what()).find("layer 2/2") != std::string::npos);
        }
    }
}

TEST_CASE("virtual_packages: base image facts and defaults") {
    TargetFacts facts{"linux-64", {"PATH=/usr/bin", "CUDA_VERSION=12.4.1"}, "2.35"};
    const auto set = conda::virtual_packages(facts, {}, {});
    const std::vector<VirtualPackage> expected = {
        {"__archspec", "1", "x86_64"}, {"__cuda", "12.4", "0"}, {"__glibc", "2.35", "0"},
        {"__linux", "4.18", "0"},      {"__unix", "0", "0"},
    };
    CHECK(set.packages == expected);
    CHECK(set.origin.at("__cuda") == "base image CUDA_VERSION=12.4.1");
    CHECK(set.origin.at("__glibc") == "base image libc");
    CHECK_FALSE(set.absent_reason.contains("__cuda"));
    CHECK(set.absent_reason.at("__cuda_arch").find("unknown at build time") != std::string::npos);

    const auto plain = conda::virtual_packages({"linux-aarch64", {}, std::nullopt}, {}, {});
    CHECK(find(plain, "__cuda") == nullptr);
    CHECK(find(plain, "__glibc") == nullptr);
    CHECK(plain.absent_reason.at("__cuda") == "the base image sets no CUDA_VERSION");
    CHECK(plain.absent_reason.at("__glibc") == "the base image has no glibc");
    CHECK(plain.absent_reason.at("__cuda_arch") == "__cuda is absent");
    REQUIRE(find(plain, "__archspec") != nullptr);
    CHECK(find(plain, "__archspec")->build == "aarch64");
    CHECK(find(plain, "__unix") != nullptr);
}

TEST_CASE("virtual_packages: CONDA_OVERRIDE_* > recipe > base image") {
    const TargetFacts facts{"linux-64", {"CUDA_VERSION=11.8.0"}, "2.31"};

    const auto recipe = conda::virtual_packages(facts, {{"__cuda", "12.1"}, {"__glibc", "2.28"}}, {});
    CHECK(find(recipe, "__cuda")->version == "12.1");
    CHECK(recipe.origin.at("__cuda") == "recipe virtual_packages");
    CHECK(find(recipe, "__glibc")->version == "2.28");

    const auto env = conda::virtual_packages(facts, {{"__cuda", "12.1"}}, {{"CUDA", "12.4"}});
    CHECK(find(env, "__cuda")->version == "12.4");
    CHECK(env.origin.at("__cuda") == "CONDA_OVERRIDE_CUDA");

    // An empty value removes the package, and says who did.
    const auto removed_by_env = conda::virtual_packages(facts, {{"__cuda", "12.1"}}, {{"CUDA", ""}});
    CHECK(find(removed_by_env, "__cuda") == nullptr);
    CHECK(removed_by_env.absent_reason.at("__cuda") == "CONDA_OVERRIDE_CUDA is empty");
    const auto removed_by_recipe = conda::virtual_packages(facts, {{"__cuda", ""}}, {});
    CHECK(find(removed_by_recipe, "__cuda") == nullptr);
    CHECK(removed_by_recipe.absent_reason.at("__cuda").find("virtual_packages") != std::string::npos);
    // ... and the env can bring it back.
    const auto restored = conda::virtual_packages(facts, {{"__cuda", ""}}, {{"CUDA", "12.0"}});
    CHECK(find(restored, "__cuda")->version == "12.0");
    CHECK_FALSE(restored.absent_reason.contains("__cuda"));

    // A CUDA override on an image without CUDA_VERSION.
    const auto no_cuda = conda::virtual_packages({"linux-64", {}, std::nullopt}, {}, {{"CUDA", "12.4"}});
    CHECK(find(no_cuda, "__cuda")->version == "12.4");
}

TEST_CASE("virtual_packages: __archspec, __cuda_arch, __unix, __linux") {
    const TargetFacts facts{"linux-64", {}, "2.35"};
    const auto arch = conda::virtual_packages(facts, {{"__archspec", "x86_64_v3"}}, {});
    CHECK(*find(arch, "__archspec") == VirtualPackage{"__archspec", "1", "x86_64_v3"});

    // No __cuda_arch without __cuda (CEP 46).
    const auto orphan = conda::virtual_packages(facts, {{"__cuda_arch", "8.0"}}, {});
    CHECK(find(orphan, "__cuda_arch") == nullptr);
    CHECK(orphan.absent_reason.at("__cuda_arch") == "__cuda is absent");
    const auto both = conda::virtual_packages(facts, {{"__cuda_arch", "8.0"}}, {{"CUDA", "12.4"}});
    CHECK(find(both, "__cuda_arch")->version == "8.0");
    CHECK_FALSE(both.absent_reason.contains("__cuda_arch"));

    // __unix belongs to the platform.
    const auto unix_set = conda::virtual_packages(facts, {{"__unix", ""}}, {{"UNIX", "5"}});
    CHECK(*find(unix_set, "__unix") == VirtualPackage{"__unix", "0", "0"});

    const auto linux_set = conda::virtual_packages(facts, {}, {{"LINUX", "6.8.0"}});
    CHECK(find(linux_set, "__linux")->version == "6.8.0");
    CHECK(linux_set.origin.at("__linux") == "CONDA_OVERRIDE_LINUX");
}

TEST_CASE("virtual_packages: a version that does not parse names its origin") {
    const TargetFacts facts{"linux-64", {}, std::nullopt};
    try {
        (void)conda::virtual_packages(facts, {}, {{"CUDA", "12..4"}});
        FAIL("expected an error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()).find("CONDA_OVERRIDE_CUDA") != std::string::npos);
        CHECK(std::string(e.what()).find("12..4") != std::string::npos);
    }
    CHECK_THROWS_AS((void)conda::virtual_packages(facts, {{"__glibc", "2.3?"}}, {}), core::Error);
}
