// The helpers native.h declares.
#include "native.h"

#include <uv.h>

#include <string.h>

namespace pcieoe {

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  std::string msg = std::string(syscall) + " failed: " + uv_err_name(-err) + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err) {
  throw ErrnoError(env, syscall, err);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a file descriptor number");
  }
  int64_t v = info[i].As<Napi::Number>().Int64Value();
  if (v < 0 || v > INT32_MAX) throw Napi::RangeError::New(info.Env(), "file descriptor out of range");
  return static_cast<int>(v);
}

// A byte view argument: any Uint8Array (Buffer included).
Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Uint8Array");
  }
  return info[i].As<Napi::Uint8Array>();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

sockaddr_un UnixAddr(Napi::Env env, const std::string& path, socklen_t* len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    throw ErrnoError(env, "unix socket path", ENAMETOOLONG);
  }
  memcpy(addr.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return addr;
}

uint32_t ArgCount(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  int64_t v = info[i].As<Napi::Number>().Int64Value();
  if (v < 0 || v > UINT32_MAX) throw Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " out of range");
  return static_cast<uint32_t>(v);
}

}  // namespace pcieoe
