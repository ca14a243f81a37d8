// timerfd: a one-shot timer to the microsecond, readable on Node's loop through Poll. Node's
// own timers count whole milliseconds; the switch's delay line needs 10 µs.
#include "native.h"

#include <sys/timerfd.h>

#include <algorithm>
#include <cmath>

namespace pcieoe {

namespace {

Napi::Value TimerfdCreate(const Napi::CallbackInfo& info) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) ThrowErrno(info.Env(), "timerfd_create");
  return Napi::Number::New(info.Env(), fd);
}

// timerfdSet(fd, us): expire once, `us` microseconds from now (at least 1 ns: 0 would disarm);
// a negative or NaN `us` disarms. An hrtimer without slack: it fires on time, not rounded.
Napi::Value TimerfdSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "timerfdSet: microseconds must be a number");
  double us = info[1].As<Napi::Number>().DoubleValue();
  itimerspec t{};
  if (us >= 0) {
    double ns = std::max(1.0, std::round(us * 1000.0));
    t.it_value.tv_sec = static_cast<time_t>(ns / 1e9);
    t.it_value.tv_nsec = static_cast<long>(ns - static_cast<double>(t.it_value.tv_sec) * 1e9);
  }
  if (timerfd_settime(fd, 0, &t, nullptr) < 0) ThrowErrno(env, "timerfd_settime");
  return env.Undefined();
}

// Expirations since the last read (clears readability), or null when none.
Napi::Value TimerfdRead(const Napi::CallbackInfo& info) { return ReadCounter(info, "timerfd read"); }

}  // namespace

void RegisterTimerfd(Napi::Env env, Napi::Object exports) {
  exports.Set("timerfd", Napi::Function::New(env, TimerfdCreate));
  exports.Set("timerfdSet", Napi::Function::New(env, TimerfdSet));
  exports.Set("timerfdRead", Napi::Function::New(env, TimerfdRead));
}

}  // namespace pcieoe
