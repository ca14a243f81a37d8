// Unix datagram sockets and the fabric's fast path: recvfrom with the sender's
// path, connect and buffer sizes, batched sendmmsg/recvmmsg, and malloc tuning
// so freed receive slabs are reused (retainFreedHeap).
#include "native.h"

#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <vector>

namespace pcieoe {

namespace {

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

}  // namespace

void RegisterDgram(Napi::Env env, Napi::Object exports) {
  exports.Set("unixDgram", Napi::Function::New(env, UnixDgram));
  exports.Set("sendTo", Napi::Function::New(env, SendTo));
  exports.Set("recv", Napi::Function::New(env, Recv));
  exports.Set("recvFrom", Napi::Function::New(env, RecvFrom));
  exports.Set("dgramConnect", Napi::Function::New(env, DgramConnect));
  exports.Set("socketBuffers", Napi::Function::New(env, SocketBuffers));
  exports.Set("sendmmsg", Napi::Function::New(env, SendMmsg));
  exports.Set("recvmmsg", Napi::Function::New(env, RecvMmsg));
  exports.Set("retainFreedHeap", Napi::Function::New(env, RetainFreedHeap));
}

}  // namespace pcieoe
