// One BPF link (an attachment the kernel represents as an object), held by
// its own file descriptor: pin it so the attachment outlives the process,
// swap its program, or close it to detach.
#pragma once
#include <napi.h>
#include <string>

namespace rs {

class LinkHandle : public Napi::ObjectWrap<LinkHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Wraps `fd` (a BPF link), which the new handle owns and closes.
  static Napi::Object NewFromFd(Napi::Env env, int fd);
  explicit LinkHandle(const Napi::CallbackInfo& info);
  ~LinkHandle() override;

 private:
  static Napi::FunctionReference* constructor;
  int Fd(Napi::Env env, const char* op) const;
  std::string What(const char* op) const;

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value UpdateProgram(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);

  int fd_ = -1;
  uint32_t id_ = 0;
};

// Module-level: openPinnedLink.
void InitLinkFunctions(Napi::Env env, Napi::Object exports);

}  // namespace rs
