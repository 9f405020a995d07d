#include "common/checkpoint/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

namespace dsv3 {
namespace {

constexpr std::string_view kSub = "checkpoint";

Status Corrupt(std::string_view label, std::string_view tensor, std::string_view what) {
  if (tensor.empty()) return DataLoss(kSub, StrCat(label, ": ", what));
  return DataLoss(kSub, StrCat(label, ": tensor '", tensor, "': ", what));
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

Status ReadExact(int fd, void* buf, size_t n, uint64_t off, std::string_view label) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return DataLoss(kSub, StrCat(label, ": short read at offset ", off));
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(std::string_view header_json,
                                                         uint64_t data_size,
                                                         std::string_view label) {
  nlohmann::json j = nlohmann::json::parse(header_json.begin(), header_json.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) return Corrupt(label, "", "malformed JSON header");
  if (!j.is_object()) return Corrupt(label, "", "JSON header is not an object");
  std::vector<TensorInfo> out;
  out.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) return Corrupt(label, "", "__metadata__ is not an object");
      continue;
    }
    if (name.empty()) return Corrupt(label, "", "empty tensor name");
    const auto& v = *it;
    if (!v.is_object()) return Corrupt(label, name, "entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto of = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return Corrupt(label, name, "missing or non-string dtype");
    if (sh == v.end() || !sh->is_array()) return Corrupt(label, name, "missing or non-array shape");
    if (of == v.end() || !of->is_array() || of->size() != 2) {
      return Corrupt(label, name, "data_offsets must be [begin, end]");
    }
    TensorInfo t;
    t.name = name;
    auto dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return Corrupt(label, name, std::string(dtype.status().message()));
    t.dtype = *dtype;
    if (sh->size() > 8) return Corrupt(label, name, "shape has more than 8 dimensions");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return Corrupt(label, name, "shape entries must be non-negative integers");
      }
      uint64_t dv = d.get<uint64_t>();
      if (dv > (1ull << 40) || MulOverflows(numel, dv, &numel)) {
        return Corrupt(label, name, "shape too large");
      }
      t.shape.push_back(static_cast<int64_t>(dv));
    }
    for (const auto& o : *of) {
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0)) {
        return Corrupt(label, name, "data_offsets must be non-negative integers");
      }
    }
    t.begin = (*of)[0].get<uint64_t>();
    t.end = (*of)[1].get<uint64_t>();
    if (t.begin > t.end) return Corrupt(label, name, "data_offsets begin > end");
    if (t.end > data_size) {
      return Corrupt(label, name,
                     StrCat("data_offsets [", t.begin, ", ", t.end,
                                  ") run past the end of the data region (", data_size,
                                  " bytes): file truncated or offsets out of range"));
    }
    uint64_t bytes = 0;
    if (MulOverflows(numel, DTypeSize(t.dtype), &bytes) || bytes != t.end - t.begin) {
      return Corrupt(label, name,
                     StrCat("byte size ", t.end - t.begin, " does not match dtype ",
                                  DTypeName(t.dtype), " and shape (expected ", bytes, ")"));
    }
    out.push_back(std::move(t));
  }
  // Overlap check on a sorted copy of the ranges (empty tensors cannot overlap).
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : out) {
    if (t.end > t.begin) sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->begin < sorted[i - 1]->end) {
      return Corrupt(label, sorted[i]->name,
                     StrCat("data range overlaps tensor '", sorted[i - 1]->name, "'"));
    }
  }
  return out;
}

SafetensorsFile::~SafetensorsFile() {
  for (const auto& m : maps_) ::munmap(m.base, m.len);
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) {
    return NotFound(kSub, StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(f->fd_, &st) != 0) return DataLoss(kSub, StrCat(path, ": fstat failed"));
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  if (f->file_size_ < 8) {
    return DataLoss(kSub, StrCat(path, ": file is ", f->file_size_,
                                       " bytes, too short for a safetensors header (truncated?)"));
  }
  uint8_t len_bytes[8];
  DSV3_RETURN_IF_ERROR(ReadExact(f->fd_, len_bytes, 8, 0, path));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > f->file_size_ - 8) {
    return DataLoss(kSub, StrCat(path, ": header length ", n, " runs past the end of the file (",
                                       f->file_size_, " bytes): truncated or corrupt"));
  }
  if (n > kMaxSafetensorsHeaderBytes) {
    return DataLoss(kSub, StrCat(path, ": header length ", n, " exceeds the ",
                                       kMaxSafetensorsHeaderBytes, "-byte limit"));
  }
  std::string header(n, '\0');
  DSV3_RETURN_IF_ERROR(ReadExact(f->fd_, header.data(), n, 8, path));
  f->data_start_ = 8 + n;
  DSV3_ASSIGN_OR_RETURN(f->tensors_,
                        ParseSafetensorsHeader(header, f->file_size_ - f->data_start_, path));
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

StatusOr<uint64_t> SafetensorsFile::Map(const std::vector<const TensorInfo*>& wanted, bool copy) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  // Page-aligned [begin, end) file ranges of the wanted tensors not mapped yet.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const TensorInfo* t : wanted) {
    if (t->end == t->begin || Data(*t) != nullptr) continue;
    const uint64_t b = (data_start_ + t->begin) / page * page;
    const uint64_t e = (data_start_ + t->end + page - 1) / page * page;
    ranges.emplace_back(b, std::min(e, (file_size_ + page - 1) / page * page));
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  uint64_t total = 0;
  for (const auto& [b, e] : merged) {
    void* p = nullptr;
    if (copy) {
      p = ::mmap(nullptr, e - b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        return Internal(kSub, StrCat(path_, ": cannot allocate ", e - b, " bytes: ", std::strerror(errno)));
      }
      ::madvise(p, e - b, MADV_HUGEPAGE);
      const uint64_t n = std::min(e, file_size_) - b;
      Status st = ReadExact(fd_, p, n, b, path_);
      if (!st.ok()) {
        ::munmap(p, e - b);
        return st;
      }
      ::mprotect(p, e - b, PROT_READ);
    } else {
      p = ::mmap(nullptr, e - b, PROT_READ, MAP_SHARED, fd_, static_cast<off_t>(b));
      if (p == MAP_FAILED) {
        return Internal(kSub, StrCat(path_, ": mmap of ", e - b, " bytes at offset ", b, " failed: ", std::strerror(errno)));
      }
    }
    maps_.push_back({b, e - b, p});
    total += e - b;
  }
  std::sort(maps_.begin(), maps_.end(), [](const Mapping& x, const Mapping& y) { return x.file_offset < y.file_offset; });
  return total;
}

const uint8_t* SafetensorsFile::Data(const TensorInfo& t) const {
  const uint64_t b = data_start_ + t.begin, e = data_start_ + t.end;
  // Last mapping starting at or before b.
  auto it = std::upper_bound(maps_.begin(), maps_.end(), b,
                             [](uint64_t off, const Mapping& m) { return off < m.file_offset; });
  if (it == maps_.begin()) return nullptr;
  --it;
  if (e > it->file_offset + it->len) return nullptr;
  return static_cast<const uint8_t*>(it->base) + (b - it->file_offset);
}

void SafetensorsFile::Prefault(const TensorInfo& t) const {
  const uint8_t* p = Data(t);
  if (p == nullptr) return;
  const uint64_t n = t.end - t.begin;
  uint8_t sink = 0;
  for (uint64_t i = 0; i < n; i += 4096) sink ^= p[i];
  if (n > 0) sink ^= p[n - 1];
  asm volatile("" : : "r"(sink));  // keep the page touches
}

}  // namespace dsv3
