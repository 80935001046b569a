#include "ocibuild/build/outputs.hpp"

#include <cctype>
#include <set>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/layer/tar_writer.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/manifest.hpp"
#include "ocibuild/oci/media_type.hpp"
#include "ocibuild/registry/reference.hpp"

namespace ocibuild::build {

namespace {
using core::Error;
using core::ErrorCategory;
namespace fs = std::filesystem;

// The blobs an image needs, manifest first.
std::vector<oci::Descriptor> image_blobs(const store::Store& store, const oci::Descriptor& manifest_desc,
                                         oci::ImageManifest& manifest) {
    manifest = oci::ImageManifest::parse(store.read(manifest_desc.digest), "manifest " + manifest_desc.digest.str());
    std::vector<oci::Descriptor> blobs{manifest_desc, manifest.config};
    blobs.insert(blobs.end(), manifest.layers.begin(), manifest.layers.end());
    return blobs;
}

std::string blob_name(const core::Digest& d) {
    return "blobs/" + std::string(d.algorithm()) + "/" + std::string(d.hex());
}

class FileSink : public core::ByteSink {
public:
    explicit FileSink(core::AtomicFile& file) : file_(file) {}
    void write(const void* data, std::size_t size) override { file_.write(data, size); }

private:
    core::AtomicFile& file_;
};

// An archive of an OCI layout holding one image, plus `extra` files (docker's manifest.json).
void write_layout_archive(const store::Store& store, const oci::Descriptor& manifest_desc, std::string_view tag,
                          const fs::path& file, const std::vector<std::pair<std::string, std::string>>& extra,
                          const oci::Annotations& index_annotations) {
    oci::ImageManifest manifest;
    auto blobs = image_blobs(store, manifest_desc, manifest);
    oci::ImageIndex index;
    auto top = manifest_desc;
    top.annotations = index_annotations;
    if (!tag.empty()) top.annotations[std::string(oci::annotation_ref_name)] = std::string(tag);
    index.manifests.push_back(top);

    std::vector<layer::TarEntry> entries;
    auto dir = [&](std::string path) {
        layer::TarEntry e;
        e.path = std::move(path);
        e.type = layer::EntryType::directory;
        e.mode = 0755;
        entries.push_back(std::move(e));
    };
    auto inline_file = [&](std::string path, std::string content) {
        layer::TarEntry e;
        e.path = std::move(path);
        e.size = static_cast<std::int64_t>(content.size());
        e.content = std::move(content);
        entries.push_back(std::move(e));
    };
    dir("blobs");
    dir("blobs/sha256");
    std::set<core::Digest> seen;
    for (const auto& b : blobs) {
        if (!seen.insert(b.digest).second) continue;
        layer::TarEntry e;
        e.path = blob_name(b.digest);
        e.source = store.blob_path(b.digest);
        e.size = b.size;
        entries.push_back(std::move(e));
    }
    inline_file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    inline_file("index.json", index.serialize());
    for (const auto& [name, content] : extra) inline_file(name, content);

    fs::path parent = file.parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    core::AtomicFile out(file, 0644);
    FileSink sink(out);
    layer::write_tar(std::move(entries), 0, sink);
    out.commit();
}

// Splits "PATH:REST" at the last ':' when REST has no '/', as skopeo's oci transports do.
std::pair<std::string, std::string> split_tag(std::string_view s) {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos || s.substr(colon + 1).find('/') != std::string_view::npos) return {std::string(s), ""};
    return {std::string(s.substr(0, colon)), std::string(s.substr(colon + 1))};
}
}  // namespace

