#include "program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "errors.h"

namespace rs {

Napi::FunctionReference* ProgramHandle::constructor = nullptr;

namespace {

uint32_t U32Opt(const Napi::Object& o, const char* key, uint32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
}

Napi::Object OptsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsObject()) return info[i].As<Napi::Object>();
  return Napi::Object::New(info.Env());
}

enum bpf_tc_attach_point TcPoint(Napi::Env env, const Napi::Value& v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "ingress") return BPF_TC_INGRESS;
  if (s == "egress") return BPF_TC_EGRESS;
  throw Napi::TypeError::New(env, "TC attach point must be 'ingress' or 'egress'");
}

}  // namespace

Napi::Function ProgramHandle::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(
      env, "ProgramHandle",
      {InstanceMethod("info", &ProgramHandle::Info), InstanceMethod("attachXdp", &ProgramHandle::AttachXdp),
       InstanceMethod("attachTc", &ProgramHandle::AttachTc), InstanceMethod("testRun", &ProgramHandle::TestRun),
       InstanceMethod("bindMap", &ProgramHandle::BindMap), InstanceMethod("pin", &ProgramHandle::Pin),
       InstanceMethod("close", &ProgramHandle::Close),
       InstanceAccessor("fd", &ProgramHandle::GetFd, nullptr)});
  constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  return ctor;
}

Napi::Object ProgramHandle::NewFromFd(Napi::Env env, int fd) {
  return constructor->New({Napi::Number::New(env, fd)});
}

ProgramHandle::ProgramHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProgramHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "ProgramHandle is created by BpfObject.program or openPinnedProgram");
  }
  fd_ = info[0].As<Napi::Number>().Int32Value();
  struct bpf_prog_info pi = {};
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd_, &pi, &len) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    ThrowErrno(env, err, "read program info");
  }
  name_ = pi.name;
  type_ = pi.type;
  id_ = pi.id;
}

ProgramHandle::~ProgramHandle() {
  if (fd_ >= 0) close(fd_);
}

int ProgramHandle::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, What(op) + " (program handle is closed)");
  return fd_;
}

std::string ProgramHandle::What(const char* op) const { return std::string(op) + " program " + name_; }

// info() -> {name, id, type, mapIds}. The map ids are read each time:
// bindMap adds to them.
Napi::Value ProgramHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "read info of");
  // Two calls: the first says how many maps, the second fills their ids.
  // Repeated if maps were bound in between.
  std::vector<__u32> ids;
  for (;;) {
    struct bpf_prog_info pi = {};
    pi.nr_map_ids = static_cast<__u32>(ids.size());
    pi.map_ids = reinterpret_cast<__u64>(ids.data());
    __u32 len = sizeof(pi);
    if (bpf_obj_get_info_by_fd(fd, &pi, &len) != 0) ThrowErrno(env, errno, What("read info of"));
    if (pi.nr_map_ids <= ids.size()) {
      ids.resize(pi.nr_map_ids);
      break;
    }
    ids.resize(pi.nr_map_ids);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", name_);
  o.Set("id", id_);
  o.Set("type", type_);
  Napi::Array map_ids = Napi::Array::New(env, ids.size());
  for (uint32_t i = 0; i < ids.size(); i++) map_ids.Set(i, ids[i]);
  o.Set("mapIds", map_ids);
  return o;
}

// attachXdp(ifindex, flags): netlink attach (survives the process).
Napi::Value ProgramHandle::AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "attach XDP");
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  uint32_t flags = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
  int err = bpf_xdp_attach(ifindex, fd, flags, nullptr);
  if (err) ThrowErrno(env, err, What("attach XDP") + " to ifindex " + std::to_string(ifindex));
  return env.Undefined();
}

// attachTc(ifindex, 'ingress'|'egress', {handle, priority}) -> {hookCreated, handle, priority}.
// The clsact hook is created only when absent; the caller learns whether it
// created it, so it can destroy only what it created.
Napi::Value ProgramHandle::AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "attach TC");
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  enum bpf_tc_attach_point point = TcPoint(env, info[1]);
  Napi::Object o = OptsArg(info, 2);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  bool created = true;
  int err = bpf_tc_hook_create(&hook);
  if (err == -EEXIST) {
    created = false;
  } else if (err) {
    ThrowErrno(env, err, "create clsact hook on ifindex " + std::to_string(ifindex));
  }
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd, .flags = U32Opt(o, "flags", 0),
              .handle = U32Opt(o, "handle", 1), .priority = U32Opt(o, "priority", 1));
  err = bpf_tc_attach(&hook, &opts);
  if (err) {
    if (created) {
      hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      bpf_tc_hook_destroy(&hook);  // leave nothing half-made behind
    }
    ThrowErrno(env, err, What("attach TC") + " to ifindex " + std::to_string(ifindex));
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("hookCreated", created);
  r.Set("handle", opts.handle);
  r.Set("priority", opts.priority);
  r.Set("progId", opts.prog_id);
  return r;
}

