// libsolv's queue_alloc_one, replaced (ELF interposition: libsolv calls it through its PLT).
//
// Why: libsolv's rule creation walks the dependency graph with a FIFO Queue (queue_shift, then
// queue_push for every provider not yet visited). The stock queue_alloc_one reclaims the slots
// freed by queue_shift by moving the whole queue to the front of its block, even to gain a single
// slot, so with a conda-sized frontier (millions of ids) every push costs a memmove of the queue:
// a PyTorch-sized solve spent over 90% of its time there. This version keeps the same contract
// (elements/count/alloc/left, blocks from malloc/realloc as solv_free expects) but moves only when
// at least half of the block is reclaimed, and otherwise grows the block geometrically.
#include "solv_includes.hpp"

#include <cstdlib>
#include <cstring>

extern "C" __attribute__((visibility("default"))) void queue_alloc_one(Queue* q) {
    constexpr int min_extra = 8;
    if (q->alloc == nullptr) {
        // A queue on a caller's buffer (queue_init_buffer) or a fresh one: copy into a heap block.
        const int extra = q->count > min_extra ? q->count : min_extra;
        auto* block = static_cast<Id*>(std::malloc(static_cast<std::size_t>(q->count + extra) * sizeof(Id)));
        if (block == nullptr) std::abort();  // as libsolv does when out of memory
        if (q->count) std::memcpy(block, q->elements, static_cast<std::size_t>(q->count) * sizeof(Id));
        q->alloc = q->elements = block;
        q->left = extra;
        return;
    }
    const long shifted = q->elements - q->alloc;
    if (shifted > 0 && shifted >= q->count) {
        // Reclaiming the shifted-out slots at least doubles the room: worth one move.
        if (q->count) std::memmove(q->alloc, q->elements, static_cast<std::size_t>(q->count) * sizeof(Id));
        q->elements = q->alloc;
        q->left += static_cast<int>(shifted);
        return;
    }
    const int extra = q->count > min_extra ? q->count : min_extra;
    const std::size_t ids = static_cast<std::size_t>(shifted) + static_cast<std::size_t>(q->count) +
                            static_cast<std::size_t>(q->left) + static_cast<std::size_t>(extra);
    auto* block = static_cast<Id*>(std::realloc(q->alloc, ids * sizeof(Id)));
    if (block == nullptr) std::abort();  // as libsolv does when out of memory
    q->alloc = block;
    q->elements = block + shifted;
    q->left += extra;
}
