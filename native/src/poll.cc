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

}  // namespace

void RegisterPoll(Napi::Env env, Napi::Object exports) { exports.Set("Poll", Poll::Define(env, "Poll")); }

}  // namespace pcieoe
