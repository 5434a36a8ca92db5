// Run a synchronous JS callback with the calling thread inside another
// network namespace, then return. BPF_PROG_TEST_RUN (bpf_fib_lookup) and
// netlink attach act in the caller's namespace, so this lets one process
// drive programs in the namespaces of a test topology.
#include <fcntl.h>
#include <napi.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace rs {
namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// inNetns(path, fn) -> fn's return value. `path` is a netns file such as
// /run/netns/NAME. The thread is always switched back, also when fn throws.
Napi::Value InNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsFunction()) {
    throw Napi::TypeError::New(env, "inNetns(path, fn)");
  }
  std::string path = info[0].As<Napi::String>();
  Fd original{open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)};
  if (original.fd < 0) ThrowErrno(env, errno, "open current network namespace");
  Fd target{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (target.fd < 0) ThrowErrno(env, errno, "open network namespace " + path);
  if (setns(target.fd, CLONE_NEWNET) != 0) ThrowErrno(env, errno, "enter network namespace " + path);
  Napi::Value result;
  try {
    result = info[1].As<Napi::Function>().Call({});
  } catch (...) {
    if (setns(original.fd, CLONE_NEWNET) != 0) abort();  // cannot continue in the wrong namespace
    throw;
  }
  if (setns(original.fd, CLONE_NEWNET) != 0) abort();
  return result;
}

// enterNetns(path): move the calling thread into the namespace for good.
// The agent uses it after opening its listening socket, so the API is served
// from where it started while links, netlink and BPF act in the host's
// namespace (test topologies and the demo run hosts as namespaces).
Napi::Value EnterNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  Fd target{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (target.fd < 0) ThrowErrno(env, errno, "open network namespace " + path);
  if (setns(target.fd, CLONE_NEWNET) != 0) ThrowErrno(env, errno, "enter network namespace " + path);
  return env.Undefined();
}

}  // namespace

void InitNetnsFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("inNetns", Napi::Function::New(env, InNetns));
  exports.Set("enterNetns", Napi::Function::New(env, EnterNetns));
}

}  // namespace rs
