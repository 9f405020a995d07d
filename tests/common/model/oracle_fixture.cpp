#include "oracle_fixture.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace dsv3::testing {

std::string SharedDir() {
  if (const char* env = std::getenv("DSV3_SHARED_DIR"); env && *env) return env;
  return DSV3_SHARED_DIR;
}

std::string OracleDir(const std::string& name) {
  std::string d = SharedDir() + "/oracle/" + name;
  return std::filesystem::is_directory(d) ? d : "";
}

std::vector<float> ReadF32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  const auto n = static_cast<size_t>(in.tellg());
  std::vector<float> v(n / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

std::vector<double> LogSoftmax(const float* logits, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(logits[i] - mx);
  const double lse = mx + std::log(s);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
  return out;
}

int64_t Argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

std::unique_ptr<OracleModel> LoadOracle(const std::string& dir, kernels::CpuIsa isa, int threads) {
  auto m = std::make_unique<OracleModel>();
  m->dir = dir;
  std::ifstream in(dir + "/golden.json");
  m->golden = nlohmann::json::parse(in, nullptr, false);
  EXPECT_FALSE(m->golden.is_discarded()) << "golden.json unreadable in " << dir;
  auto ck = Checkpoint::Open(dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  if (!ck.ok()) return nullptr;
  m->ckpt = std::move(*ck);
  auto w = LoadModelWeights(*m->ckpt, WeightSelection{});
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  m->weights = std::move(*w);
  std::string err;
  m->backend = kernels::MakeCpuBackend({isa, threads}, &err);
  if (!m->backend) {
    ADD_FAILURE() << err;
    return nullptr;
  }
  m->model = std::make_unique<Transformer>(m->ckpt->config(), m->weights, *m->backend);
  return m;
}

}  // namespace dsv3::testing
