#include "child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace dsv3::testing {

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept { *this = std::move(o); }

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    this->~ChildProcess();
    pid_ = o.pid_;
    out_fd_ = o.out_fd_;
    buf_ = std::move(o.buf_);
    o.pid_ = -1;
    o.out_fd_ = -1;
  }
  return *this;
}

ChildProcess ChildProcess::Start(const std::vector<std::string>& argv, const std::string& stderr_path) {
  ChildProcess c;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return c;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    if (!stderr_path.empty()) {
      int e = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (e >= 0) ::dup2(e, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  c.pid_ = pid;
  c.out_fd_ = fds[0];
  return c;
}

std::string ChildProcess::ReadLine(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || out_fd_ < 0) return "";
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
    char tmp[4096];
    const ssize_t n = ::read(out_fd_, tmp, sizeof(tmp));
    if (n <= 0) return "";
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

void ChildProcess::Kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int ChildProcess::Wait() {
  if (pid_ <= 0) return -1;
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return st;
}

ChildProcess StartExpertWorker(const std::string& model, const std::string& experts, const std::string& transport,
                               std::string* address, const std::string& listen, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {std::string(DSV3_BINARY_DIR) + "/services/expert-worker/dsv3-expert-worker",
                                   "--model", model, "--experts", experts, "--listen", listen, "--transport", transport,
                                   "--threads", "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ChildProcess c = ChildProcess::Start(argv, "/dev/null");
  const std::string line = c.ReadLine(std::chrono::seconds(60));
  const std::string prefix = "listening on ";
  *address = line.rfind(prefix, 0) == 0 ? line.substr(prefix.size()) : "";
  return c;
}

ChildProcess StartAttentionWorker(const std::string& model, const std::string& role, std::string* address,
                                  const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {std::string(DSV3_BINARY_DIR) + "/services/attention-worker/dsv3-attention-worker",
                                   "--model", model, "--role", role, "--listen", "127.0.0.1:0", "--threads", "1",
                                   "--worker-id", role};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ChildProcess c = ChildProcess::Start(argv, "/dev/null");
  const std::string line = c.ReadLine(std::chrono::seconds(60));
  const std::string prefix = "listening on ";
  *address = line.rfind(prefix, 0) == 0 ? line.substr(prefix.size()) : "";
  return c;
}

}  // namespace dsv3::testing
