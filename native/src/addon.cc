// pcieoe_native: the few POSIX facilities Node lacks and the lab needs.
//
//  * unix stream sockets with SCM_RIGHTS fd passing (vfio-user transport)
//  * unix datagram sockets (fabric switch ports)
//  * readiness notification for any fd, on Node's own libuv loop (Poll)
//  * memfd_create + mmap(MAP_SHARED) into an external ArrayBuffer (guest RAM)
//  * eventfd (interrupt delivery to QEMU)
//  * the fabric's fast path: recvfrom with the sender's path, connect and
//    buffer sizes for datagram sockets, batched sendmmsg/recvmmsg, CRC-32
//  * malloc tuning, so that freed receive slabs are reused instead of
//    returned to the kernel (retainFreedHeap)
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
#include <malloc.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

void RegisterSeals(Napi::Env env, Napi::Object exports);  // seals.cc

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

// ---- datagram fast path (fabric) --------------------------------------------

// The sender's address as JS sees it: the bound path, or null for an unbound
// (unnamed) sender that cannot be answered. Abstract addresses come back with
// their leading NUL, as Node spells them.
Napi::Value SenderOf(Napi::Env env, const sockaddr_un& addr, socklen_t len) {
  size_t off = offsetof(sockaddr_un, sun_path);
  if (len <= off || addr.sun_family != AF_UNIX) return env.Null();
  size_t n = len - off;
  if (addr.sun_path[0] != '\0') n = strnlen(addr.sun_path, n);
  return Napi::String::New(env, addr.sun_path, n);
}

// recvFrom(fd, buf) -> [length, sender] or null when nothing is queued.
// length is the datagram's real length (MSG_TRUNC): more than buf holds means
// the datagram was cut to fit. sender: see SenderOf.
Napi::Value RecvFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array buf = ArgBytes(info, 1);
  sockaddr_un addr{};
  socklen_t alen;
  ssize_t n;
  do {
    alen = sizeof addr;
    n = recvfrom(fd, buf.Data(), buf.ByteLength(), MSG_DONTWAIT | MSG_TRUNC, reinterpret_cast<sockaddr*>(&addr), &alen);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return env.Null();
    ThrowErrno(env, "recvfrom");
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(n)));
  out.Set(1u, SenderOf(env, addr, alen));
  return out;
}

// dgramConnect(fd, path): fix the peer of an existing (possibly bound)
// datagram socket. Needed because a unix receiver's queue admits only
// net.unix.max_dgram_qlen datagrams from unconnected senders, and only a
// connected sender can poll() for room in it.
// dgramConnect(fd, null) dissolves the association (AF_UNSPEC), so the socket
// hears from anyone again.
Napi::Value DgramConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (info.Length() > 1 && info[1].IsNull()) {
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    if (connect(fd, &unspec, sizeof unspec) < 0) ThrowErrno(env, "connect");
    return env.Undefined();
  }
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 1), &len);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) ThrowErrno(env, "connect");
  return env.Undefined();
}

// socketBuffers(fd, send?, recv?) -> { send, recv }: set SO_SNDBUF/SO_RCVBUF
// where a size is given (undefined/null: leave it), and return what the kernel
// actually uses (it doubles the request for bookkeeping and caps it at
// net.core.{w,r}mem_max).
Napi::Value SocketBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  const std::array<std::pair<int, const char*>, 2> opts{{{SO_SNDBUF, "setsockopt SO_SNDBUF"}, {SO_RCVBUF, "setsockopt SO_RCVBUF"}}};
  for (size_t i = 0; i < opts.size(); i++) {
    if (info.Length() <= i + 1 || info[i + 1].IsUndefined() || info[i + 1].IsNull()) continue;
    int64_t v = info[i + 1].As<Napi::Number>().Int64Value();
    if (v <= 0 || v > INT32_MAX) throw Napi::RangeError::New(env, "socket buffer size out of range");
    int size = static_cast<int>(v);
    if (setsockopt(fd, SOL_SOCKET, opts[i].first, &size, sizeof size) < 0) ThrowErrno(env, opts[i].second);
  }
  Napi::Object out = Napi::Object::New(env);
  const std::array<const char*, 2> names{"send", "recv"};
  for (size_t i = 0; i < opts.size(); i++) {
    int size = 0;
    socklen_t sl = sizeof size;
    if (getsockopt(fd, SOL_SOCKET, opts[i].first, &size, &sl) < 0) ThrowErrno(env, "getsockopt");
    out.Set(names[i], Napi::Number::New(env, size));
  }
  return out;
}

