// Unix SOCK_SEQPACKET listeners: the memif control socket (src/fabric/wire/memif/).
// Connected seqpacket sockets need nothing new: unixConnect(path, 'seqpacket'),
// unixAccept, sendmsg and recvmsg (stream.cc) serve them, one message per call.
#include "native.h"

#include <unistd.h>

namespace pcieoe {

namespace {

// unixListenSeqpacket(path, backlog = 16) -> listening fd. As unixListen, the
// caller owns the path (a stale socket file is removed in JS).
Napi::Value UnixListenSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, ArgString(info, 0), &len);
  int backlog = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 16;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind/listen", err);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void RegisterSeqpacket(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListenSeqpacket", Napi::Function::New(env, UnixListenSeqpacket));
}

}  // namespace pcieoe
