// pcieoe_native: the few POSIX facilities Node lacks and the lab needs.
//
//  * unix stream sockets with SCM_RIGHTS fd passing (vfio-user transport)
//  * unix datagram sockets (fabric switch ports)
//  * readiness notification for any fd, on Node's own libuv loop (Poll)
//  * memfd_create + mmap(MAP_SHARED) into an external ArrayBuffer (guest RAM)
//  * eventfd (interrupt delivery to QEMU)
//  * timerfd (delays finer than Node's millisecond timers)
//  * the fabric's fast path: recvfrom with the sender's path, connect and
//    buffer sizes for datagram sockets, batched sendmmsg/recvmmsg, CRC-32
//  * malloc tuning, so that freed receive slabs are reused instead of
//    returned to the kernel (retainFreedHeap)
//  * file seals of guest-RAM fds (DMA_MAP)
//
// One file a concern: fds.cc (fds, memfd, mmap), seals.cc, eventfd.cc, timerfd.cc,
// stream.cc (stream sockets with fd passing), dgram.cc (datagram sockets and
// the fast path), crc32.cc, poll.cc; native.h holds what they share
// (common.cc). This file only registers them. native/index.ts is the typed
// JS entry for all of it.
//
// Every fd is created non-blocking and close-on-exec. Failures become JS
// exceptions shaped like Node's own system errors: `code` is the errno name
// ("EBADF"), `errno` the negative errno, `syscall` the failing call.
// "Would block" is not an error: the I/O calls return -1 (or null) for it so
// the hot path does not pay for exception unwinding.

#include "native.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pcieoe::RegisterFds(env, exports);
  pcieoe::RegisterSeals(env, exports);
  pcieoe::RegisterEventfd(env, exports);
  pcieoe::RegisterTimerfd(env, exports);
  pcieoe::RegisterStream(env, exports);
  pcieoe::RegisterDgram(env, exports);
  pcieoe::RegisterCrc32(env, exports);
  pcieoe::RegisterPoll(env, exports);
  pcieoe::RegisterMemifForward(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pcieoe_native, Init)
