#include "map.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "errors.h"

namespace rs {

Napi::FunctionReference* MapHandle::constructor = nullptr;

namespace {

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, uint32_t fallback) {
  if (info.Length() <= i || info[i].IsUndefined()) return fallback;
  return info[i].As<Napi::Number>().Uint32Value();
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace

Napi::Function MapHandle::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(
      env, "MapHandle",
      {InstanceMethod("info", &MapHandle::Info), InstanceMethod("bindScratch", &MapHandle::BindScratch),
       InstanceMethod("lookupInto", &MapHandle::LookupInto),
       InstanceMethod("lookupMany", &MapHandle::LookupMany),
       InstanceMethod("update", &MapHandle::Update), InstanceMethod("delete", &MapHandle::Delete),
       InstanceMethod("nextKey", &MapHandle::NextKey),
       InstanceMethod("updateBatch", &MapHandle::UpdateBatch),
       InstanceMethod("lookupBatch", &MapHandle::LookupBatch),
       InstanceMethod("deleteBatch", &MapHandle::DeleteBatch), InstanceMethod("pin", &MapHandle::Pin),
       InstanceMethod("freeze", &MapHandle::Freeze), InstanceMethod("close", &MapHandle::Close),
       InstanceAccessor("fd", &MapHandle::GetFd, nullptr)});
  constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  return ctor;
}

Napi::Object MapHandle::NewFromFd(Napi::Env env, int fd) {
  return constructor->New({Napi::Number::New(env, fd)});
}

// Constructed only from C++ (NewFromFd) with an fd the handle takes over.
MapHandle::MapHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MapHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "MapHandle is created by openPinnedMap/createMap/BpfObject.map");
  }
  fd_ = info[0].As<Napi::Number>().Int32Value();
  LoadInfo(env);
}

MapHandle::~MapHandle() {
  if (fd_ >= 0) close(fd_);
}

void MapHandle::LoadInfo(Napi::Env env) {
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd_, &mi, &len) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    ThrowErrno(env, err, "read map info");
  }
  name_ = mi.name;
  type_ = mi.type;
  key_size_ = mi.key_size;
  value_size_ = mi.value_size;
  max_entries_ = mi.max_entries;
  flags_ = mi.map_flags;
  id_ = mi.id;
  per_cpu_ = IsPerCpu(type_);
}

int MapHandle::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, What(op) + " (map handle is closed)");
  return fd_;
}

std::string MapHandle::What(const char* op) const { return std::string(op) + " map " + name_; }

size_t MapHandle::ValueBytes() const {
  if (!per_cpu_) return value_size_;
  size_t rounded = (value_size_ + 7) & ~static_cast<size_t>(7);
  return rounded * static_cast<size_t>(libbpf_num_possible_cpus());
}

void MapHandle::CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key, const char* op) const {
  if (key.Length() != key_size_) {
    throw Napi::RangeError::New(env, What(op) + ": key is " + std::to_string(key.Length()) +
                                         " bytes, map key size is " + std::to_string(key_size_));
  }
}

void MapHandle::CheckValue(Napi::Env env, const Napi::Buffer<uint8_t>& value, const char* op, const char* what) const {
  if (value.Length() != ValueBytes()) {
    throw Napi::RangeError::New(env, What(op) + ": " + what + " is " + std::to_string(value.Length()) +
                                         " bytes, expected " + std::to_string(ValueBytes()));
  }
}

Napi::Value MapHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", name_);
  o.Set("id", id_);
  o.Set("type", type_);
  o.Set("keySize", key_size_);
  o.Set("valueSize", value_size_);
  o.Set("maxEntries", max_entries_);
  o.Set("flags", flags_);
  o.Set("perCpu", per_cpu_);
  o.Set("possibleCpus", libbpf_num_possible_cpus());
  return o;
}

// bindScratch(key, value) -> { update(flags), lookup(), delete() }: the
// single-entry calls on these two buffers (a key of the key size, a value of
// the value size, per CPU: all CPUs), checked here once. The calls take no
// buffers and skip node-addon-api's wrapping: the ≈ 12 N-API calls of an
// ordinary method (unwrap, type and info of each buffer, the flags) made a
// pre-encoded update ≈ 1.5× C's (bench/README.md). Each function holds the handle
// (a read-only property), so the handle and its buffers outlive it.
Napi::Value MapHandle::BindScratch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = BufferArg(info, 0, "scratch key");
  auto value = BufferArg(info, 1, "scratch value");
  CheckKey(env, key, "bind scratch of");
  CheckValue(env, value, "bind scratch of", "scratch value");
  scratch_key_ref_ = Napi::Persistent(key);
  scratch_value_ref_ = Napi::Persistent(value);
  scratch_key_ = key.Data();
  scratch_value_ = value.Data();
  Napi::Object ops = Napi::Object::New(env);
  auto bind = [&](const char* name, napi_callback cb) {
    napi_value fn;
    NAPI_THROW_IF_FAILED(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, this, &fn), Napi::Value());
    Napi::Function f(env, fn);
    f.DefineProperty(Napi::PropertyDescriptor::Value("handle", info.This(), napi_default));
    ops.Set(name, f);
    return Napi::Value();
  };
  bind("update", &MapHandle::ScratchCall<ScratchOp::kUpdate>);
  bind("lookup", &MapHandle::ScratchCall<ScratchOp::kLookup>);
  bind("delete", &MapHandle::ScratchCall<ScratchOp::kDelete>);
  return ops;
}

