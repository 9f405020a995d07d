// ProcessGroup: the local cluster's child processes, supervised. Each child's stdout is a
// pipe (the launcher waits for its "listening on" line), stderr goes to a log file, its pid
// to <log dir>/<name>.pid. A child that exits is restarted with exponential backoff (a
// crash loop gives up after max_crashes in window, saying so); the others keep running.
// Stopping sends SIGTERM in reverse start order, then SIGKILL after the grace period.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace dsv3 {

struct RestartPolicy {
  std::chrono::milliseconds first_delay{500};  // doubled after each crash ...
  std::chrono::milliseconds max_delay{10000};  // ... up to this
  int max_crashes = 5;                         // crashes within `window` before giving up
  std::chrono::seconds window{60};
  std::chrono::seconds stable{30};             // up this long: the delay starts over
  std::chrono::seconds ready_timeout{600};     // a restart must print its ready line within this
};

class ProcessGroup {
 public:
  explicit ProcessGroup(std::string log_dir, RestartPolicy policy = {})
      : log_dir_(std::move(log_dir)), policy_(policy) {}
  ~ProcessGroup() { StopAll(std::chrono::seconds(5)); }

  // Starts `argv` (extra_env: "K=V" entries added to the environment) and waits for a stdout
  // line starting with `ready_prefix`; returns the rest of that line.
  StatusOr<std::string> Start(const std::string& name, const std::vector<std::string>& argv,
                              const std::string& ready_prefix, std::chrono::seconds timeout,
                              const std::vector<std::string>& extra_env = {},
                              std::vector<std::string>* earlier_lines = nullptr);
  // The command line restarts of `name` use (e.g. its first start's port instead of 0, so
  // the others still reach it at the address they were given).
  void SetRestartArgv(const std::string& name, std::vector<std::string> argv);
  // Reaps exited children and restarts those whose delay has passed; `log` gets one line per
  // event (exit with its cause, restart, giving up). Call it regularly.
  void Supervise(const std::function<void(const std::string&)>& log);
  void StopAll(std::chrono::milliseconds grace);
  std::string LogPath(const std::string& name) const { return log_dir_ + "/" + name + ".log"; }
  std::string PidPath(const std::string& name) const { return log_dir_ + "/" + name + ".pid"; }

 private:
  struct Child {
    std::string name;
    std::vector<std::string> argv;
    std::string ready_prefix;
    std::vector<std::string> extra_env;
    pid_t pid = -1;
    bool given_up = false;
    std::chrono::steady_clock::time_point started, restart_at;
    std::chrono::milliseconds delay{0};
    std::deque<std::chrono::steady_clock::time_point> crashes;
    int restarts = 0;
  };
  static Status Unavailable(const std::string& name, int st, const std::string& log);
  // fork + exec + wait for the ready line; the log is appended to on restarts.
  StatusOr<std::string> Spawn(Child& c, std::chrono::seconds timeout, bool append_log,
                              std::vector<std::string>* earlier_lines);
  void WritePid(const Child& c) const;
  // Counts a crash in the window: false (and given up) at max_crashes, else the next
  // restart is scheduled after the doubled delay.
  bool ScheduleAfterCrash(Child& c, std::chrono::steady_clock::time_point now) const;

  std::string log_dir_;
  RestartPolicy policy_;
  std::vector<Child> children_;
};

// "signal 9 (Killed)" / "status 1".
std::string DescribeExit(int wait_status);

}  // namespace dsv3
