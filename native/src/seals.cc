// File seals (fcntl F_GET_SEALS / F_ADD_SEALS) for DMA_MAP: a guest-RAM fd
// whose owner cannot shrink it (F_SEAL_SHRINK) is safe to mmap; any other fd
// could be truncated under the mapping, and the next access would raise
// SIGBUS and kill the process, so the vfio-user server reads and writes it
// with pread/pwrite instead. QEMU's memory-backend-memfd seals its memfd
// (seal=on by default) with SHRINK|GROW|SEAL; sealedMemfd makes the same kind
// for tests.

#include "native.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

namespace pcieoe {

namespace {

// fdSeals(fd) -> F_SEAL_* bits; 0 for an fd that does not support sealing.
Napi::Value FdSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "fdSeals needs a file descriptor number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    if (errno == EINVAL) return Napi::Number::New(env, 0);
    ThrowErrno(env, "fcntl(F_GET_SEALS)", errno);
  }
  return Napi::Number::New(env, seals);
}

// sealedMemfd(name, size) -> a memfd of `size` bytes sealed SHRINK|GROW|SEAL.
Napi::Value SealedMemfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "sealedMemfd(name, size)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int64_t size = info[1].As<Napi::Number>().Int64Value();
  if (size < 0) throw Napi::RangeError::New(env, "size must be >= 0");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) ThrowErrno(env, "memfd_create", errno);
  const char* failed = nullptr;
  if (ftruncate(fd, size) < 0) failed = "ftruncate";
  else if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) failed = "fcntl(F_ADD_SEALS)";
  if (failed) {
    int err = errno;
    close(fd);
    ThrowErrno(env, failed, err);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void RegisterSeals(Napi::Env env, Napi::Object exports) {
  exports.Set("fdSeals", Napi::Function::New(env, FdSeals));
  exports.Set("sealedMemfd", Napi::Function::New(env, SealedMemfd));
}

}  // namespace pcieoe
