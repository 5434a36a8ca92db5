// routeshift native addon: a thin, synchronous layer over the system libbpf.
// One JS call is one libbpf call; policy lives in TypeScript (src/bpf/).
#include <bpf/libbpf.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <napi.h>

#include <cerrno>
#include <string>

#include "errors.h"
#include "link.h"
#include "map.h"
#include "object.h"
#include "program.h"

namespace rs {
void InitNetnsFunctions(Napi::Env env, Napi::Object exports);
void InitNetlinkFunctions(Napi::Env env, Napi::Object exports);
}

namespace {

Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), libbpf_num_possible_cpus());
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

// ifNameToIndex(name) -> index in the calling thread's network namespace.
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  std::string name = info[0].As<Napi::String>();
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) rs::ThrowErrno(info.Env(), errno, "find interface " + name);
  return Napi::Number::New(info.Env(), idx);
}

// ifHwAddr(name) -> "aa:bb:cc:dd:ee:ff" in the calling thread's network namespace.
Napi::Value IfHwAddr(const Napi::CallbackInfo& info) {
  std::string name = info[0].As<Napi::String>();
  if (name.size() >= IFNAMSIZ) rs::ThrowErrno(info.Env(), EINVAL, "read MAC of " + name);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) rs::ThrowErrno(info.Env(), errno, "open socket for " + name);
  struct ifreq ifr = {};
  memcpy(ifr.ifr_name, name.c_str(), name.size());
  int rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
  int err = errno;
  close(fd);
  if (rc != 0) rs::ThrowErrno(info.Env(), err, "read MAC of " + name);
  const unsigned char* m = reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data);
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return Napi::String::New(info.Env(), buf);
}

// trimMemory() -> true if malloc gave memory back to the kernel. The heap of
// a long-lived agent is fragmented by a large request's short-lived native
// buffers; malloc_trim returns the free pages inside it (glibc).
Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

// lockFile(path) -> fd holding an exclusive flock(2) on path (created 0644
// if missing). The kernel drops the lock when the fd is closed or the
// process dies, so a killed agent leaves no lock behind. Throws EWOULDBLOCK
// when another process holds it.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) rs::ThrowErrno(info.Env(), errno, "open lock " + path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    rs::ThrowErrno(info.Env(), err, "lock " + path);
  }
  return Napi::Number::New(info.Env(), fd);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  rs::InstallLibbpfPrint();
  exports.Set("ObjectHandle", rs::ObjectHandle::Init(env));
  rs::InitMapFunctions(env, exports);
  rs::InitProgramFunctions(env, exports);
  rs::InitNetnsFunctions(env, exports);
  rs::InitNetlinkFunctions(env, exports);
  rs::InitLinkFunctions(env, exports);
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  exports.Set("ifHwAddr", Napi::Function::New(env, IfHwAddr));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  return exports;
}

}  // namespace

NODE_API_MODULE(routeshift_native, Init)
