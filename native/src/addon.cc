// pcieoe_native: the few POSIX facilities Node lacks and the lab needs.
//
//  * unix stream sockets with SCM_RIGHTS fd passing (vfio-user transport)
//  * unix datagram sockets (fabric switch ports)
//  * readiness notification for any fd, on Node's own libuv loop (Poll)
//  * memfd_create + mmap(MAP_SHARED) into an external ArrayBuffer (guest RAM)
//  * eventfd (interrupt delivery to QEMU)
//
// Every fd is created non-blocking and close-on-exec. Failures become JS
// exceptions shaped like Node's own system errors: `code` is the errno name
// ("EBADF"), `errno` the negative errno, `syscall` the failing call.
// "Would block" is not an error: the I/O calls return -1 (or null) for it so
// the hot path does not pay for exception unwinding.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// Linux's SCM_MAX_FD: the most descriptors one message can carry. Sizing the
// control buffer for it means MSG_CTRUNC cannot happen on receive.
constexpr int kMaxFdsPerMessage = 253;

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  std::string msg = std::string(syscall) + " failed: " + uv_err_name(-err) + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err = errno) {
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

int SockType(Napi::Env env, const std::string& kind) {
  if (kind == "stream") return SOCK_STREAM;
  if (kind == "dgram") return SOCK_DGRAM;
  if (kind == "seqpacket") return SOCK_SEQPACKET;
  throw Napi::TypeError::New(env, "socket kind must be 'stream', 'dgram' or 'seqpacket'");
}

// ---- plain fds -------------------------------------------------------------

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  // Linux always releases the fd, even when close() reports EINTR: never retry.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close");
  return info.Env().Undefined();
}

// dup(fd) -> a new close-on-exec descriptor for the same open file.
Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = fcntl(ArgFd(info, 0), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), "dup");
  return Napi::Number::New(info.Env(), fd);
}

// ---- memfd + mmap ----------------------------------------------------------

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0);
  int64_t size = info[1].As<Napi::Number>().Int64Value();
  if (size < 0) throw Napi::RangeError::New(env, "size must be >= 0");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "memfd_create");
  if (ftruncate(fd, size) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "ftruncate", err);
  }
  return Napi::Number::New(env, fd);
}

struct Mapping {
  void* base;      // page-aligned address returned by mmap
  size_t length;   // length passed to mmap
  bool unmapped;
};

// Live mappings by the ArrayBuffer's data pointer, so munmap() can find the
// Mapping (napi exposes no finalizer hint) and mark it dead: the finalizer
// still runs later and must then not unmap a range that may have been reused.
std::mutex g_mappings_lock;
std::unordered_map<void*, Mapping*> g_mappings;

void FinalizeMapping(Napi::Env, void* data, Mapping* m) {
  {
    std::lock_guard<std::mutex> lock(g_mappings_lock);
    if (!m->unmapped) g_mappings.erase(data);
  }
  if (!m->unmapped) munmap(m->base, m->length);
  delete m;
}

// mmap(fd, offset, length, writable) -> ArrayBuffer over a MAP_SHARED mapping.
// `offset` need not be page-aligned (DMA_MAP offsets are whatever QEMU sends):
// the mapping starts at the page below and the ArrayBuffer at the exact byte.
// The mapping lives until munmap() or until the ArrayBuffer is collected.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  int64_t length = info[2].As<Napi::Number>().Int64Value();
  bool writable = info.Length() > 3 && info[3].ToBoolean();
  if (offset < 0 || length <= 0) throw Napi::RangeError::New(env, "mmap needs offset >= 0 and length > 0");
  int64_t page = sysconf(_SC_PAGESIZE);
  int64_t delta = offset % page;
  size_t maplen = static_cast<size_t>(length + delta);
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* base = mmap(nullptr, maplen, prot, MAP_SHARED, fd, offset - delta);
  if (base == MAP_FAILED) ThrowErrno(env, "mmap");
  auto* m = new Mapping{base, maplen, false};
  void* data = static_cast<uint8_t*>(base) + delta;
  {
    std::lock_guard<std::mutex> lock(g_mappings_lock);
    g_mappings[data] = m;
  }
  return Napi::ArrayBuffer::New(env, data, static_cast<size_t>(length), FinalizeMapping, m);
}