Result<OutputSpec> OutputSpec::parse(std::string_view text) {
    OutputSpec out;
    auto colon = text.find(':');
    if (colon == std::string_view::npos)
        return parse_fail("output must be oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]", 0);
    auto transport = text.substr(0, colon);
    auto rest = text.substr(colon + 1);
    if (transport == "oci" || transport == "oci-archive") {
        out.kind = transport == "oci" ? Kind::oci_layout : Kind::oci_archive;
        auto [path, tag] = split_tag(rest);
        out.path = path;
        out.tag = tag;
        if (!out.tag.empty()) {
            for (char c : out.tag)
                if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
                    return parse_fail("bad tag \"" + out.tag + "\"", colon + 1 + path.size() + 1);
        }
    } else if (transport == "docker-archive") {
        out.kind = Kind::docker_archive;
        // As skopeo: the path ends at the first ':'; what follows is a docker reference.
        auto second = rest.find(':');
        out.path = std::string(rest.substr(0, second));
        if (second != std::string_view::npos) {
            auto ref = registry::Reference::parse(rest.substr(second + 1));
            if (!ref) return parse_fail("bad reference: " + ref.error().message, colon + 1 + second + 1 + ref.error().offset);
            if (!ref->digest.empty()) return parse_fail("a docker-archive reference cannot carry a digest", colon + 1 + second + 1);
            out.tag = ref->to_string();
        }
    } else {
        return parse_fail("unknown output transport \"" + std::string(transport) +
                              "\" (use oci:, oci-archive: or docker-archive:)", 0);
    }
    if (out.path.empty()) return parse_fail("output needs a path", colon + 1);
    return out;
}

std::string OutputSpec::to_string() const {
    std::string t = kind == Kind::oci_layout ? "oci" : kind == Kind::oci_archive ? "oci-archive" : "docker-archive";
    return t + ":" + path.string() + (tag.empty() ? "" : ":" + tag);
}

void write_output(const store::Store& store, const oci::Descriptor& manifest_desc, const OutputSpec& out,
                  std::string_view default_tag) {
    core::with_context("writing " + out.to_string(), [&] {
        switch (out.kind) {
            case OutputSpec::Kind::oci_layout: {
                auto layout = store::Store::open(out.path);
                oci::ImageManifest manifest;
                for (const auto& b : image_blobs(store, manifest_desc, manifest)) layout.import_blob(store, b, true);
                auto tag = out.tag.empty() ? std::string(default_tag) : out.tag;
                auto top = manifest_desc;
                top.annotations.clear();
                layout.set_tag(tag, top);
                return;
            }
            case OutputSpec::Kind::oci_archive: {
                write_layout_archive(store, manifest_desc, out.tag.empty() ? default_tag : out.tag, out.path, {}, {});
                return;
            }
            case OutputSpec::Kind::docker_archive: {
                // Docker ≥ 25 layout: an OCI layout plus manifest.json naming the same blobs, which
                // both `docker load` and `podman load` read.
                oci::ImageManifest manifest;
                (void)image_blobs(store, manifest_desc, manifest);
                std::string name = out.tag.empty() ? std::string(default_tag) : out.tag;
                nlohmann::json item = nlohmann::json::object();
                item["Config"] = blob_name(manifest.config.digest);
                item["Layers"] = nlohmann::json::array();
                for (const auto& l : manifest.layers) item["Layers"].push_back(blob_name(l.digest));
                item["RepoTags"] = nlohmann::json::array();
                oci::Annotations annotations;
                std::string tag;
                if (!name.empty()) {
                    auto ref = registry::Reference::parse(name);
                    if (!ref) throw Error(ErrorCategory::invalid_input, "bad image name \"" + name + "\": " + ref.error().message);
                    item["RepoTags"].push_back(ref->name() + ":" + ref->tag);
                    annotations["io.containerd.image.name"] = ref->to_string();
                    tag = ref->tag;
                }
                auto manifest_json = oci::canonical_dump(nlohmann::json::array({item}));
                write_layout_archive(store, manifest_desc, tag, out.path, {{"manifest.json", manifest_json}}, annotations);
                return;
            }
        }
    });
}

}  // namespace ocibuild::build
