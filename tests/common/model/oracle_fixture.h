// Helpers for the oracle fixtures in ../shared/oracle (golden outputs of the official
// DeepSeek-V3 reference in float32). Tests skip, saying so, when the fixtures are absent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checkpoint/checkpoint.h"
#include "common/model/transformer.h"
#include "kernels/backend.h"

namespace dsv3::testing {

std::string SharedDir();
// "" when the fixture directory does not exist.
std::string OracleDir(const std::string& name);

struct OracleModel {
  std::string dir;
  nlohmann::json golden;
  std::unique_ptr<Checkpoint> ckpt;
  ModelWeights weights;
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<Transformer> model;
};

// Loads checkpoint + golden.json + a CPU backend with the given ISA. Fails the test on error.
std::unique_ptr<OracleModel> LoadOracle(const std::string& dir, kernels::CpuIsa isa = kernels::CpuIsa::kAuto,
                                        int threads = 2);
std::vector<float> ReadF32(const std::string& path);
// log-softmax of one logits row in double.
std::vector<double> LogSoftmax(const float* logits, int64_t n);
int64_t Argmax(const float* v, int64_t n);

}  // namespace dsv3::testing
