#pragma once
// A byte stream consumer, the seam between producers (tar writer, compressor, HTTP body) and
// consumers (hasher, compressor, store ingest, file). Streams never hold a whole blob in memory.
#include <cstddef>
#include <string_view>

namespace ocibuild::core {

class ByteSink {
public:
    virtual ~ByteSink() = default;
    virtual void write(const void* data, std::size_t size) = 0;
    void write(std::string_view data) { write(data.data(), data.size()); }
    /// Flushes buffered state downstream at end of stream. Called exactly once.
    virtual void finish() {}
};

}  // namespace ocibuild::core
