// eventfd: interrupt delivery to QEMU (one per MSI/MSI-X vector) and wake-ups.
#include "native.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace pcieoe {

namespace {

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t init = info.Length() > 0 ? info[0].As<Napi::Number>().Uint32Value() : 0;
  int fd = eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowErrno(env, "eventfd");
  return Napi::Number::New(env, fd);
}

Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t v = info.Length() > 1 ? static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()) : 1;
  ssize_t n = write(fd, &v, sizeof v);
  // EAGAIN means the counter is saturated: the reader has a wake-up pending
  // anyway, so an interrupt is not lost.
  if (n < 0 && errno != EAGAIN) ThrowErrno(info.Env(), "eventfd write");
  return info.Env().Undefined();
}

// Returns the counter (and resets it), or null when it is zero.
Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t v = 0;
  ssize_t n = read(fd, &v, sizeof v);
  if (n < 0) {
    if (errno == EAGAIN) return info.Env().Null();
    ThrowErrno(info.Env(), "eventfd read");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(v));
}

}  // namespace

void RegisterEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
}

}  // namespace pcieoe
