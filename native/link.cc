#include "link.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace rs {

Napi::FunctionReference* LinkHandle::constructor = nullptr;

Napi::Function LinkHandle::Init(Napi::Env env) {
  Napi::Function ctor =
      DefineClass(env, "LinkHandle",
                  {InstanceMethod("info", &LinkHandle::Info), InstanceMethod("pin", &LinkHandle::Pin),
                   InstanceMethod("updateProgram", &LinkHandle::UpdateProgram),
                   InstanceMethod("close", &LinkHandle::Close), InstanceAccessor("fd", &LinkHandle::GetFd, nullptr)});
  constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  return ctor;
}

Napi::Object LinkHandle::NewFromFd(Napi::Env env, int fd) { return constructor->New({Napi::Number::New(env, fd)}); }

// Constructed only from C++ (NewFromFd) with an fd the handle takes over.
LinkHandle::LinkHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LinkHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "LinkHandle is created by BpfObject.attach or openPinnedLink");
  }
  fd_ = info[0].As<Napi::Number>().Int32Value();
  struct bpf_link_info li = {};
  __u32 len = sizeof(li);
  if (bpf_obj_get_info_by_fd(fd_, &li, &len) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    ThrowErrno(env, err, "read link info");
  }
  id_ = li.id;
}

LinkHandle::~LinkHandle() {
  if (fd_ >= 0) close(fd_);
}

int LinkHandle::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, What(op) + " (link handle is closed)");
  return fd_;
}

std::string LinkHandle::What(const char* op) const { return std::string(op) + " link " + std::to_string(id_); }

// info() -> {id, progId, type}; read each time, since updateProgram changes progId.
Napi::Value LinkHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_link_info li = {};
  __u32 len = sizeof(li);
  if (bpf_obj_get_info_by_fd(Fd(env, "read info of"), &li, &len) != 0) ThrowErrno(env, errno, What("read info of"));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("progId", li.prog_id);
  o.Set("type", li.type);
  return o;
}

Napi::Value LinkHandle::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  if (bpf_obj_pin(Fd(env, "pin"), path.c_str()) != 0) ThrowErrno(env, errno, What("pin") + " at " + path);
  return env.Undefined();
}

// updateProgram(progFd): swap the link's program atomically (BPF_LINK_UPDATE);
// link types without program replacement refuse with EINVAL or EOPNOTSUPP.
Napi::Value LinkHandle::UpdateProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "update program of");
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  int err = bpf_link_update(fd, prog_fd, nullptr);
  if (err) ThrowErrno(env, err, What("update program of"));
  return env.Undefined();
}

// close(): drop this handle's reference; the attachment ends unless pinned.
Napi::Value LinkHandle::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

Napi::Value LinkHandle::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

namespace {

// The fd's file is a BPF link. BPF_OBJ_GET opens any pinned object and
// BPF_OBJ_GET_INFO_BY_FD answers for maps and programs too, so check the
// anon inode's name ("bpf-link", or "bpf_link" for the fd made at attach).
bool IsLinkFd(int fd) {
  char target[64] = {};
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(proc.c_str(), target, sizeof(target) - 1);
  if (n <= 0) return false;
  std::string t(target, static_cast<size_t>(n));
  return t == "anon_inode:bpf-link" || t == "anon_inode:bpf_link";
}

// openPinnedLink(path) -> LinkHandle of the link pinned at `path`.
Napi::Value OpenPinnedLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "open pinned link " + path);
  if (!IsLinkFd(fd)) {
    close(fd);
    ThrowErrno(env, EINVAL, "open pinned link " + path + " (the object pinned there is not a link)");
  }
  return LinkHandle::NewFromFd(env, fd);
}

}  // namespace

void InitLinkFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("LinkHandle", LinkHandle::Init(env));
  exports.Set("openPinnedLink", Napi::Function::New(env, OpenPinnedLink));
}

}  // namespace rs