// One batch is at most this many datagrams (larger counts are clamped): the
// message headers live on the stack, and Linux caps a batch at UIO_MAXIOV
// (1024) anyway.
constexpr uint32_t kMaxBatch = 256;

uint32_t ArgCount(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  int64_t v = info[i].As<Napi::Number>().Int64Value();
  if (v < 0 || v > UINT32_MAX) throw Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " out of range");
  return static_cast<uint32_t>(v);
}

// sendmmsg(fd, frames, start, count, path?) -> how many of frames[start ..
// start+count) went out, in order, in one system call; -1 when the first one
// would block (receiver's queue or our buffer full). Without `path` the socket
// must be connected. A failure after the first datagram ends the batch early
// (the count says where) and is reported by the next call, as sendmmsg(2)
// itself does; a failure of the first datagram throws.
Napi::Value SendMmsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "argument 1 must be an array of Uint8Array");
  Napi::Array frames = info[1].As<Napi::Array>();
  uint32_t start = ArgCount(info, 2);
  uint32_t count = std::min(ArgCount(info, 3), kMaxBatch);
  if (static_cast<uint64_t>(start) + count > frames.Length()) throw Napi::RangeError::New(env, "start + count runs past the frames array");
  sockaddr_un addr{};
  socklen_t alen = 0;
  bool to = info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull();
  if (to) addr = UnixAddr(env, ArgString(info, 4), &alen);
  if (count == 0) return Napi::Number::New(env, 0);
  std::array<iovec, kMaxBatch> iov;
  std::array<mmsghdr, kMaxBatch> msgs;
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = frames.Get(start + i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "frames must be Uint8Arrays");
    Napi::Uint8Array f = v.As<Napi::Uint8Array>();
    iov[i] = iovec{f.Data(), f.ByteLength()};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (to) {
      msgs[i].msg_hdr.msg_name = &addr;
      msgs[i].msg_hdr.msg_namelen = alen;
    }
  }
  int n;
  do {
    n = sendmmsg(fd, msgs.data(), count, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "sendmmsg");
  }
  return Napi::Number::New(env, n);
}

