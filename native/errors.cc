#include "errors.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

namespace rs {
namespace {

bool capturing = false;
std::string captured;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!capturing) return 0;  // quiet unless an operation asked for its log
  if (level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return 0;
  std::vector<char> buf(static_cast<size_t>(n) + 1);
  vsnprintf(buf.data(), buf.size(), fmt, args);
  captured.append(buf.data(), static_cast<size_t>(n));
  return n;
}

std::string Tail(const std::string& log, size_t max_lines) {
  size_t pos = log.size();
  size_t lines = 0;
  while (pos > 0) {
    size_t nl = log.rfind('\n', pos - 1);
    if (nl == std::string::npos) return log;
    if (nl + 1 < pos) ++lines;  // ignore empty trailing line
    if (lines > max_lines) return log.substr(nl + 1);
    pos = nl;
  }
  return log;
}

Napi::Error MakeErrno(Napi::Env env, int err, const std::string& what) {
  if (err < 0) err = -err;
  if (err == 0) err = EINVAL;
  const char* name = strerrorname_np(err);
  std::string code = name ? name : ("E" + std::to_string(err));
  std::string msg = what + ": " + code + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(LibbpfPrint); }

void BeginLogCapture() {
  captured.clear();
  capturing = true;
}

std::string EndLogCapture() {
  capturing = false;
  std::string out;
  out.swap(captured);
  return out;
}

void ThrowErrno(Napi::Env env, int err, const std::string& what) {
  throw MakeErrno(env, err, what);
}

void ThrowErrnoWithLog(Napi::Env env, int err, const std::string& what) {
  std::string log = EndLogCapture();
  Napi::Error e = MakeErrno(env, err, what);
  if (!log.empty()) {
    std::string tail = Tail(log, 25);
    e.Set("message", Napi::String::New(env, e.Message() + "\n" + tail));
    e.Set("log", Napi::String::New(env, log));
  }
  throw e;
}

}  // namespace rs
