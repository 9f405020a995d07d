// Process-level allocator settings, called once from main() of each service/tool.
// Activations and wire buffers are MBs each and reallocated every MoE layer; glibc would
// mmap and unmap them each time (a page fault per 4 KiB, zero-filled). Keeping them on
// the heap makes reuse free.
#pragma once

#include <malloc.h>

namespace dsv3 {

inline void TuneAllocatorForLargeBuffers() {
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace dsv3
