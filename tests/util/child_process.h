// Real processes for end-to-end tests: start a binary, read the line it prints when
// ready, kill it (SIGKILL for fault tests), always reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace dsv3::testing {

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;

  // stdout is a pipe (read with ReadLine); stderr goes to `stderr_path` ("" = inherit).
  static ChildProcess Start(const std::vector<std::string>& argv, const std::string& stderr_path = "");
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Next stdout line, or "" if none before the timeout / EOF.
  std::string ReadLine(std::chrono::milliseconds timeout);
  void Kill(int sig);
  int Wait();  // exit status as from waitpid

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buf_;
};

// Starts dsv3-expert-worker and waits for "listening on HOST:PORT"; returns the address
// in *address ("" on failure).
ChildProcess StartExpertWorker(const std::string& model, const std::string& experts, const std::string& transport,
                               std::string* address, const std::string& listen = "127.0.0.1:0",
                               const std::vector<std::string>& extra = {});

// Starts dsv3-attention-worker (--threads 1, a small KV cache unless `extra` says
// otherwise) and waits for its "listening on" line.
ChildProcess StartAttentionWorker(const std::string& model, const std::string& role, std::string* address,
                                  const std::vector<std::string>& extra = {});

}  // namespace dsv3::testing
