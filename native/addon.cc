// routeshift native addon: a thin, synchronous layer over the system libbpf.
// One JS call is one libbpf call; policy lives in TypeScript (src/bpf/).
#include <bpf/libbpf.h>
#include <net/if.h>
#include <napi.h>

#include <cerrno>
#include <string>

#include "errors.h"
#include "map.h"
#include "object.h"
#include "program.h"

namespace rs {
void InitNetnsFunctions(Napi::Env env, Napi::Object exports);
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  rs::InstallLibbpfPrint();
  exports.Set("ObjectHandle", rs::ObjectHandle::Init(env));
  rs::InitMapFunctions(env, exports);
  rs::InitProgramFunctions(env, exports);
  rs::InitNetnsFunctions(env, exports);
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  return exports;
}

}  // namespace

NODE_API_MODULE(routeshift_native, Init)
