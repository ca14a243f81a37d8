// Unix stream sockets with SCM_RIGHTS fd passing: the vfio-user transport
// (listen, accept, connect, sendmsg/recvmsg carrying fds).
#include "native.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <vector>

namespace pcieoe {

namespace {

// Linux's SCM_MAX_FD: the most descriptors one message can carry. Sizing the
// control buffer for it means MSG_CTRUNC cannot happen on receive.
constexpr int kMaxFdsPerMessage = 253;

int SockType(Napi::Env env, const std::string& kind) {
  if (kind == "stream") return SOCK_STREAM;
  if (kind == "dgram") return SOCK_DGRAM;
  if (kind == "seqpacket") return SOCK_SEQPACKET;
  throw Napi::TypeError::New(env, "socket kind must be 'stream', 'dgram' or 'seqpacket'");
}

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

// unixListen(path, backlog = 16, kind = 'stream') -> listening socket fd (kind 'seqpacket' for
// the memif control socket). The caller owns the path (unlinking a stale socket file is a policy
// decision, made in JS).
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 0), &len);
  int backlog = info.Length() > 1 && !info[1].IsUndefined() ? info[1].As<Napi::Number>().Int32Value() : 16;
  int type = info.Length() > 2 && !info[2].IsUndefined() ? SockType(env, ArgString(info, 2)) : SOCK_STREAM;
  int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

// unsentBytes(fd) -> bytes this socket has sent that the peer has not read yet
// (SIOCOUTQ): 0 once the peer has taken everything, so a test can wait for
// that instead of sleeping.
Napi::Value UnsentBytes(const Napi::CallbackInfo& info) {
  int n = 0;
  if (ioctl(ArgFd(info, 0), SIOCOUTQ, &n) < 0) ThrowErrno(info.Env(), "ioctl(SIOCOUTQ)");
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

void RegisterStream(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg));
  exports.Set("unsentBytes", Napi::Function::New(env, UnsentBytes));
}

}  // namespace pcieoe
