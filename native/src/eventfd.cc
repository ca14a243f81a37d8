// eventfd: interrupt delivery to QEMU (one per MSI/MSI-X vector) and wake-ups.
#include "native.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace pcieoe {

// Never blocks, whatever the fd's O_NONBLOCK flag: an irq eventfd is shared
// with a vfio-user client, which may turn the (shared) file description back
// to blocking after SET_IRQS. A write blocks only when it would take the
// counter past 0xfffffffffffffffe, and then poll reports no POLLOUT; so a
// zero-timeout poll first, and no write when the counter is full. A saturated
// counter means the reader has a wake-up pending anyway: nothing is lost.
int EventfdAdd(int fd, uint64_t v) {
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, 0) < 0) return -errno;
  if (p.revents & POLLNVAL) return -EBADF;
  // POLLOUT tells only that 1 more fits; a bigger value may not, so a
  // blocking fd also gets a chance to refuse it with EAGAIN below.
  if (!(p.revents & POLLOUT)) return 0;
  if (v > 1 && !(fcntl(fd, F_GETFL) & O_NONBLOCK)) return 0;
  ssize_t n = write(fd, &v, sizeof v);
  if (n < 0) return errno == EAGAIN ? 0 : -errno;
  return n == sizeof v ? 1 : 0;
}

namespace {

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t init = info.Length() > 0 ? info[0].As<Napi::Number>().Uint32Value() : 0;
  int fd = eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowErrno(env, "eventfd");
  return Napi::Number::New(env, fd);
}

// Returns whether the value was added (see EventfdAdd).
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t v = 1;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (info[1].IsBigInt()) {
      bool lossless = true;
      v = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw Napi::RangeError::New(env, "eventfdWrite: value must fit in 64 bits");
    } else {
      v = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    }
  }
  int r = EventfdAdd(fd, v);
  if (r < 0) ThrowErrno(env, "eventfd write", -r);
  return Napi::Boolean::New(env, r == 1);
}

// Returns the counter (and resets it), or null when it is zero.
Napi::Value EventfdRead(const Napi::CallbackInfo& info) { return ReadCounter(info, "eventfd read"); }

}  // namespace

Napi::Value ReadCounter(const Napi::CallbackInfo& info, const char* what) {
  int fd = ArgFd(info, 0);
  uint64_t v = 0;
  ssize_t n = read(fd, &v, sizeof v);
  if (n < 0) {
    if (errno == EAGAIN) return info.Env().Null();
    ThrowErrno(info.Env(), what);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(v));
}

void RegisterEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
}

}  // namespace pcieoe
