#include "ocibuild/build/base.hpp"

#include <fcntl.h>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/layer/tar_reader.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::build {

using core::Error;
using core::ErrorCategory;

namespace {

// Streams every blobs/sha256/<hex> of an oci-archive into `store`, verified against its name, and
// returns the archive's index.json.
oci::ImageIndex import_oci_archive(const std::filesystem::path& file, const store::Store& store) {
    auto fd = core::open_file(file, O_RDONLY);
    std::optional<oci::ImageIndex> index;
    bool layout_seen = false;
    layer::read_tar(fd.get(), file.string(), [&](const layer::TarEntry& e, const layer::ContentReader& read) {
        if (e.type != layer::EntryType::regular) return;
        if (e.path == "index.json" || e.path == "oci-layout") {
            struct Collect : core::ByteSink {
                std::string data;
                void write(const void* p, std::size_t n) override {
                    if (data.size() + n > (64u << 20)) throw Error(ErrorCategory::invalid_input, "file too large");
                    data.append(static_cast<const char*>(p), n);
                }
            } collect;
            read(collect);
            if (e.path == "index.json") index = oci::ImageIndex::parse(collect.data, file.string() + ":index.json");
            else layout_seen = true;
            return;
        }
        constexpr std::string_view prefix = "blobs/sha256/";
        if (!e.path.starts_with(prefix)) return;
        auto digest = core::Digest::must_parse("sha256:" + e.path.substr(prefix.size()));
        if (store.has(digest)) return;
        auto w = store.ingest();
        read(w);
        (void)w.commit("application/octet-stream", digest, e.size);
    });
    if (!layout_seen || !index)
        throw Error(ErrorCategory::invalid_input, file.string() + " is not an oci-archive (no oci-layout or index.json)");
    return *index;
}

}  // namespace

oci::Descriptor resolve_tag(const oci::ImageIndex& index, std::string_view tag, std::string_view where) {
    std::vector<const oci::Descriptor*> candidates;
    std::string tags;
    for (const auto& m : index.manifests) {
        auto it = m.annotations.find(std::string(oci::annotation_ref_name));
        std::string name = it != m.annotations.end() ? it->second : "";
        tags += (tags.empty() ? "" : ", ") + (name.empty() ? m.digest.str() : name);
        if (tag.empty() || name == tag) candidates.push_back(&m);
    }
    if (candidates.size() == 1) return *candidates.front();
    if (candidates.empty())
        throw Error(ErrorCategory::not_found,
                    "no image tagged \"" + std::string(tag) + "\" in " + std::string(where) + " (it has: " +
                        (tags.empty() ? "nothing" : tags) + ")");
    throw Error(ErrorCategory::invalid_input,
                std::string(where) + " holds " + std::to_string(candidates.size()) +
                    " images; name one with :TAG (" + tags + ")");
}

namespace {

BaseImage load_from(const store::Store& source, const oci::Descriptor& top, const oci::Platform& platform,
                    const store::Store& store, std::string name) {
    bool same = source.root() == store.root();
    auto import_json = [&](const oci::Descriptor& d) {
        auto bytes = source.read_verified(d);
        if (!same) (void)store.put(bytes, d.media_type);
        return bytes;
    };
    oci::Descriptor manifest_desc = top;
    if (oci::media_type::is_index(top.media_type)) {
        (void)import_json(top);
        manifest_desc = select_platform(store, top, platform, name);
    }
    BaseImage base;
    base.manifest = oci::ImageManifest::parse(import_json(manifest_desc), "manifest " + manifest_desc.digest.str());
    base.config = oci::ImageConfig::parse(import_json(base.manifest.config), "config " + base.manifest.config.digest.str());
    if (base.config.diff_ids.size() != base.manifest.layers.size())
        throw Error(ErrorCategory::invalid_input,
                    "image " + manifest_desc.digest.str() + " has " + std::to_string(base.manifest.layers.size()) +
                        " layers but its config lists " + std::to_string(base.config.diff_ids.size()) + " diff_ids");
    for (const auto& l : base.manifest.layers) {
        if (!same) store.import_blob(source, l);
        else if (!store.has(l.digest))
            throw Error(ErrorCategory::not_found, "layer " + l.digest.str() + " is missing from " + source.root().string());
    }
    oci::Platform have{base.config.os, base.config.architecture, base.config.variant, {}, {}};
    if (!have.matches(platform))
        throw Error(ErrorCategory::invalid_input,
                    "base image is " + have.to_string() + " but the recipe builds " + platform.to_string());
    manifest_desc.platform.reset();
    manifest_desc.annotations.clear();
    base.descriptor = manifest_desc;
    base.name = std::move(name);
    return base;
}
}  // namespace

