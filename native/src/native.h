// Shared by the addon's source files (one file a concern, see addon.cc): the
// errno-to-exception convention and argument checks every exported function uses,
// and each file's Register function that adds its exports.
#pragma once

#include <napi.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace pcieoe {

// A JS Error like Node's own system errors: `code` the errno name ("EBADF"),
// `errno` the negative errno, `syscall` the failing call.
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err);
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err = errno);

// Argument i as a file descriptor, a Uint8Array (Buffer included), a string, a
// non-negative 32-bit count; each throws a TypeError/RangeError naming the argument.
int ArgFd(const Napi::CallbackInfo& info, size_t i);
Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i);
std::string ArgString(const Napi::CallbackInfo& info, size_t i);
uint32_t ArgCount(const Napi::CallbackInfo& info, size_t i);

// A unix socket address for `path` (throws ENAMETOOLONG when it does not fit).
sockaddr_un UnixAddr(Napi::Env env, const std::string& path, socklen_t* len);

// Adds v to an eventfd without ever blocking (eventfd.cc): 1 when added, 0 when the counter had
// no room (a wake-up is pending anyway), -errno on error.
int EventfdAdd(int fd, uint64_t v);

// Reads the 64-bit counter of an eventfd or timerfd (argument 0), which resets it: the value, or
// null when there is none yet (EAGAIN); other failures throw, naming `what` (eventfd.cc).
Napi::Value ReadCounter(const Napi::CallbackInfo& info, const char* what);

// Each concern's exports.
void RegisterFds(Napi::Env env, Napi::Object exports);       // fds.cc
void RegisterSeals(Napi::Env env, Napi::Object exports);     // seals.cc
void RegisterEventfd(Napi::Env env, Napi::Object exports);   // eventfd.cc
void RegisterTimerfd(Napi::Env env, Napi::Object exports);   // timerfd.cc
void RegisterStream(Napi::Env env, Napi::Object exports);    // stream.cc
void RegisterDgram(Napi::Env env, Napi::Object exports);     // dgram.cc
void RegisterCrc32(Napi::Env env, Napi::Object exports);     // crc32.cc
void RegisterPoll(Napi::Env env, Napi::Object exports);      // poll.cc
void RegisterMemifForward(Napi::Env env, Napi::Object exports);  // memif-forward.cc

}  // namespace pcieoe
