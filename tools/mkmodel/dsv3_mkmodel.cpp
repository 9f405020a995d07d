// dsv3-mkmodel: writes a random-weight DeepSeek-V3 checkpoint in the Hugging Face layout.
//
//   dsv3-mkmodel --preset tiny|bench-s --dtype bf16|fp8 [--seed S] [--set key=value ...]
//                [--shards N] --out DIR
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/mkmodel/random_checkpoint.h"

namespace {

constexpr const char* kUsage =
    "usage: dsv3-mkmodel --preset tiny|bench-s --dtype bf16|fp8 [--seed S]\n"
    "                    [--set key=value ...] [--shards N] --out DIR\n"
    "  --set     override a config.json field; dotted keys reach nested objects\n"
    "            (e.g. --set num_hidden_layers=4 --set rope_scaling.factor=32\n"
    "             --set q_lora_rank=null); values are JSON, or strings\n"
    "  --shards  number of safetensors shards (default: max(2, size / 512 MiB))\n";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dsv3-mkmodel: %s\n", msg.c_str());
  return 2;
}

bool ParseU64(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 0);
  if (errno != 0 || *end != '\0' || s[0] == '-') return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset, dtype = "bf16", out;
  uint64_t seed = 0, shards = 0;
  std::vector<std::string> sets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--preset") {
      if (!value(&preset)) return Fail("--preset needs a value");
    } else if (a == "--dtype") {
      if (!value(&dtype)) return Fail("--dtype needs a value");
    } else if (a == "--out") {
      if (!value(&out)) return Fail("--out needs a value");
    } else if (a == "--seed") {
      if (!value(&v) || !ParseU64(v, &seed)) return Fail("--seed needs a non-negative integer");
    } else if (a == "--shards") {
      if (!value(&v) || !ParseU64(v, &shards) || shards == 0 || shards > 99999) {
        return Fail("--shards needs an integer in [1, 99999]");
      }
    } else if (a == "--set") {
      if (!value(&v)) return Fail("--set needs key=value");
      sets.push_back(v);
    } else {
      return Fail("unknown argument '" + a + "'\n" + kUsage);
    }
  }
  if (preset.empty() || out.empty()) return Fail(std::string("--preset and --out are required\n") + kUsage);
  if (dtype != "bf16" && dtype != "fp8") return Fail("--dtype must be bf16 or fp8, got '" + dtype + "'");

  auto cfg = dsv3::PresetConfig(preset, dtype == "fp8");
  if (!cfg.ok()) return Fail(std::string(cfg.status().message()));
  nlohmann::json j = cfg->ToJson();
  for (const auto& s : sets) {
    auto st = dsv3::ApplyConfigOverride(&j, s);
    if (!st.ok()) return Fail(std::string(st.message()));
  }
  // Re-validate after the overrides so a bad value is reported before anything is written.
  if (auto checked = dsv3::ModelConfig::FromJson(j); !checked.ok()) {
    return Fail("invalid config after --set overrides: " + std::string(checked.status().message()));
  }

  const auto t0 = std::chrono::steady_clock::now();
  auto r = dsv3::WriteRandomCheckpoint(out, j, seed, static_cast<int>(shards));
  if (!r.ok()) return Fail(std::string(r.status().message()));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("dsv3-mkmodel: %s %s seed %llu: %.1fM params, %llu tensor bytes, %llu file bytes, "
              "%d shards, %.1f s -> %s\n",
              preset.c_str(), r->config.quantization.fp8 ? "fp8" : "bf16",
              static_cast<unsigned long long>(seed), r->num_params / 1e6,
              static_cast<unsigned long long>(r->total_size),
              static_cast<unsigned long long>(r->file_bytes), r->num_shards, secs, out.c_str());
  return 0;
}