template <MapHandle::ScratchOp op>
napi_value MapHandle::ScratchCall(napi_env raw_env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value arg = nullptr;
  void* data = nullptr;
  if (napi_get_cb_info(raw_env, cbinfo, &argc, &arg, nullptr, &data) != napi_ok) return nullptr;
  uint32_t flags = BPF_ANY;
  if (op == ScratchOp::kUpdate && argc > 0) napi_get_value_uint32(raw_env, arg, &flags);  // not a number: BPF_ANY
  Napi::Env env(raw_env);
  try {
    return static_cast<MapHandle*>(data)->ScratchOpOn(env, op, flags);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  }
}

Napi::Value MapHandle::ScratchOpOn(Napi::Env env, ScratchOp op, uint32_t flags) {
  const char* what = op == ScratchOp::kUpdate ? "update" : op == ScratchOp::kLookup ? "lookup in" : "delete from";
  int fd = Fd(env, what);
  int rc = op == ScratchOp::kUpdate   ? bpf_map_update_elem(fd, scratch_key_, scratch_value_, flags)
           : op == ScratchOp::kLookup ? bpf_map_lookup_elem(fd, scratch_key_, scratch_value_)
                                      : bpf_map_delete_elem(fd, scratch_key_);
  if (rc != 0) {
    int err = errno;
    if (err == ENOENT && op != ScratchOp::kUpdate) return Napi::Boolean::New(env, false);
    ThrowErrno(env, err, What(what));
  }
  if (op == ScratchOp::kUpdate) return Napi::Value();  // undefined
  return Napi::Boolean::New(env, true);
}

// lookupInto(key, out) -> true when found (the value is written into `out`),
// false when absent. No allocation per call: the agent looks keys up by the
// hundred thousand while staging a batch.
Napi::Value MapHandle::LookupInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "lookup in");
  auto key = BufferArg(info, 0, "key");
  auto out = BufferArg(info, 1, "out");
  CheckKey(env, key, "lookup in");
  CheckValue(env, out, "lookup in", "out");
  if (bpf_map_lookup_elem(fd, key.Data(), out.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, What("lookup in"));
  }
  return Napi::Boolean::New(env, true);
}

// lookupMany(keys, count, values, found) -> how many were found. `keys` holds
// `count` keys back to back; value i goes to `values` at i * value size and
// found[i] is 1 (0 when absent, its value bytes untouched). One crossing of
// the N-API boundary for a page of entries instead of one per key (the
// kernel has no batched lookup of given keys: BPF_MAP_LOOKUP_BATCH walks).
Napi::Value MapHandle::LookupMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "lookup in");
  auto keys = BufferArg(info, 0, "keys");
  uint32_t count = U32Arg(info, 1, 0);
  auto values = BufferArg(info, 2, "values");
  auto found = BufferArg(info, 3, "found");
  size_t vb = ValueBytes();
  if (keys.Length() != static_cast<size_t>(count) * key_size_ || values.Length() != static_cast<size_t>(count) * vb ||
      found.Length() != count) {
    throw Napi::RangeError::New(env, What("lookup in") + ": buffers do not hold " + std::to_string(count) +
                                         " keys, values and found flags");
  }
  uint32_t n = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (bpf_map_lookup_elem(fd, keys.Data() + static_cast<size_t>(i) * key_size_, values.Data() + i * vb) == 0) {
      found.Data()[i] = 1;
      n++;
    } else if (errno == ENOENT) {
      found.Data()[i] = 0;
    } else {
      ThrowErrno(env, errno, What("lookup in"));
    }
  }
  return Napi::Number::New(env, n);
}

// update(key, value, flags) with BPF_ANY / BPF_NOEXIST / BPF_EXIST.
Napi::Value MapHandle::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "update");
  auto key = BufferArg(info, 0, "key");
  auto value = BufferArg(info, 1, "value");
  CheckKey(env, key, "update");
  CheckValue(env, value, "update", "value");
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), U32Arg(info, 2, BPF_ANY)) != 0) {
    ThrowErrno(env, errno, What("update"));
  }
  return env.Undefined();
}

// delete(key) -> true if deleted, false if absent.
Napi::Value MapHandle::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "delete from");
  auto key = BufferArg(info, 0, "key");
  CheckKey(env, key, "delete from");
  if (bpf_map_delete_elem(fd, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, What("delete from"));
  }
  return Napi::Boolean::New(env, true);
}

// nextKey(key | null) -> Buffer | null (null after the last key).
Napi::Value MapHandle::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "iterate");
  const void* cur = nullptr;
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto key = info[0].As<Napi::Buffer<uint8_t>>();
    CheckKey(env, key, "iterate");
    cur = key.Data();
  }
  auto next = Napi::Buffer<uint8_t>::New(env, key_size_);
  if (bpf_map_get_next_key(fd, cur, next.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, What("iterate"));
  }
  return next;
}