// Explicit unmap: detach first so no JS view can touch the pages afterwards.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "munmap needs the ArrayBuffer returned by mmap");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) return env.Undefined();
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mappings_lock);
    auto it = g_mappings.find(ab.Data());
    if (it == g_mappings.end()) throw Napi::TypeError::New(env, "munmap: not an ArrayBuffer returned by mmap");
    m = it->second;
    g_mappings.erase(it);
    m->unmapped = true;
  }
  ab.Detach();
  if (munmap(m->base, m->length) < 0) ThrowErrno(env, "munmap");
  return env.Undefined();
}

// ---- eventfd ---------------------------------------------------------------

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

// ---- unix sockets ----------------------------------------------------------

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = SockType(env, ArgString(info, 0));
  int sv[2];
  if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) ThrowErrno(env, "socketpair");
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, sv[0]));
  out.Set(1u, Napi::Number::New(env, sv[1]));
  return out;
}

// unixListen(path, backlog) -> listening stream socket fd. The caller owns
// the path (unlinking a stale socket file is a policy decision, made in JS).
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 0), &len);
  int backlog = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 16;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind/listen", err);
  }
  return Napi::Number::New(env, fd);
}

// unixAccept(fd) -> connected fd, or -1 when no connection is pending.
Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = accept4(ArgFd(info, 0), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR) return Napi::Number::New(env, -1);
    ThrowErrno(env, "accept4");
  }
  return Napi::Number::New(env, fd);
}

// unixConnect(path, kind = 'stream') -> connected non-blocking fd. A unix
// connect completes at once or fails (EAGAIN = listener backlog full).
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 0), &len);
  int type = SockType(env, info.Length() > 1 ? ArgString(info, 1) : "stream");
  int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "connect", err);
  }
  return Napi::Number::New(env, fd);
}

// unixDgram(path?) -> datagram socket fd, bound to `path` when given.
Napi::Value UnixDgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  if (info.Length() > 0 && info[0].IsString()) {
    socklen_t len;
    sockaddr_un addr;
    try {
      addr = UnixAddr(env, ArgString(info, 0), &len);
    } catch (...) {
      close(fd);
      throw;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, "bind", err);
    }
  }
  return Napi::Number::New(env, fd);
}

// sendmsg(fd, data, fds?) -> bytes sent (may be short on a stream socket), or
// -1 when the socket buffer is full. Descriptors travel with the first byte.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array data = ArgBytes(info, 1);
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    if (a.Length() > static_cast<uint32_t>(kMaxFdsPerMessage)) throw Napi::RangeError::New(env, "too many fds for one message");
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, "fds must be numbers");
      fds.push_back(v.As<Napi::Number>().Int32Value());
    }
  }
  iovec iov{data.Data(), data.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvmsg(fd, buf, fdsOut) -> bytes read into buf (0 = peer closed), or -1
// when nothing is available. Received descriptors are pushed onto fdsOut.
//
// Linux ends a stream read right after the segment that carried descriptors,
// so all fds returned by one call belong to the last message that *starts*
// within the bytes returned (see src/vfio-user/parser.ts).
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array buf = ArgBytes(info, 1);
  if (info.Length() < 3 || !info[2].IsArray()) throw Napi::TypeError::New(env, "argument 2 must be an array for received fds");
  Napi::Array fdsOut = info[2].As<Napi::Array>();
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  iovec iov{buf.Data(), buf.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "recvmsg");
  }
  uint32_t k = fdsOut.Length();
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; i++) fdsOut.Set(k++, Napi::Number::New(env, p[i]));
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // Cannot happen with a control buffer for SCM_MAX_FD, but if it did the
    // kernel has already dropped descriptors: the stream is unusable.
    throw ErrnoError(env, "recvmsg (control data truncated)", EMSGSIZE);
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// sendTo(fd, data, path) -> bytes sent, or -1 when the receiver's queue is full.
Napi::Value SendTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array data = ArgBytes(info, 1);
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 2), &len);
  ssize_t n;
  do {
    n = sendto(fd, data.Data(), data.ByteLength(), MSG_NOSIGNAL | MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&addr), len);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "sendto");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recv(fd, buf) -> datagram length (truncated to buf), or -1 when none queued.
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array buf = ArgBytes(info, 1);
  ssize_t n;
  do {
    n = recv(fd, buf.Data(), buf.ByteLength(), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "recv");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// ---- Poll: fd readiness on Node's loop -------------------------------------

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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("eventfd", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("unixDgram", Napi::Function::New(env, UnixDgram));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg));
  exports.Set("sendTo", Napi::Function::New(env, SendTo));
  exports.Set("recv", Napi::Function::New(env, Recv));
  exports.Set("Poll", Poll::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(pcieoe_native, Init)
