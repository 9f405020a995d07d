#include "common/checkpoint/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace dsv3 {
namespace {

constexpr char kSub[] = "checkpoint writer";
namespace fs = std::filesystem;

// Writes everything or reports errno; write(2) may return short counts.
Status WriteAll(int fd, const void* p, size_t n, const std::string& path) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Internal(kSub, StrCat(path, ": write failed: ", std::strerror(errno)));
    b += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// Streams header + data of `ordered` to `sink`, one tensor at a time.
Status Emit(const std::string& header, const std::vector<const TensorToWrite*>& ordered,
            const std::string& label, const std::function<Status(const void*, size_t)>& sink) {
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  DSV3_RETURN_IF_ERROR(sink(len, 8));
  DSV3_RETURN_IF_ERROR(sink(header.data(), header.size()));
  std::vector<uint8_t> buf;
  for (const TensorToWrite* t : ordered) {
    const uint64_t bytes = t->nbytes();
    if (bytes == 0) continue;
    buf.assign(bytes, 0);
    if (!t->fill) return InvalidArgument(kSub, StrCat(label, ": tensor '", t->name, "' has no data"));
    Status s = t->fill(buf.data(), bytes);
    if (!s.ok()) {
      return absl::Status(s.code(), StrCat(label, ": tensor '", t->name, "': ", s.message()));
    }
    DSV3_RETURN_IF_ERROR(sink(buf.data(), bytes));
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t TensorToWrite::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

TensorToWrite TensorFromBytes(std::string name, DType dtype, std::vector<int64_t> shape,
                              std::vector<uint8_t> bytes) {
  TensorToWrite t{std::move(name), dtype, std::move(shape), nullptr};
  auto data = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  t.fill = [data](uint8_t* dst, uint64_t n) -> Status {
    if (n != data->size()) {
      return InvalidArgument(kSub, StrCat("given ", data->size(), " bytes, dtype and shape need ", n));
    }
    if (n > 0) std::memcpy(dst, data->data(), n);
    return absl::OkStatus();
  };
  return t;
}

Status SafetensorsWriter::Add(TensorToWrite t) {
  if (t.name.empty() || t.name == "__metadata__") {
    return InvalidArgument(kSub, StrCat("invalid tensor name '", t.name, "'"));
  }
  for (int64_t d : t.shape) {
    if (d < 0) return InvalidArgument(kSub, StrCat("tensor '", t.name, "': negative dimension"));
  }
  if (!names_.insert(t.name).second) {
    return InvalidArgument(kSub, StrCat("duplicate tensor '", t.name, "'"));
  }
  tensors_.push_back(std::move(t));
  return absl::OkStatus();
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.nbytes();
  return n;
}

std::vector<const TensorToWrite*> SafetensorsWriter::Ordered() const {
  std::vector<const TensorToWrite*> v;
  for (const auto& t : tensors_) v.push_back(&t);
  // The official writer sorts by alignment (dtype size) descending, then name, so every
  // tensor's data starts aligned to its element size.
  std::stable_sort(v.begin(), v.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    if (DTypeSize(a->dtype) != DTypeSize(b->dtype)) return DTypeSize(a->dtype) > DTypeSize(b->dtype);
    return a->name < b->name;
  });
  return v;
}

std::string SafetensorsWriter::Header() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (const TensorToWrite* t : Ordered()) {
    const uint64_t end = off + t->nbytes();
    h[t->name] = {{"dtype", std::string(DTypeName(t->dtype))},
                  {"shape", t->shape},
                  {"data_offsets", {off, end}}};
    off = end;
  }
  std::string s = h.dump();
  // Pad with spaces so the data region starts 8-byte aligned (8 + len is a multiple of 8).
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

StatusOr<std::string> SafetensorsWriter::Serialize() const {
  std::string out;
  DSV3_RETURN_IF_ERROR(Emit(Header(), Ordered(), "<memory>", [&](const void* p, size_t n) {
    out.append(static_cast<const char*>(p), n);
    return absl::OkStatus();
  }));
  return out;
}

Status SafetensorsWriter::WriteFile(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Internal(kSub, StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  Status s = Emit(Header(), Ordered(), path,
                  [&](const void* p, size_t n) { return WriteAll(fd, p, n, tmp); });
  if (::close(fd) != 0 && s.ok()) {
    s = Internal(kSub, StrCat(tmp, ": close failed: ", std::strerror(errno)));
  }
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Internal(kSub, StrCat(path, ": rename failed: ", std::strerror(errno)));
  }
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

std::string ShardFileName(int index, int num_shards) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05d-of-%05d.safetensors", index + 1, num_shards);
  return buf;
}

StatusOr<ShardedWriteResult> WriteShardedCheckpoint(const std::string& dir,
                                                    std::vector<TensorToWrite> tensors,
                                                    int num_shards, const ShardAssignFn& assign) {
  if (num_shards < 1 || num_shards > 99999) {
    return InvalidArgument(kSub, StrCat("shard count must be in [1, 99999], got ", num_shards));
  }
  if (tensors.size() < static_cast<size_t>(num_shards)) {
    return InvalidArgument(kSub, StrCat(num_shards, " shards requested for ", tensors.size(), " tensors"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Internal(kSub, StrCat(dir, ": cannot create directory: ", ec.message()));

  uint64_t total = 0;
  for (const auto& t : tensors) total += t.nbytes();
  std::vector<int> shard_of(tensors.size());
  if (assign) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      shard_of[i] = assign(tensors[i], i);
      if (shard_of[i] < 0 || shard_of[i] >= num_shards) {
        return InvalidArgument(kSub, StrCat("tensor '", tensors[i].name, "' assigned to shard ",
                                                  shard_of[i], " of ", num_shards));
      }
    }
  } else {
    // Contiguous runs of ~total/num_shards bytes: a tensor goes to the shard its middle
    // byte falls in, clamped so shards stay in order, none is skipped and none is empty.
    const size_t n = tensors.size();
    uint64_t acc = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t mid = acc + tensors[i].nbytes() / 2;
      int s = total == 0 ? 0 : static_cast<int>(static_cast<unsigned __int128>(mid) * num_shards / total);
      const int prev = i == 0 ? 0 : shard_of[i - 1];
      const int min_s = std::max(prev, num_shards - static_cast<int>(n - i));
      s = std::clamp(s, min_s, i == 0 ? 0 : prev + 1);
      shard_of[i] = std::min(s, num_shards - 1);
      acc += tensors[i].nbytes();
    }
  }

  std::vector<SafetensorsWriter> writers(num_shards);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  ShardedWriteResult result;
  result.total_size = total;
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t i = 0; i < tensors.size(); ++i) {
    entries.emplace_back(tensors[i].name, ShardFileName(shard_of[i], num_shards));
    result.num_params += tensors[i].numel();
    DSV3_RETURN_IF_ERROR(writers[shard_of[i]].Add(std::move(tensors[i])));
  }
  for (int s = 0; s < num_shards; ++s) {
    if (writers[s].size() == 0) {
      return InvalidArgument(kSub, StrCat("shard ", s + 1, " of ", num_shards, " would be empty"));
    }
  }
  // The index lists names sorted, as transformers' save_pretrained does.
  std::sort(entries.begin(), entries.end());
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].first == entries[i - 1].first) {
      return InvalidArgument(kSub, StrCat("duplicate tensor '", entries[i].first, "'"));
    }
  }
  for (const auto& [name, file] : entries) weight_map[name] = file;

  for (int s = 0; s < num_shards; ++s) {
    const std::string file = ShardFileName(s, num_shards);
    const std::string path = (fs::path(dir) / file).string();
    DSV3_RETURN_IF_ERROR(writers[s].WriteFile(path));
    result.shard_files.push_back(file);
    result.file_bytes += fs::file_size(path, ec);
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string text = index.dump(2) + "\n";
  int fd = ::open(index_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Internal(kSub, StrCat(index_path, ": cannot create: ", std::strerror(errno)));
  Status st = WriteAll(fd, text.data(), text.size(), index_path);
  ::close(fd);
  DSV3_RETURN_IF_ERROR(st);
  result.file_bytes += text.size();
  return result;
}

}  // namespace dsv3