// updateBatch(keys, values, count, elemFlags) -> number of entries updated.
// On failure the error carries `count`: entries applied before the failure.
Napi::Value MapHandle::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "batch update");
  auto keys = BufferArg(info, 0, "keys");
  auto values = BufferArg(info, 1, "values");
  uint32_t count = U32Arg(info, 2, 0);
  if (keys.Length() != static_cast<size_t>(count) * key_size_ ||
      values.Length() != static_cast<size_t>(count) * ValueBytes()) {
    throw Napi::RangeError::New(env, What("batch update") + ": buffers do not hold " +
                                         std::to_string(count) + " keys and values");
  }
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = U32Arg(info, 3, BPF_ANY));
  __u32 n = count;
  if (bpf_map_update_batch(fd, keys.Data(), values.Data(), &n, &opts) != 0) {
    int err = errno;
    try {
      ThrowErrno(env, err, What("batch update"));
    } catch (Napi::Error& e) {
      e.Set("count", Napi::Number::New(env, n));
      throw;
    }
  }
  return Napi::Number::New(env, n);
}

// lookupBatch(token | null, count) -> { keys, values, count, token, done }.
Napi::Value MapHandle::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "batch lookup in");
  const void* in_batch = nullptr;
  if (info.Length() > 0 && info[0].IsBuffer()) in_batch = info[0].As<Napi::Buffer<uint8_t>>().Data();
  uint32_t want = std::max<uint32_t>(1, U32Arg(info, 1, 1024));
  size_t token_size = std::max<size_t>(key_size_, 8);
  auto token = Napi::Buffer<uint8_t>::New(env, token_size);
  std::vector<uint8_t> keys(static_cast<size_t>(want) * key_size_);
  std::vector<uint8_t> values(static_cast<size_t>(want) * ValueBytes());
  __u32 n = want;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  bool done = false;
  if (bpf_map_lookup_batch(fd, const_cast<void*>(in_batch), token.Data(), keys.data(), values.data(), &n,
                           &opts) != 0) {
    if (errno != ENOENT) ThrowErrno(env, errno, What("batch lookup in"));
    done = true;  // ENOENT: this is the last (possibly empty) batch
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), static_cast<size_t>(n) * key_size_));
  o.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), static_cast<size_t>(n) * ValueBytes()));
  o.Set("count", n);
  o.Set("token", token);
  o.Set("done", done);
  return o;
}

// deleteBatch(keys, count) -> number deleted.
Napi::Value MapHandle::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "batch delete from");
  auto keys = BufferArg(info, 0, "keys");
  uint32_t count = U32Arg(info, 1, 0);
  if (keys.Length() != static_cast<size_t>(count) * key_size_) {
    throw Napi::RangeError::New(env, What("batch delete from") + ": buffer does not hold " +
                                         std::to_string(count) + " keys");
  }
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  __u32 n = count;
  if (bpf_map_delete_batch(fd, keys.Data(), &n, &opts) != 0) {
    int err = errno;
    try {
      ThrowErrno(env, err, What("batch delete from"));
    } catch (Napi::Error& e) {
      e.Set("count", Napi::Number::New(env, n));
      throw;
    }
  }
  return Napi::Number::New(env, n);
}

Napi::Value MapHandle::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "pin");
  std::string path = info[0].As<Napi::String>();
  if (bpf_obj_pin(fd, path.c_str()) != 0) ThrowErrno(env, errno, What("pin") + " at " + path);
  return env.Undefined();
}

Napi::Value MapHandle::Freeze(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (bpf_map_freeze(Fd(env, "freeze")) != 0) ThrowErrno(env, errno, What("freeze"));
  return env.Undefined();
}

Napi::Value MapHandle::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

Napi::Value MapHandle::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

namespace {

// openPinnedMap(path) -> MapHandle
Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "open pinned map " + path);
  return MapHandle::NewFromFd(env, fd);
}

// createMap(type, name, keySize, valueSize, maxEntries, flags) -> MapHandle
Napi::Value CreateMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto type = static_cast<enum bpf_map_type>(info[0].As<Napi::Number>().Uint32Value());
  std::string name = info[1].As<Napi::String>();
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = U32Arg(info, 5, 0));
  int fd = bpf_map_create(type, name.c_str(), U32Arg(info, 2, 0), U32Arg(info, 3, 0), U32Arg(info, 4, 0), &opts);
  if (fd < 0) ThrowErrno(env, errno, "create map " + name);
  return MapHandle::NewFromFd(env, fd);
}

// openMapById(id) -> MapHandle
Napi::Value OpenMapById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(env, errno, "open map id " + std::to_string(id));
  return MapHandle::NewFromFd(env, fd);
}

}  // namespace

void InitMapFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("MapHandle", MapHandle::Init(env));
  exports.Set("openPinnedMap", Napi::Function::New(env, OpenPinnedMap));
  exports.Set("createMap", Napi::Function::New(env, CreateMap));
  exports.Set("openMapById", Napi::Function::New(env, OpenMapById));
}

}  // namespace rs
