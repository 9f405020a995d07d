#include "http_test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace dsv3::testing {

HttpConnection::HttpConnection(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

HttpConnection::~HttpConnection() { Close(); }

void HttpConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool HttpConnection::SendRaw(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool HttpConnection::Fill(std::chrono::steady_clock::time_point deadline) {
  if (fd_ < 0) return false;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char tmp[16384];
  const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<size_t>(n));
  return true;
}

bool HttpConnection::ReadLine(std::string* line, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const size_t nl = buf_.find("\r\n");
    if (nl != std::string::npos) {
      *line = buf_.substr(0, nl);
      buf_.erase(0, nl + 2);
      return true;
    }
    if (!Fill(deadline)) return false;
  }
}

bool HttpConnection::ReadN(size_t n, std::string* out, std::chrono::steady_clock::time_point deadline) {
  while (buf_.size() < n) {
    if (!Fill(deadline)) return false;
  }
  out->append(buf_, 0, n);
  buf_.erase(0, n);
  return true;
}

bool HttpConnection::ReadHead(HttpResponse* r, std::chrono::steady_clock::time_point deadline) {
  std::string line;
  do {
    if (!ReadLine(&line, deadline)) return false;
    // Skip interim 1xx responses.
    if (line.rfind("HTTP/1.1 1", 0) == 0) {
      while (ReadLine(&line, deadline) && !line.empty()) {
      }
      line.clear();
    }
  } while (line.empty());
  if (line.size() < 12 || line.rfind("HTTP/1.", 0) != 0) return false;
  r->status = std::atoi(line.c_str() + 9);
  for (;;) {
    if (!ReadLine(&line, deadline)) return false;
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r->headers[name] = line.substr(v);
  }
  return true;
}

HttpResponse HttpConnection::ReadStreaming(std::chrono::milliseconds timeout,
                                           const std::function<bool(const std::string&)>& on_chunk) {
  HttpResponse r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!ReadHead(&r, deadline)) return r;
  if (r.header("transfer-encoding") == "chunked") {
    for (;;) {
      std::string line;
      if (!ReadLine(&line, deadline)) return r;
      const size_t size = std::strtoul(line.c_str(), nullptr, 16);
      if (size == 0) {
        ReadLine(&line, deadline);
        break;
      }
      std::string chunk;
      if (!ReadN(size, &chunk, deadline) || !ReadLine(&line, deadline)) return r;
      r.body += chunk;
      if (on_chunk && !on_chunk(chunk)) return r;
    }
  } else {
    const std::string cl = r.header("content-length");
    if (!cl.empty() && !ReadN(std::stoul(cl), &r.body, deadline)) return r;
  }
  r.ok = true;
  return r;
}

HttpResponse HttpConnection::ReadResponse(std::chrono::milliseconds timeout) { return ReadStreaming(timeout, nullptr); }

bool HttpConnection::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count())));
    if (rc < 0) return true;
    if (rc == 0) continue;
    char tmp[4096];
    const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return true;
  }
  return false;
}

std::string HttpConnection::Format(const std::string& method, const std::string& path, const std::string& body,
                                   const std::vector<std::string>& headers) {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST" || method == "Post") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  return req;
}

HttpResponse HttpConnection::Request(const std::string& method, const std::string& path, const std::string& body,
                                     const std::vector<std::string>& headers, std::chrono::milliseconds timeout) {
  if (!SendRaw(Format(method, path, body, headers))) return HttpResponse();
  return ReadResponse(timeout);
}

HttpResponse HttpRequestOnce(int port, const std::string& method, const std::string& path, const std::string& body,
                             const std::vector<std::string>& headers) {
  HttpConnection c(port);
  if (!c.connected()) return HttpResponse();
  return c.Request(method, path, body, headers);
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find("\n\n", start);
    const std::string ev = body.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    if (end == std::string::npos) break;
    start = end + 2;
  }
  return out;
}

}  // namespace dsv3::testing
