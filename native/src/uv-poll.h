// UvPoll: readiness of an fd on Node's own libuv loop, for a JS object that owns it (poll.cc's
// Poll; memif-forward.cc's MemifForwardPoll, which serves wake-ups in native code first). It
// holds the handle's life (start, stop, close), keeps its JS object alive while it polls, and
// calls the JS callback as Node calls its own I/O callbacks.
//
// JS: start(events), stop(), close(); events: 1 = readable, 2 = writable, 4 = disconnect (peer
// hung up). callback(err: Error | null, events: number). libuv polls level-triggered, so a
// handler that leaves data unread is simply called again. The fd is never closed here: close()
// the poll first, then the fd.
//
// Derived (CRTP) may hide `bool Serve(int uvEvents)` (true: the wake-up was handled, the
// callback is not called) and `void Closing()` (the handle is about to close); a derived class
// with a Closing must call CloseHandle() in its own destructor.
#pragma once

#include <uv.h>

#include "native.h"

namespace pcieoe {

template <typename Derived>
class UvPoll : public Napi::ObjectWrap<Derived> {
  using Wrap = Napi::ObjectWrap<Derived>;

 public:
  static Napi::Function Define(Napi::Env env, const char* name) {
    return Wrap::DefineClass(env, name, {
      Wrap::InstanceMethod("start", &UvPoll::Start),
      Wrap::InstanceMethod("stop", &UvPoll::Stop),
      Wrap::InstanceMethod("close", &UvPoll::Close),
    });
  }

  ~UvPoll() override { CloseHandle(); }

 protected:
  UvPoll(const Napi::CallbackInfo& info, int fd, Napi::Function callback) : Wrap(info) {
    Napi::Env env = info.Env();
    callback_ = Napi::Persistent(callback);
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

  bool Serve(int) { return false; }
  void Closing() {}

  void CloseHandle() {
    if (handle_ == nullptr) return;
    static_cast<Derived*>(this)->Closing();
    StopHandle();
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
    // The callback is a strong root; its closure usually holds the owner, which holds this
    // poll's JS object: keeping it after close would keep all three alive for ever.
    callback_.Reset();
  }

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
      this->Ref();
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
      this->Unref();
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int uvev) {
    auto* self = static_cast<UvPoll*>(handle->data);
    if (self == nullptr) return;
    if (status == 0 && static_cast<Derived*>(self)->Serve(uvev)) return;
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

}  // namespace pcieoe