// testRun(data, {repeat, ctx, dataSizeOut, flags, cpu, batchSize})
//   -> {retval, data, durationNs, ctx}. dataSizeOut 0 means no output
//   (required for BPF_F_TEST_XDP_LIVE_FRAMES).
Napi::Value ProgramHandle::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "test run");
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "packet must be a Buffer");
  auto data = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::Object o = OptsArg(info, 1);
  uint32_t out_size = U32Opt(o, "dataSizeOut", static_cast<uint32_t>(data.Length()) + 512);
  std::vector<uint8_t> out(out_size);
  std::vector<uint8_t> ctx_in, ctx_out;
  Napi::Value ctx = o.Get("ctx");
  uint32_t flags = U32Opt(o, "flags", 0);
  if (ctx.IsBuffer()) {
    auto c = ctx.As<Napi::Buffer<uint8_t>>();
    ctx_in.assign(c.Data(), c.Data() + c.Length());
    // Live frames take a context in but give none back (the kernel refuses ctx_out).
    if (!(flags & BPF_F_TEST_XDP_LIVE_FRAMES)) ctx_out.resize(c.Length());
  }
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data.Data(), .data_out = out_size ? out.data() : nullptr,
              .data_size_in = static_cast<__u32>(data.Length()), .data_size_out = out_size,
              .ctx_in = ctx_in.empty() ? nullptr : ctx_in.data(),
              .ctx_out = ctx_out.empty() ? nullptr : ctx_out.data(),
              .ctx_size_in = static_cast<__u32>(ctx_in.size()),
              .ctx_size_out = static_cast<__u32>(ctx_out.size()),
              .repeat = static_cast<int>(U32Opt(o, "repeat", 1)),
              .flags = flags, .cpu = U32Opt(o, "cpu", 0),
              .batch_size = U32Opt(o, "batchSize", 0));
  int err = bpf_prog_test_run_opts(fd, &opts);
  if (err) ThrowErrno(env, err, What("test run"));
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", opts.retval);
  r.Set("durationNs", opts.duration);
  r.Set("data", Napi::Buffer<uint8_t>::Copy(env, out.data(), out_size ? opts.data_size_out : 0));
  if (!ctx_out.empty()) r.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), opts.ctx_size_out));
  return r;
}

// bindMap(mapFd): the program holds a reference to the map (and lists it in
// its map ids) though its code never uses it, so the map lives as long as
// the attached program and can be found through it.
Napi::Value ProgramHandle::BindMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "bind map to");
  int map_fd = info[0].As<Napi::Number>().Int32Value();
  int err = bpf_prog_bind_map(fd, map_fd, nullptr);
  if (err) ThrowErrno(env, err, What("bind map to"));
  return env.Undefined();
}

Napi::Value ProgramHandle::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  if (bpf_obj_pin(Fd(env, "pin"), path.c_str()) != 0) ThrowErrno(env, errno, What("pin") + " at " + path);
  return env.Undefined();
}

Napi::Value ProgramHandle::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

Napi::Value ProgramHandle::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

namespace {

// detachXdp(ifindex, flags)
Napi::Value DetachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  uint32_t flags = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
  int err = bpf_xdp_detach(ifindex, flags, nullptr);
  if (err) ThrowErrno(env, err, "detach XDP from ifindex " + std::to_string(ifindex));
  return env.Undefined();
}

// queryXdp(ifindex) -> {progId, drvProgId, skbProgId, hwProgId, attachMode}
Napi::Value QueryXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  int err = bpf_xdp_query(ifindex, 0, &q);
  if (err) ThrowErrno(env, err, "query XDP on ifindex " + std::to_string(ifindex));
  Napi::Object r = Napi::Object::New(env);
  r.Set("progId", q.prog_id);
  r.Set("drvProgId", q.drv_prog_id);
  r.Set("skbProgId", q.skb_prog_id);
  r.Set("hwProgId", q.hw_prog_id);
  r.Set("attachMode", q.attach_mode);
  return r;
}

// detachTc(ifindex, 'ingress'|'egress', {handle, priority}) -> true, or false when absent.
Napi::Value DetachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = TcPoint(env, info[1]));
  Napi::Object o = OptsArg(info, 2);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = U32Opt(o, "handle", 1), .priority = U32Opt(o, "priority", 1));
  int err = bpf_tc_detach(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) {
    // EINVAL: no clsact qdisc at all on the device, so nothing is attached.
    return Napi::Boolean::New(env, false);
  }
  if (err) ThrowErrno(env, err, "detach TC from ifindex " + std::to_string(ifindex));
  return Napi::Boolean::New(env, true);
}

// destroyTcHook(ifindex): removes the clsact qdisc (both directions).
Napi::Value DestroyTcHook(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT) ThrowErrno(env, err, "destroy clsact hook on ifindex " + std::to_string(ifindex));
  return env.Undefined();
}

Napi::Value OpenPinnedProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "open pinned program " + path);
  return ProgramHandle::NewFromFd(env, fd);
}

Napi::Value OpenProgramById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(env, errno, "open program id " + std::to_string(id));
  return ProgramHandle::NewFromFd(env, fd);
}

}  // namespace

void InitProgramFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("ProgramHandle", ProgramHandle::Init(env));
  exports.Set("detachXdp", Napi::Function::New(env, DetachXdp));
  exports.Set("queryXdp", Napi::Function::New(env, QueryXdp));
  exports.Set("detachTc", Napi::Function::New(env, DetachTc));
  exports.Set("destroyTcHook", Napi::Function::New(env, DestroyTcHook));
  exports.Set("openPinnedProgram", Napi::Function::New(env, OpenPinnedProgram));
  exports.Set("openProgramById", Napi::Function::New(env, OpenProgramById));
}

}  // namespace rs
