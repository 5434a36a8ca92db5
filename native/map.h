// One BPF map, held by its own file descriptor.
#pragma once
#include <napi.h>
#include <string>

namespace rs {

class MapHandle : public Napi::ObjectWrap<MapHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Wraps `fd`, which the new handle owns and closes.
  static Napi::Object NewFromFd(Napi::Env env, int fd);
  explicit MapHandle(const Napi::CallbackInfo& info);
  ~MapHandle() override;

 private:
  static Napi::FunctionReference* constructor;

  void LoadInfo(Napi::Env env);
  int Fd(Napi::Env env, const char* op) const;
  std::string What(const char* op) const;
  size_t ValueBytes() const;  // per-CPU maps: one rounded value per possible CPU
  void CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key, const char* op) const;
  // A value buffer (`what`: its name in the message) must hold exactly one value (per-CPU: all CPUs).
  void CheckValue(Napi::Env env, const Napi::Buffer<uint8_t>& value, const char* op, const char* what) const;

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value BindScratch(const Napi::CallbackInfo& info);
  enum class ScratchOp { kUpdate, kLookup, kDelete };
  // update/lookup/delete on the scratch buffers as plain N-API callbacks
  // bound to this handle (callback data): no unwrap of `this`, one argument.
  template <ScratchOp op>
  static napi_value ScratchCall(napi_env env, napi_callback_info cbinfo);
  Napi::Value ScratchOpOn(Napi::Env env, ScratchOp op, uint32_t flags);
  Napi::Value LookupInto(const Napi::CallbackInfo& info);
  Napi::Value LookupMany(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Freeze(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, key_size_ = 0, value_size_ = 0, max_entries_ = 0, flags_ = 0, id_ = 0;
  bool per_cpu_ = false;
  // One key and one value buffer of the caller's, bound once (bindScratch):
  // single-entry calls then pass no arguments across N-API. The references
  // keep the buffers (and so these pointers) alive while the handle lives.
  Napi::Reference<Napi::Buffer<uint8_t>> scratch_key_ref_, scratch_value_ref_;
  uint8_t* scratch_key_ = nullptr;
  uint8_t* scratch_value_ = nullptr;

};

// Module-level map functions: create, open pinned, open by id.
void InitMapFunctions(Napi::Env env, Napi::Object exports);

}  // namespace rs
