// Poll: readiness of any fd on Node's own libuv loop (the sockets and eventfds
// of the other files are watched with it); the handle's life is uv-poll.h's.
#include "uv-poll.h"

namespace pcieoe {

namespace {

// new Poll(fd, callback) ; poll.start(events) ; poll.stop() ; poll.close()
// events: 1 = readable, 2 = writable, 4 = disconnect (peer hung up).
// callback(err: Error | null, events: number). libuv polls level-triggered,
// so a handler that leaves data unread is simply called again.
// The Poll never closes the fd: close() the Poll first, then the fd.
class Poll : public UvPoll<Poll> {
 public:
  explicit Poll(const Napi::CallbackInfo& info) : UvPoll<Poll>(info, ArgFd(info, 0), CallbackArg(info)) {}

 private:
  static Napi::Function CallbackArg(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "Poll needs a callback");
    return info[1].As<Napi::Function>();
  }
};

// libuv measures its loop's idle time (Node turns the metric on at start, for
// performance.eventLoopUtilization) by polling with a zero timeout before each blocking
// wait: one more epoll_pwait per wake-up of the process, a system call that costs a
// lab process on a hop as much as the eventfd it woke for. libuv has no call to turn the
// metric off; its per-loop option flags are the first field of the loop's internal fields
// (uv-common.h's uv__loop_internal_fields_t), and UV_METRICS_IDLE_TIME is the bit
// uv_loop_configure sets there. Only for the libuv this addon was compiled against (it
// is Node's own, so the layout is the one the headers describe); elsewhere nothing
// changes. Returns whether the metric was on and is now off.
Napi::Value StopIdleTimeMetrics(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
  if (uv_version() != UV_VERSION_HEX || loop->internal_fields == nullptr) return Napi::Boolean::New(env, false);
  auto* flags = static_cast<unsigned int*>(loop->internal_fields);
  const unsigned int bit = UV_METRICS_IDLE_TIME;  // unix/loop.c: lfields->flags |= UV_METRICS_IDLE_TIME
  bool was = (*flags & bit) != 0;
  *flags &= ~bit;
  return Napi::Boolean::New(env, was);
}

}  // namespace

void RegisterPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("Poll", Poll::Define(env, "Poll"));
  exports.Set("stopIdleTimeMetrics", Napi::Function::New(env, StopIdleTimeMetrics));
}

}  // namespace pcieoe