oci::Descriptor select_platform(const store::Store& store, const oci::Descriptor& desc, const oci::Platform& platform,
                                std::string_view what) {
    auto index = oci::ImageIndex::parse(store.read_verified(desc), "index " + desc.digest.str());
    return index.select(platform, what);
}

oci::Descriptor import_local_image(const std::filesystem::path& path, std::string_view tag, bool archive,
                                   const store::Store& store) {
    return core::with_context("reading " + path.string(), [&] {
        if (archive) {
            auto index = import_oci_archive(path, store);
            return resolve_tag(index, tag, path.string());
        }
        auto source = store::Store::open(path, false);
        auto top = resolve_tag(source.index(), tag, path.string());
        auto copy_manifest = [&](const oci::Descriptor& d) {
            (void)store.put(source.read_verified(d), d.media_type);
            auto m = oci::ImageManifest::parse(store.read(d.digest), "manifest " + d.digest.str());
            store.import_blob(source, m.config);
            for (const auto& l : m.layers) store.import_blob(source, l);
        };
        if (oci::media_type::is_index(top.media_type)) {
            (void)store.put(source.read_verified(top), top.media_type);
            auto idx = oci::ImageIndex::parse(store.read(top.digest), "index " + top.digest.str());
            for (const auto& m : idx.manifests)
                if (source.has(m.digest)) copy_manifest(m);
        } else {
            copy_manifest(top);
        }
        top.annotations.clear();
        return top;
    });
}

BaseImage load_base(const recipe::BaseSpec& spec, const oci::Platform& platform, const store::Store& store,
                    registry::RegistryClient* registry) {
    auto where = recipe::to_string(spec.pos);
    return core::with_context(where + ": base " + spec.ref, [&]() -> BaseImage {
        switch (spec.kind) {
            case recipe::BaseSpec::Kind::scratch: {
                BaseImage base;
                base.config.os = platform.os;
                base.config.architecture = platform.architecture;
                base.config.variant = platform.variant;
                base.manifest.config.media_type = oci::media_type::oci_config;
                return base;
            }
            case recipe::BaseSpec::Kind::oci_layout: {
                auto source = store::Store::open(spec.path, false);
                auto top = resolve_tag(source.index(), spec.tag, spec.path.string());
                return load_from(source, top, platform, store, spec.ref);
            }
            case recipe::BaseSpec::Kind::oci_archive: {
                auto index = import_oci_archive(spec.path, store);
                auto top = resolve_tag(index, spec.tag, spec.path.string());
                return load_from(store, top, platform, store, spec.ref);
            }
            case recipe::BaseSpec::Kind::registry: {
                if (registry == nullptr) break;
                auto ref = registry::Reference::parse(spec.tag);
                if (!ref) throw Error(ErrorCategory::invalid_input, "bad reference: " + ref.error().message);
                auto pulled = registry::pull(*registry, *ref, platform, store);
                return load_from(store, pulled.manifest, platform, store, ref->to_string());
            }
        }
        throw Error(ErrorCategory::unsupported, "registry bases need a registry client");
    });
}

}  // namespace ocibuild::build
