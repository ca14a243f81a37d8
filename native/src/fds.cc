// Plain fds, memfd and mmap: guest RAM arrives as a memfd (DMA_MAP) and is
// mapped MAP_SHARED into an external ArrayBuffer; close/dup for every fd the
// other files create.
#include "native.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <unordered_map>

namespace pcieoe {

namespace {

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

// fdNonBlocking(fd[, on]) -> whether O_NONBLOCK is set on the open file (set or
// cleared first when `on` is given; the flag belongs to the file description,
// so every fd sharing it, in any process, sees the change).
Napi::Value FdNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowErrno(env, "fcntl");
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    flags = info[1].ToBoolean() ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, flags) < 0) ThrowErrno(env, "fcntl");
  }
  return Napi::Boolean::New(env, (flags & O_NONBLOCK) != 0);
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

}  // namespace

void RegisterFds(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("fdNonBlocking", Napi::Function::New(env, FdNonBlocking));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
}

}  // namespace pcieoe
