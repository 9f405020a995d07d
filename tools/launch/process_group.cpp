#include "tools/launch/process_group.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

extern char** environ;

namespace dsv3 {

StatusOr<std::string> ProcessGroup::Start(const std::string& name, const std::vector<std::string>& argv,
                                          const std::string& ready_prefix, std::chrono::seconds timeout,
                                          const std::vector<std::string>& extra_env,
                                          std::vector<std::string>* earlier_lines) {
  int out[2];
  if (pipe(out) != 0) return Internal("launch", StrCat("pipe: ", std::strerror(errno)));
  const std::string log = LogPath(name);
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return Internal("launch", StrCat("cannot write ", log, ": ", std::strerror(errno)));
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  const pid_t pid = fork();
  if (pid < 0) return Internal("launch", StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(log_fd, 2);
    close(out[0]);
    close(out[1]);
    setpgid(0, 0);  // Ctrl-C reaches the launcher only; it stops the children in order
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // ...and a killed launcher takes them along
    if (getppid() == 1) _exit(1);      // the launcher died before prctl took effect
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  children_.push_back({name, pid, out[0]});
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
        if (line.rfind(ready_prefix, 0) == 0) {
          // Keep draining stdout so the child never blocks on a full pipe.
          const int fd = out[0];
          std::thread([fd] {
            char sink[4096];
            while (read(fd, sink, sizeof(sink)) > 0) {
            }
          }).detach();
          return line.substr(ready_prefix.size());
        }
        if (earlier_lines) earlier_lines->push_back(line);
      }
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      children_.back().pid = -1;
      return Unavailable(name, st, log);
    }
  }
  return absl::DeadlineExceededError(StrCat(name, " did not become ready within ", timeout.count(), " s; see ", log));
}

Status ProcessGroup::Unavailable(const std::string& name, int st, const std::string& log) {
  return absl::UnavailableError(StrCat(name, " exited during startup (",
                                       WIFEXITED(st) ? StrCat("status ", WEXITSTATUS(st)) : StrCat("signal ", WTERMSIG(st)),
                                       "); see ", log));
}

std::string ProcessGroup::Exited(int* status) {
  for (auto& c : children_) {
    if (c.pid <= 0) continue;
    if (waitpid(c.pid, status, WNOHANG) == c.pid) {
      c.pid = -1;
      return c.name;
    }
  }
  return "";
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