// recvmmsg(fd, slab, offset, slot, count, meta, senders?) -> datagrams read
// in one system call (at most count), or -1 when none is queued.
//
// Datagram i lands in a window of `slot` bytes at offset + i*slot, so
// offset + count*slot must fit the slab. The received datagrams are then
// packed down, each starting 8-byte aligned right after the previous one,
// so a batch of small frames uses little of the slab: meta[2i] is where
// datagram i now starts, meta[2i+1] its real length (MSG_TRUNC). A datagram
// longer than `slot` was cut short: its length says so, its bytes are not
// kept (meta[2i] is where it would have gone, and no slab space is used).
// The kept bytes end at the last kept datagram's start plus its length
// rounded up to 8.
//
// senders, when given, receives each sender's path (see SenderOf); one string
// is reused for consecutive datagrams from the same sender.
Napi::Value RecvMmsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Uint8Array slab = ArgBytes(info, 1);
  uint32_t offset = ArgCount(info, 2);
  uint32_t slot = ArgCount(info, 3);
  uint32_t count = std::min(ArgCount(info, 4), kMaxBatch);
  if (info.Length() < 6 || !info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "argument 5 must be an Int32Array for offsets and lengths");
  }
  Napi::Int32Array meta = info[5].As<Napi::Int32Array>();
  bool wantSenders = info.Length() > 6 && info[6].IsArray();
  if (slot == 0 || offset % 8 != 0) throw Napi::RangeError::New(env, "slot must be > 0 and offset 8-byte aligned");
  if (static_cast<uint64_t>(offset) + static_cast<uint64_t>(count) * slot > slab.ByteLength()) throw Napi::RangeError::New(env, "offset + count * slot runs past the slab");
  if (meta.ElementLength() < 2 * static_cast<size_t>(count)) throw Napi::RangeError::New(env, "meta must hold 2 * count entries");
  if (count == 0) return Napi::Number::New(env, 0);
  uint8_t* base = slab.Data() + offset;
  std::array<iovec, kMaxBatch> iov;
  std::array<mmsghdr, kMaxBatch> msgs;
  std::vector<sockaddr_un> addrs(wantSenders ? count : 0);
  for (uint32_t i = 0; i < count; i++) {
    iov[i] = iovec{base + static_cast<size_t>(i) * slot, slot};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (wantSenders) {
      msgs[i].msg_hdr.msg_name = &addrs[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_un);
    }
  }
  int n;
  do {
    n = recvmmsg(fd, msgs.data(), count, MSG_DONTWAIT | MSG_TRUNC, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, "recvmmsg");
  }
  int32_t* m = meta.Data();
  size_t packed = 0;  // bytes of slab (from `base`) holding kept datagrams
  for (int i = 0; i < n; i++) {
    size_t len = msgs[i].msg_len;
    m[2 * i] = static_cast<int32_t>(offset + packed);
    m[2 * i + 1] = static_cast<int32_t>(std::min<size_t>(len, INT32_MAX));
    if (len > slot) continue;  // truncated: dropped by the caller, keeps no space
    uint8_t* src = base + static_cast<size_t>(i) * slot;
    if (base + packed != src) memmove(base + packed, src, len);  // packed <= i*slot: always moves down
    packed += (len + 7) & ~static_cast<size_t>(7);
  }
  if (wantSenders) {
    Napi::Array senders = info[6].As<Napi::Array>();
    Napi::Value last = env.Null();
    for (int i = 0; i < n; i++) {
      socklen_t alen = msgs[i].msg_hdr.msg_namelen;
      bool same = i > 0 && alen == msgs[i - 1].msg_hdr.msg_namelen && memcmp(&addrs[i], &addrs[i - 1], alen) == 0;
      if (!same) last = SenderOf(env, addrs[i], alen);
      senders.Set(static_cast<uint32_t>(i), last);
    }
  }
  return Napi::Number::New(env, n);
}

// ---- CRC-32 ------------------------------------------------------------------

// IEEE 802.3 CRC-32 (reflected, polynomial 0xEDB88320), as zlib computes it.
// zlib.crc32 in this Node costs ~1.9 µs of CPU per 4 KiB frame here, a fifth
// of a link endpoint's time per frame. On x86 with PCLMULQDQ the bulk is
// folded with carry-less multiplies (Intel, "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ", 2009; the constants below are the paper's
// bit-reflected k1..k5, P(x) and mu, as zlib/Chromium use them), ~10x faster;
// everything else goes through a slicing-by-8 table. Both are checked against
// a bytewise reference by test/native/dgram-batch.test.ts.
struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t c = n;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
      for (int k = 1; k < 8; k++) t[k][n] = t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >> 8);
    }
  }
};
const CrcTables kCrc;

// On the register (not inverted) CRC state.
uint32_t Crc32Slice8(uint32_t c, const uint8_t* p, size_t n) {
  const auto& t = kCrc.t;
  while (n >= 8) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
#define CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

CLMUL_TARGET inline __m128i Load16(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }

// One fold: x times k (each 64-bit half by its constant), plus the next 16 bytes.
CLMUL_TARGET inline __m128i Fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x11), _mm_clmulepi64_si128(x, k, 0x00)), next);
}

