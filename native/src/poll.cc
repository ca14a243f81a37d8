// Poll: readiness of any fd on Node's own libuv loop (the sockets and eventfds
// of the other files are watched with it).
#include "native.h"

#include <uv.h>

namespace pcieoe {

namespace {

// new Poll(fd, callback) ; poll.start(events) ; poll.stop() ; poll.close()
// events: 1 = readable, 2 = writable, 4 = disconnect (peer hung up).
// callback(err: Error | null, events: number). libuv polls level-triggered,
// so a handler that leaves data unread is simply called again.
// The Poll never closes the fd: close() the Poll first, then the fd.
class Poll : public Napi::ObjectWrap<Poll> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Poll", {
      InstanceMethod<&Poll::Start>("start"),
      InstanceMethod<&Poll::Stop>("stop"),
      InstanceMethod<&Poll::Close>("close"),
    });
  }

  explicit Poll(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poll>(info) {
    Napi::Env env = info.Env();
    int fd = ArgFd(info, 0);
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "Poll needs a callback");
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd);
    if (r < 0) {
      delete handle_;
      handle_ = nullptr;
      throw ErrnoError(env, "uv_poll_init", -r);
    }
    handle_->data = this;
    env_ = env;
  }

  ~Poll() override { CloseHandle(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) throw ErrnoError(env, "poll start", EBADF);
    int events = info[0].As<Napi::Number>().Int32Value();
    int uvev = ((events & 1) ? UV_READABLE : 0) | ((events & 2) ? UV_WRITABLE : 0) | ((events & 4) ? UV_DISCONNECT : 0);
    int r = uv_poll_start(handle_, uvev, OnPoll);
    if (r < 0) throw ErrnoError(env, "uv_poll_start", -r);
    // An active poll keeps its JS object alive: the loop holds a reference.
    if (!active_) {
      Ref();
      active_ = true;
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopHandle();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    return info.Env().Undefined();
  }

  void StopHandle() {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  void CloseHandle() {
    if (handle_ == nullptr) return;
    StopHandle();
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
    // The callback is a strong root; its closure usually holds the owner, which holds this
    // Poll's JS object: keeping it after close would keep all three alive for ever.
    callback_.Reset();
  }

  static void OnPoll(uv_poll_t* handle, int status, int uvev) {
    Poll* self = static_cast<Poll*>(handle->data);
    if (self == nullptr) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    int events = ((uvev & UV_READABLE) ? 1 : 0) | ((uvev & UV_WRITABLE) ? 2 : 0) | ((uvev & UV_DISCONNECT) ? 4 : 0);
    Napi::Value err = status < 0 ? Napi::Value(ErrnoError(env, "poll", -status).Value()) : env.Null();
    try {
      // MakeCallback: runs microtasks afterwards and keeps async context,
      // exactly as for Node's own I/O callbacks.
      self->callback_.MakeCallback(self->Value(), {err, Napi::Number::New(env, events)});
    } catch (const Napi::Error& e) {
      // An exception in the JS handler must surface as an ordinary uncaught
      // exception (process 'uncaughtException'), not vanish inside libuv.
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::FunctionReference callback_;
  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  Napi::Env env_ = nullptr;
};

}  // namespace

void RegisterPoll(Napi::Env env, Napi::Object exports) { exports.Set("Poll", Poll::Init(env)); }

}  // namespace pcieoe
