#include "tools/launch/process_group.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

extern char** environ;

namespace dsv3 {

namespace {
// "0.5", "10", "0.02": seconds for log lines.
std::string Secs(std::chrono::milliseconds ms) {
  char b[32];
  std::snprintf(b, sizeof(b), "%g", static_cast<double>(ms.count()) / 1000.0);
  return b;
}
}  // namespace

std::string DescribeExit(int st) {
  if (WIFEXITED(st)) return StrCat("status ", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return StrCat("signal ", WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")");
  return "unknown cause";
}

StatusOr<std::string> ProcessGroup::Start(const std::string& name, const std::vector<std::string>& argv,
                                          const std::string& ready_prefix, std::chrono::seconds timeout,
                                          const std::vector<std::string>& extra_env,
                                          std::vector<std::string>* earlier_lines) {
  Child c;
  c.name = name;
  c.argv = argv;
  c.ready_prefix = ready_prefix;
  c.extra_env = extra_env;
  children_.push_back(std::move(c));
  return Spawn(children_.back(), timeout, /*append_log=*/false, earlier_lines);
}

void ProcessGroup::SetRestartArgv(const std::string& name, std::vector<std::string> argv) {
  for (auto& c : children_) {
    if (c.name == name) c.argv = std::move(argv);
  }
}

void ProcessGroup::WritePid(const Child& c) const {
  // Written aside and renamed: whoever reads it sees the old pid or the new one.
  const std::string path = PidPath(c.name), tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << c.pid << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

StatusOr<std::string> ProcessGroup::Spawn(Child& c, std::chrono::seconds timeout, bool append_log,
                                          std::vector<std::string>* earlier_lines) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Internal("launch", StrCat("pipe: ", std::strerror(errno)));
  const std::string log = LogPath(c.name);
  const int log_fd =
      open(log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (append_log ? O_APPEND : O_TRUNC), 0644);
  if (log_fd < 0) {
    close(out[0]);
    close(out[1]);
    return Internal("launch", StrCat("cannot write ", log, ": ", std::strerror(errno)));
  }
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.insert(env.end(), c.extra_env.begin(), c.extra_env.end());
  const pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    close(log_fd);
    return Internal("launch", StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(log_fd, 2);
    setpgid(0, 0);  // Ctrl-C reaches the launcher only; it stops the children in order
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // ...and a killed launcher takes them along
    if (getppid() == 1) _exit(1);      // the launcher died before prctl took effect
    std::vector<char*> args, envp;
    for (const auto& a : c.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  c.pid = pid;
  c.started = std::chrono::steady_clock::now();
  WritePid(c);
  // Read stdout lines until the ready line (everything read also goes to the log).
  std::string buf;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (poll(&p, 1, std::max(1, std::min(left, 200))) > 0) {
      char tmp[4096];
      const ssize_t n = read(out[0], tmp, sizeof(tmp));
      if (n <= 0) break;  // the child closed stdout: it died
      buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line.rfind(c.ready_prefix, 0) == 0) {
          // Keep draining stdout so the child never blocks on a full pipe; the pipe ends
          // with the process.
          const int fd = out[0];
          std::thread([fd] {
            char sink[4096];
            while (read(fd, sink, sizeof(sink)) > 0) {
            }
            close(fd);
          }).detach();
          return line.substr(c.ready_prefix.size());
        }
        if (earlier_lines) earlier_lines->push_back(line);
      }
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      close(out[0]);
      c.pid = -1;
      return Unavailable(c.name, st, log);
    }
  }
  close(out[0]);
  return absl::DeadlineExceededError(StrCat(c.name, " did not become ready within ", timeout.count(), " s; see ", log));
}

Status ProcessGroup::Unavailable(const std::string& name, int st, const std::string& log) {
  return absl::UnavailableError(StrCat(name, " exited during startup (", DescribeExit(st), "); see ", log));
}

bool ProcessGroup::ScheduleAfterCrash(Child& c, std::chrono::steady_clock::time_point now) const {
  c.crashes.push_back(now);
  while (!c.crashes.empty() && now - c.crashes.front() > policy_.window) c.crashes.pop_front();
  if (static_cast<int>(c.crashes.size()) >= policy_.max_crashes) {
    c.given_up = true;
    return false;
  }
  c.delay = c.delay.count() == 0 ? policy_.first_delay : std::min(policy_.max_delay, c.delay * 2);
  c.restart_at = now + c.delay;
  return true;
}

void ProcessGroup::Supervise(const std::function<void(const std::string&)>& log) {
  const auto now = std::chrono::steady_clock::now();
  for (auto& c : children_) {
    if (c.given_up) continue;
    if (c.pid > 0) {
      int st = 0;
      if (waitpid(c.pid, &st, WNOHANG) != c.pid) continue;
      c.pid = -1;
      // A clean exit (a drained SIGTERM from outside) is a restart, not a crash.
      const bool crash = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
      if (now - c.started >= policy_.stable) c.delay = std::chrono::milliseconds(0);
      const std::string what = StrCat(c.name, " exited (", DescribeExit(st), ")");
      if (!crash) {
        c.delay = policy_.first_delay;
        c.restart_at = now + c.delay;
        log(StrCat(what, "; restarting in ", Secs(c.delay), " s. See ", LogPath(c.name)));
      } else if (!ScheduleAfterCrash(c, now)) {
        log(StrCat(what, "; giving up on it after ", c.crashes.size(), " crashes in ", policy_.window.count(),
                   " s (the rest of the cluster keeps running). See ", LogPath(c.name)));
      } else {
        log(StrCat(what, "; restarting in ", Secs(c.delay), " s. See ", LogPath(c.name)));
      }
      continue;
    }
    if (now < c.restart_at) continue;
    ++c.restarts;
    auto r = Spawn(c, policy_.ready_timeout, /*append_log=*/true, nullptr);
    if (r.ok()) {
      log(StrCat(c.name, " restarted on ", *r, " (restart ", c.restarts, ", pid ", c.pid, ")"));
      continue;
    }
    // A failed start is a crash too: back off, and give up on a loop.
    if (c.pid > 0) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
      c.pid = -1;
    }
    const std::string what = StrCat("restart of ", c.name, " failed: ", r.status().message());
    if (!ScheduleAfterCrash(c, std::chrono::steady_clock::now())) {
      log(StrCat(what, "; giving up on it after ", c.crashes.size(), " crashes in ", policy_.window.count(),
                 " s (the rest of the cluster keeps running)"));
    } else {
      log(StrCat(what, "; trying again in ", Secs(c.delay), " s"));
    }
  }
}

void ProcessGroup::StopAll(std::chrono::milliseconds grace) {
  // Reverse start order: the gateway stops taking requests before the workers go.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    if (it->pid > 0) kill(it->pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& c : children_) {
    while (c.pid > 0) {
      int st;
      if (waitpid(c.pid, &st, WNOHANG) == c.pid) {
        c.pid = -1;
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &st, 0);
        c.pid = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  children_.clear();
}

}  // namespace dsv3