// Folds n bytes (n >= 64, a multiple of 16) into the register state c.
CLMUL_TARGET uint32_t Crc32Clmul(uint32_t c, const uint8_t* p, size_t n) {
  alignas(16) static const uint64_t k1k2[] = {0x0154442bd4, 0x01c6e41596};
  alignas(16) static const uint64_t k3k4[] = {0x01751997d0, 0x00ccaa009e};
  alignas(16) static const uint64_t k5k0[] = {0x0163cd6124, 0x0000000000};
  alignas(16) static const uint64_t poly[] = {0x01db710641, 0x01f7011641};
  __m128i x1 = _mm_xor_si128(Load16(p), _mm_cvtsi32_si128(static_cast<int>(c)));
  __m128i x2 = Load16(p + 16), x3 = Load16(p + 32), x4 = Load16(p + 48);
  p += 64;
  n -= 64;
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(k1k2));
  for (; n >= 64; p += 64, n -= 64) {  // four lanes in parallel
    x1 = Fold(x1, k, Load16(p));
    x2 = Fold(x2, k, Load16(p + 16));
    x3 = Fold(x3, k, Load16(p + 32));
    x4 = Fold(x4, k, Load16(p + 48));
  }
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(k3k4));
  x1 = Fold(x1, k, x2);
  x1 = Fold(x1, k, x3);
  x1 = Fold(x1, k, x4);
  for (; n >= 16; p += 16, n -= 16) x1 = Fold(x1, k, Load16(p));
  // 128 -> 64 bits.
  __m128i mask = _mm_setr_epi32(~0, 0, ~0, 0);
  x2 = _mm_clmulepi64_si128(x1, k, 0x10);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  k = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k5k0));
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x00), x2);
  // Barrett reduction to 32 bits.
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(poly));
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask), k, 0x10);
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, mask), k, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, x2), 1));
}

const bool kHaveClmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif

// CRC-32 of p[0, n) continuing from `crc` (zlib convention: 0 to start).
uint32_t Crc32(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (kHaveClmul && n >= 64) {
    size_t bulk = n & ~static_cast<size_t>(15);
    c = Crc32Clmul(c, p, bulk);
    p += bulk;
    n -= bulk;
  }
#endif
  return ~Crc32Slice8(c, p, n);
}

// crc32(data, initial = 0, start = 0, end = data.length) -> CRC-32 of
// data[start, end) continuing from `initial` (zlib.crc32's convention). The
// range arguments spare the caller a subarray() per call on the hot path.
Napi::Value Crc32Js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array data = ArgBytes(info, 0);
  uint32_t initial = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  size_t len = data.ByteLength();
  size_t start = info.Length() > 2 && info[2].IsNumber() ? ArgCount(info, 2) : 0;
  size_t end = info.Length() > 3 && info[3].IsNumber() ? ArgCount(info, 3) : len;
  if (start > end || end > len) throw Napi::RangeError::New(env, "crc32 range out of bounds");
  return Napi::Number::New(env, Crc32(initial, data.Data() + start, end - start));
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

// glibc serves a large allocation with its own mmap and unmaps it on free, and
// it trims the heap top back to the kernel; either way the next allocation gets
// fresh pages, and the first touch of each (the kernel's copy of a received
// datagram into a slab) is a page fault. Datagram ports allocate multi-MiB
// receive slabs continuously, so keep such blocks in the heap (up to glibc's
// 32 MiB limit for the threshold) and trim only past 256 MiB of free top.
// Measured with bench/fabric.ts here: sink CPU per 4 KiB frame about halved.
Napi::Value RetainFreedHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 256 << 20) != 1) {
    Napi::Error::New(env, "mallopt refused the thresholds").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

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
  exports.Set("recvFrom", Napi::Function::New(env, RecvFrom));
  exports.Set("dgramConnect", Napi::Function::New(env, DgramConnect));
  exports.Set("socketBuffers", Napi::Function::New(env, SocketBuffers));
  exports.Set("sendmmsg", Napi::Function::New(env, SendMmsg));
  exports.Set("recvmmsg", Napi::Function::New(env, RecvMmsg));
  exports.Set("crc32", Napi::Function::New(env, Crc32Js));
  exports.Set("retainFreedHeap", Napi::Function::New(env, RetainFreedHeap));
  exports.Set("Poll", Poll::Init(env));
  RegisterSeals(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pcieoe_native, Init)
