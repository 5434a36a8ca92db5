// One loaded BPF program, held by its own file descriptor: attach it to XDP
// or TC, or run it on a packet with BPF_PROG_TEST_RUN.
#pragma once
#include <napi.h>
#include <string>

namespace rs {

class ProgramHandle : public Napi::ObjectWrap<ProgramHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object NewFromFd(Napi::Env env, int fd);
  explicit ProgramHandle(const Napi::CallbackInfo& info);
  ~ProgramHandle() override;

 private:
  static Napi::FunctionReference* constructor;
  int Fd(Napi::Env env, const char* op) const;
  std::string What(const char* op) const;

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value AttachXdp(const Napi::CallbackInfo& info);
  Napi::Value AttachTc(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value BindMap(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, id_ = 0;
};

// Module-level: detachXdp, queryXdp, detachTc, destroyTcHook, openPinnedProgram, openProgramById.
void InitProgramFunctions(Napi::Env env, Napi::Object exports);

}  // namespace rs
