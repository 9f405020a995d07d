// ProcessGroup: the local cluster's child processes. Each child's stdout is a pipe (the
// launcher waits for its "listening on" line), stderr goes to a log file; stopping sends
// SIGTERM, then SIGKILL to whatever is still alive after the grace period.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace dsv3 {

class ProcessGroup {
 public:
  explicit ProcessGroup(std::string log_dir) : log_dir_(std::move(log_dir)) {}
  ~ProcessGroup() { StopAll(std::chrono::seconds(5)); }

  // Starts `argv` (extra_env: "K=V" entries added to the environment) and waits for a stdout
  // line starting with `ready_prefix`; returns the rest of that line.
  StatusOr<std::string> Start(const std::string& name, const std::vector<std::string>& argv,
                              const std::string& ready_prefix, std::chrono::seconds timeout,
                              const std::vector<std::string>& extra_env = {},
                              std::vector<std::string>* earlier_lines = nullptr);
  // The name of a child that exited (and its status), or "" when all are alive.
  std::string Exited(int* status);
  void StopAll(std::chrono::milliseconds grace);
  std::string LogPath(const std::string& name) const { return log_dir_ + "/" + name + ".log"; }

 private:
  static Status Unavailable(const std::string& name, int st, const std::string& log);
  struct Child {
    std::string name;
    pid_t pid;
    int out_fd;
  };
  std::string log_dir_;
  std::vector<Child> children_;
};

}  // namespace dsv3
