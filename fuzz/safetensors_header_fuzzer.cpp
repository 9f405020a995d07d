// libFuzzer target for the safetensors header parser. The input is a whole file:
// [u64 little-endian header length][JSON header][data]. Whatever the bytes, parsing must
// return a Status (never crash, hang or read out of bounds), and an accepted header must
// describe only in-bounds, non-overlapping, correctly sized tensors.
//
// Inputs are also run through the full SafetensorsFile::Open + Map path on an in-memory
// file (memfd), checking that every mapped tensor reads back exactly the input's bytes.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/checkpoint/safetensors_file.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    __builtin_trap();
  }
}

void CheckAccepted(const std::vector<dsv3::TensorInfo>& ts, uint64_t data_size) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : ts) {
    Check(t.begin <= t.end && t.end <= data_size, "tensor range outside the data region");
    uint64_t bytes = dsv3::DTypeSize(t.dtype);
    for (int64_t d : t.shape) {
      Check(d >= 0, "negative dimension accepted");
      bytes *= static_cast<uint64_t>(d);
    }
    Check(bytes == t.end - t.begin, "byte size does not match dtype x shape");
    if (t.end > t.begin) ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) Check(ranges[i].first >= ranges[i - 1].second, "overlap accepted");
}

// Open through the real file path. memfd keeps it off the disk; it costs a few syscalls.
void RunFilePath(const uint8_t* data, size_t size) {
  const int fd = ::memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  if (fd < 0) return;
  size_t off = 0;
  while (off < size) {
    const ssize_t w = ::write(fd, data + off, size - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  if (off == size) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    auto f = dsv3::SafetensorsFile::Open(path);
    if (f.ok()) {
      Check(size >= 8, "file under 8 bytes accepted");
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
      const uint64_t data_start = 8 + n;
      CheckAccepted((*f)->tensors(), size - data_start);
      std::vector<const dsv3::TensorInfo*> all;
      for (const auto& t : (*f)->tensors()) all.push_back(&t);
      if ((*f)->Map(all).ok()) {
        for (const auto* t : all) {
          const uint8_t* p = (*f)->Data(*t);
          if (t->end == t->begin) continue;
          Check(p != nullptr, "mapped tensor has no data pointer");
          Check(std::memcmp(p, data + data_start + t->begin, t->end - t->begin) == 0,
                "mapped bytes differ from the file");
        }
      }
    }
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 8) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n <= size - 8) {
      const std::string_view header(reinterpret_cast<const char*>(data + 8), n);
      const uint64_t data_size = size - 8 - n;
      auto r = dsv3::ParseSafetensorsHeader(header, data_size, "fuzz");
      if (r.ok()) CheckAccepted(*r, data_size);
    }
  }
  RunFilePath(data, size);
  return 0;
}
