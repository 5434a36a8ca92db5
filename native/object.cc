#include "object.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "link.h"
#include "map.h"
#include "program.h"

namespace rs {

Napi::Function ObjectHandle::Init(Napi::Env env) {
  return DefineClass(env, "ObjectHandle",
                     {InstanceMethod("setMapMaxEntries", &ObjectHandle::SetMapMaxEntries),
                      InstanceMethod("setMapPinPath", &ObjectHandle::SetMapPinPath),
                      InstanceMethod("reuseMapFd", &ObjectHandle::ReuseMapFd),
                      InstanceMethod("load", &ObjectHandle::Load), InstanceMethod("programs", &ObjectHandle::Programs),
                      InstanceMethod("maps", &ObjectHandle::Maps), InstanceMethod("program", &ObjectHandle::Program),
                      InstanceMethod("map", &ObjectHandle::Map), InstanceMethod("attach", &ObjectHandle::Attach),
                      InstanceMethod("close", &ObjectHandle::Close)});
}

// new ObjectHandle(path): opens (parses) the ELF file; nothing is loaded yet.
ObjectHandle::ObjectHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ObjectHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "object path must be a string");
  path_ = info[0].As<Napi::String>();
  BeginLogCapture();
  obj_ = bpf_object__open_file(path_.c_str(), nullptr);
  if (!obj_) ThrowErrnoWithLog(env, errno, "open BPF object " + path_);
  EndLogCapture();
}

ObjectHandle::~ObjectHandle() {
  if (obj_) bpf_object__close(obj_);
}

bpf_object* ObjectHandle::Obj(Napi::Env env, const char* op) const {
  if (!obj_) ThrowErrno(env, EBADF, std::string(op) + " " + path_ + " (object is closed)");
  return obj_;
}

bpf_map* ObjectHandle::FindMap(Napi::Env env, const std::string& name) const {
  bpf_map* m = bpf_object__find_map_by_name(Obj(env, "find map in"), name.c_str());
  if (!m) ThrowErrno(env, ENOENT, "find map " + name + " in " + path_);
  return m;
}

bpf_program* ObjectHandle::FindProgram(Napi::Env env, const std::string& name) const {
  bpf_program* p = bpf_object__find_program_by_name(Obj(env, "find program in"), name.c_str());
  if (!p) ThrowErrno(env, ENOENT, "find program " + name + " in " + path_);
  return p;
}

Napi::Value ObjectHandle::SetMapMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  int err = bpf_map__set_max_entries(FindMap(env, name), info[1].As<Napi::Number>().Uint32Value());
  if (err) ThrowErrno(env, err, "set max entries of map " + name);
  return env.Undefined();
}

// setMapPinPath(name, path): at load, libbpf reuses the map pinned at `path`
// if one is there (after checking it is compatible) and pins the new map
// there otherwise. This is how state survives an agent restart.
Napi::Value ObjectHandle::SetMapPinPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  std::string path = info[1].As<Napi::String>();
  int err = bpf_map__set_pin_path(FindMap(env, name), path.c_str());
  if (err) ThrowErrno(env, err, "set pin path of map " + name);
  return env.Undefined();
}

// reuseMapFd(name, fd): at load, the object uses the map behind `fd` instead
// of creating its own (libbpf duplicates the fd). libbpf takes over that
// map's definition, name included, without comparing it with the object's.
Napi::Value ObjectHandle::ReuseMapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  bpf_map* m = FindMap(env, name);
  if (loaded_) ThrowErrno(env, EALREADY, "reuse a map fd for map " + name + " (object is already loaded)");
  int err = bpf_map__reuse_fd(m, info[1].As<Napi::Number>().Int32Value());
  if (err) ThrowErrno(env, err, "reuse a map fd for map " + name);
  return env.Undefined();
}

Napi::Value ObjectHandle::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env, "load");
  if (loaded_) ThrowErrno(env, EALREADY, "load " + path_);
  BeginLogCapture();
  int err = bpf_object__load(obj);
  if (err) ThrowErrnoWithLog(env, err, "load BPF object " + path_);
  EndLogCapture();
  loaded_ = true;
  return env.Undefined();
}

Napi::Value ObjectHandle::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_program* p;
  uint32_t i = 0;
  bpf_object__for_each_program(p, Obj(env, "list programs of")) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("section", bpf_program__section_name(p));
    o.Set("type", static_cast<uint32_t>(bpf_program__type(p)));
    out.Set(i++, o);
  }
  return out;
}

Napi::Value ObjectHandle::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_map* m;
  uint32_t i = 0;
  bpf_object__for_each_map(m, Obj(env, "list maps of")) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    o.Set("type", static_cast<uint32_t>(bpf_map__type(m)));
    o.Set("keySize", bpf_map__key_size(m));
    o.Set("valueSize", bpf_map__value_size(m));
    o.Set("maxEntries", bpf_map__max_entries(m));
    o.Set("internal", bpf_map__is_internal(m));
    const char* pin = bpf_map__pin_path(m);
    o.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
    o.Set("pinned", bpf_map__is_pinned(m));
    out.Set(i++, o);
  }
  return out;
}

// program(name) -> ProgramHandle owning a duplicate fd (independent of close()).
Napi::Value ObjectHandle::Program(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  bpf_program* p = FindProgram(env, name);
  int fd = bpf_program__fd(p);
  if (fd < 0) ThrowErrno(env, EBADFD, "program " + name + " is not loaded (call load first)");
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup_fd < 0) ThrowErrno(env, errno, "duplicate fd of program " + name);
  return ProgramHandle::NewFromFd(env, dup_fd);
}

// map(name) -> MapHandle owning a duplicate fd.
Napi::Value ObjectHandle::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  int fd = bpf_map__fd(FindMap(env, name));
  if (fd < 0) ThrowErrno(env, EBADFD, "map " + name + " is not loaded (call load first)");
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup_fd < 0) ThrowErrno(env, errno, "duplicate fd of map " + name);
  return MapHandle::NewFromFd(env, dup_fd);
}

// attach(name) -> LinkHandle: attach a loaded program where its section
// says (tp_btf/..., fentry/..., ...). The handle owns a duplicate of the
// link fd; libbpf's own bpf_link is released at once.
Napi::Value ObjectHandle::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  bpf_program* p = FindProgram(env, name);
  if (bpf_program__fd(p) < 0) ThrowErrno(env, EBADFD, "program " + name + " is not loaded (call load first)");
  BeginLogCapture();
  bpf_link* link = bpf_program__attach(p);
  if (!link) ThrowErrnoWithLog(env, errno, "attach program " + name + " (section " + bpf_program__section_name(p) + ")");
  EndLogCapture();
  int dup_fd = fcntl(bpf_link__fd(link), F_DUPFD_CLOEXEC, 3);
  int err = errno;
  bpf_link__destroy(link);  // closes libbpf's fd; the kernel link lives on in dup_fd
  if (dup_fd < 0) ThrowErrno(env, err, "duplicate fd of the link of program " + name);
  return LinkHandle::NewFromFd(env, dup_fd);
}

Napi::Value ObjectHandle::Close(const Napi::CallbackInfo& info) {
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
  return info.Env().Undefined();
}

}  // namespace rs
