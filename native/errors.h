// Turning errno values and libbpf's log into JavaScript errors.
#pragma once
#include <napi.h>
#include <string>

namespace rs {

// Throws a JS Error whose `code` is the errno name (e.g. "ENOENT") and whose
// message says what was being done: "<what>: ENOENT (No such file or directory)".
// `err` may be positive or negative.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& what);

// Same, with libbpf's captured log (for example the verifier's) attached as
// `log` and its tail appended to the message.
[[noreturn]] void ThrowErrnoWithLog(Napi::Env env, int err, const std::string& what);

// Start/stop collecting libbpf's messages. The addon is synchronous and used
// from one thread, so one capture buffer suffices.
void BeginLogCapture();
std::string EndLogCapture();
void InstallLibbpfPrint();

}  // namespace rs
