#include "common/checkpoint/checkpoint.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

namespace dsv3 {
namespace {

constexpr std::string_view kSub = "checkpoint";
namespace fs = std::filesystem;

StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(kSub, StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return DataLoss(kSub, StrCat(path, ": malformed JSON"));
  return j;
}

bool SafeShardName(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos &&
         s != "." && s != "..";
}

std::string Human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace

LoadProgressFn StderrLoadProgress() {
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto last = std::make_shared<double>(-1e9);
  return [tty, last](const LoadProgress& p) {
    if (!tty && !p.finished && p.seconds - *last < 5.0) return;
    *last = p.seconds;
    const double rate = p.seconds > 0 ? p.bytes_done / p.seconds : 0;
    std::fprintf(stderr, "%sloading weights: shard %d/%d, %s / %s, %s/s, %.1f s%s",
                 tty ? "\r" : "", p.shards_done, p.shards_total, Human(p.bytes_done).c_str(),
                 Human(p.bytes_total).c_str(), Human(rate).c_str(), p.seconds,
                 tty && !p.finished ? "" : "\n");
    std::fflush(stderr);
  };
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = dir;
  if (!fs::is_directory(dir)) return NotFound(kSub, StrCat(dir, ": not a directory"));
  DSV3_ASSIGN_OR_RETURN(c->config_, ModelConfig::FromFile((fs::path(dir) / "config.json").string()));

  // Shard file -> tensor names it should hold, from the index (or the single file).
  std::map<std::string, std::vector<std::string>> by_file;
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  if (fs::exists(index_path)) {
    DSV3_ASSIGN_OR_RETURN(auto index, ReadJsonFile(index_path));
    auto wm = index.find("weight_map");
    if (!index.is_object() || wm == index.end() || !wm->is_object()) {
      return DataLoss(kSub, StrCat(index_path, ": missing 'weight_map' object"));
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string() || !SafeShardName(it->get<std::string>())) {
        return DataLoss(kSub, StrCat(index_path, ": tensor '", it.key(),
                                           "' maps to an invalid shard file name"));
      }
      by_file[it->get<std::string>()].push_back(it.key());
    }
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    by_file["model.safetensors"] = {};
  } else {
    return NotFound(kSub, StrCat(dir, ": neither model.safetensors.index.json nor model.safetensors"));
  }

  for (auto& [file, names] : by_file) {
    const std::string path = (fs::path(dir) / file).string();
    DSV3_ASSIGN_OR_RETURN(auto sf, SafetensorsFile::Open(path));
    if (names.empty()) {
      for (const auto& t : sf->tensors()) names.push_back(t.name);
    }
    for (const auto& n : names) {
      const TensorInfo* info = sf->Find(n);
      if (info == nullptr) {
        return DataLoss(kSub, StrCat(path, ": tensor '", n,
                                           "' is listed in the index but missing from the shard"));
      }
      c->where_.emplace(n, Location{sf.get(), info});
    }
    c->files_.push_back(std::move(sf));
  }
  return c;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [n, loc] : where_) out.push_back(n);
  return out;
}

Status Checkpoint::Load(const std::vector<std::string>& names, const LoadProgressFn& progress,
                        bool copy_to_anonymous) {
  std::map<SafetensorsFile*, std::vector<const TensorInfo*>> per_file;
  LoadProgress p;
  for (const auto& n : names) {
    auto it = where_.find(n);
    if (it == where_.end()) {
      return NotFound(kSub, StrCat(dir_, ": tensor '", n, "' is not in the checkpoint"));
    }
    if (loaded_.count(n)) continue;
    per_file[it->second.file].push_back(it->second.info);
    p.bytes_total += it->second.info->end - it->second.info->begin;
  }
  p.shards_total = static_cast<int>(per_file.size());
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& [file, infos] : per_file) {
    DSV3_ASSIGN_OR_RETURN(uint64_t mapped, file->Map(infos, copy_to_anonymous));
    bytes_mapped_ += mapped;
    ++shards_mapped_;
    for (const TensorInfo* t : infos) {
      file->Prefault(*t);
      loaded_[t->name] = true;
      p.bytes_done += t->end - t->begin;
      p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (progress) progress(p);
    }
    ++p.shards_done;
  }
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  p.finished = true;
  if (progress) progress(p);
  return absl::OkStatus();
}

StatusOr<TensorView> Checkpoint::Get(const std::string& name, std::initializer_list<DType> dtypes,
                                     const std::vector<int64_t>& shape) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return NotFound(kSub, StrCat(dir_, ": missing tensor '", name, "'"));
  }
  const TensorInfo* info = it->second.info;
  const std::string& file = it->second.file->path();
  if (dtypes.size() > 0) {
    bool ok = false;
    std::string allowed;
    for (DType d : dtypes) {
      ok |= d == info->dtype;
      StrAppend(&allowed, allowed.empty() ? "" : "/", DTypeName(d));
    }
    if (!ok) {
      return InvalidArgument(kSub, StrCat(file, ": tensor '", name, "' has dtype ",
                                                DTypeName(info->dtype), ", expected ", allowed));
    }
  }
  if (!shape.empty() && shape != info->shape) {
    auto fmt = [](const std::vector<int64_t>& s) {
      std::string r = "[";
      for (size_t i = 0; i < s.size(); ++i) StrAppend(&r, i ? ", " : "", s[i]);
      return r + "]";
    };
    return InvalidArgument(kSub, StrCat(file, ": tensor '", name, "' has shape ",
                                              fmt(info->shape), ", expected ", fmt(shape)));
  }
  if (!loaded_.count(name)) {
    return Internal(kSub, StrCat(file, ": tensor '", name, "' was not loaded"));
  }
  const void* data = it->second.file->Data(*info);
  if (data == nullptr && info->end > info->begin) {
    return Internal(kSub, StrCat(file, ": tensor '", name, "' was not loaded"));
  }
  return TensorView{info, data};
}

}  // namespace dsv3
