// Whole-image transfers on top of RegistryClient: pull (registry → store) and push (store →
// registry). Blobs move in parallel; manifests are written only after everything they name.
#include <atomic>
#include <thread>

#include "ocibuild/core/error.hpp"
#include "ocibuild/oci/media_type.hpp"
#include "ocibuild/registry/client.hpp"

namespace ocibuild::registry {

namespace {
using core::Error;
using core::ErrorCategory;

Reference by_digest(const Reference& ref, const core::Digest& digest) {
    Reference r = ref;
    r.tag.clear();
    r.digest = digest;
    return r;
}

ManifestBytes stored_manifest(const store::Store& store, const oci::Descriptor& desc) {
    return ManifestBytes{store.read(desc.digest), desc.media_type, desc.digest};
}

void push_image(RegistryClient& client, const store::Store& store, const oci::Descriptor& manifest_desc,
                const Reference& dest, std::string_view tag_or_digest, const std::string& mount_from) {
    auto bytes = stored_manifest(store, manifest_desc);
    auto manifest = oci::ImageManifest::parse(bytes.bytes, "manifest " + manifest_desc.digest.str());
    std::vector<oci::Descriptor> blobs{manifest.config};
    blobs.insert(blobs.end(), manifest.layers.begin(), manifest.layers.end());
    client.parallel_for(blobs.size(), [&](std::size_t i) { client.push_blob(dest, blobs[i], store, mount_from); });
    client.put_manifest(dest, tag_or_digest, bytes);
}
}  // namespace

void RegistryClient::parallel_for(std::size_t count, const std::function<void(std::size_t)>& fn) const {
    unsigned workers = std::max(1u, std::min<unsigned>(options_.parallel_transfers, static_cast<unsigned>(count)));
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto work = [&] {
        while (!failed) {
            auto i = next++;
            if (i >= count) return;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard lock(error_mutex);
                if (!first_error) first_error = std::current_exception();
                failed = true;
            }
        }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < workers; ++t) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
    if (first_error) std::rethrow_exception(first_error);
}

PullResult pull(RegistryClient& client, const Reference& ref, const oci::Platform& platform, const store::Store& store) {
    return core::with_context("pulling " + ref.to_string(), [&] {
        auto top_bytes = client.get_manifest(ref);
        auto top = store.put(top_bytes.bytes, top_bytes.media_type);
        PullResult result{top, top};
        if (oci::media_type::is_index(top_bytes.media_type)) {
            auto index = oci::ImageIndex::parse(top_bytes.bytes, "index " + top.digest.str());
            const auto& chosen = index.select(platform, ref.to_string());
            auto child = client.get_manifest(by_digest(ref, chosen.digest));
            result.manifest = store.put(child.bytes, child.media_type);
        }
        auto manifest = oci::ImageManifest::parse(store.read(result.manifest.digest), "manifest " + result.manifest.digest.str());
        std::vector<oci::Descriptor> blobs{manifest.config};
        blobs.insert(blobs.end(), manifest.layers.begin(), manifest.layers.end());
        for (const auto& b : blobs) {
            if (!b.urls.empty() && (b.media_type.find("nondistributable") != std::string::npos ||
                                    b.media_type.find("foreign") != std::string::npos))
                throw Error(ErrorCategory::unsupported, "non-distributable layer " + b.digest.str() + " is not supported");
        }
        Reference repo = ref;
        client.parallel_for(blobs.size(), [&](std::size_t i) { client.fetch_blob(repo, blobs[i], store); });
        store.set_tag(ref.to_string(), top);
        return result;
    });
}

void push(RegistryClient& client, const store::Store& store, const oci::Descriptor& top, const Reference& dest,
          const std::string& mount_from) {
    core::with_context("pushing to " + dest.to_string(), [&] {
        std::string target = dest.tag.empty() ? top.digest.str() : dest.tag;
        if (!dest.digest.empty() && dest.digest != top.digest)
            throw Error(ErrorCategory::invalid_input,
                        "destination pins " + dest.digest.str() + " but the image is " + top.digest.str());
        if (oci::media_type::is_index(top.media_type)) {
            auto index = oci::ImageIndex::parse(store.read(top.digest), "index " + top.digest.str());
            for (const auto& m : index.manifests) {
                if (!store.has(m.digest))
                    throw Error(ErrorCategory::not_found,
                                "the index names " + m.digest.str() + " which is not in the store (pulled for one platform only?)");
                push_image(client, store, m, dest, m.digest.str(), mount_from);
            }
            client.put_manifest(dest, target, stored_manifest(store, top));
        } else {
            push_image(client, store, top, dest, target, mount_from);
        }
    });
}

}  // namespace ocibuild::registry
