// One BPF ELF object: open, configure maps (size, pin path), load, hand out
// programs and maps as independent handles, attach programs by section, close.
#pragma once
#include <napi.h>
#include <string>

struct bpf_object;
struct bpf_map;
struct bpf_program;

namespace rs {

class ObjectHandle : public Napi::ObjectWrap<ObjectHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ObjectHandle(const Napi::CallbackInfo& info);
  ~ObjectHandle() override;

 private:
  bpf_object* Obj(Napi::Env env, const char* op) const;
  bpf_map* FindMap(Napi::Env env, const std::string& name) const;
  bpf_program* FindProgram(Napi::Env env, const std::string& name) const;

  Napi::Value SetMapMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value SetMapPinPath(const Napi::CallbackInfo& info);
  Napi::Value ReuseMapFd(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bpf_object* obj_ = nullptr;
  std::string path_;
  bool loaded_ = false;
};

}  // namespace rs
