// MemifForwarder: the switch's memif-to-memif fast path (src/fabric/switch/memif-forward.ts).
//
// A burst of frames on one port's receive ring (client-to-server, the switch the server) goes
// to the destination ports' transmit rings (server-to-client) in one call: each frame copied
// slot to slot once, by routes the switch's JavaScript core installed (ingress port, source
// MAC, destination MAC, VLAN tag as received → egress port, valid until a time), per-port
// counters kept in a Float64Array the JS side reads, and each destination's eventfd written
// once, only when its consumer sleeps (MASK_INT clear), as wire/memif/ring.ts does.
//
// Frame loss set on a port (the switch's fault injection, loss alone: nothing held back) is
// applied here too, with the probabilities the JS side keeps in a Float64Array (per port: frames
// in from its station, frames out to it), drawn from a seeded xorshift64* of its own, each
// drop and pass counted as the injector counts them.
//
// It stops at the first frame it cannot forward as it is — no route, a route expired, a
// destination the JS side holds (frames queued there, faults, a capture), a full ring, a
// malformed descriptor or chain, a runt, a group address — and leaves that frame and all
// after it on the ring: the JS path then takes them in order, and cuts a malformed peer off
// with the same MemifDescriptorError paths as ever. Nothing here throws on peer data.
//
// MemifForwardPoll: a port's receive eventfd watched on Node's libuv loop from here, in place of
// a Poll (poll.cc) whose callback enters JavaScript. At QD 1 every frame of an I/O wakes the
// switch, and a wake-up through JavaScript costs the callback, the receive pass and a microtask
// for the eventfd read; here it is the eventfd read and the pass above, in one libuv callback.
// The JS callback runs only when the pass leaves frames (no route, a destination held, the
// port's own JS side busy): then the port's ordinary receive pass takes them, in order.
//
// Ring layout: wire/memif/ring.ts. Pointers stay valid while the session whose rings they
// point into lives: the JS side re-registers a port whenever its rings change, and a session's
// end closes its MemifForwardPoll first, which unregisters the port's rings before they are
// unmapped.
#include "native.h"
#include "uv-poll.h"

#include <unistd.h>

#include <cstring>
#include <vector>

namespace pcieoe {

namespace {

constexpr uint32_t kHeaderBytes = 128;
constexpr uint32_t kDescBytes = 16;
constexpr uint16_t kMaskInt = 1;
constexpr uint16_t kDescNext = 1;
constexpr uint32_t kMaxFrame = 65535;
constexpr int kMaxSegments = 32;
constexpr uint16_t kTpid = 0x8100;
// The bytes a route is chosen by: addresses and an 802.1Q tag.
constexpr uint32_t kHeader = 18;
// Per port in the counters array: rxFrames, rxBytes, txFrames, txBytes, txSignals, rxWakes
// (wake-ups served here without JavaScript), then the loss's drops and passes: rxLost, rxPassed
// (frames in from the station), txLost, txPassed (out to it).
constexpr int kCounters = 10;
constexpr int kRxLost = 6;
constexpr int kTxLost = 8;
// Frames taken per wake-up before the rest is left to the JS pass (as its RX_PER_EVENT).
constexpr uint32_t kPerWake = 1024;

struct Region {
  uint8_t* base;
  uint64_t length;
};

struct Ring {
  uint8_t* header = nullptr;
  uint32_t size = 0;
  std::vector<Region> regions;

  uint16_t* u16(uint32_t off) const { return reinterpret_cast<uint16_t*>(header + off); }
  uint16_t Head() const { return __atomic_load_n(u16(6), __ATOMIC_ACQUIRE); }
  uint16_t Tail() const { return __atomic_load_n(u16(64), __ATOMIC_ACQUIRE); }
  // The consumer masks its interrupt while it drains (MASK_INT), and clears it before it sleeps.
  void WantSignals(bool want) const { __atomic_store_n(u16(4), static_cast<uint16_t>(want ? 0 : kMaskInt), __ATOMIC_SEQ_CST); }
  // Sequentially consistent, as WantSignals: publishing the tail and then reading the consumer's
  // MASK_INT must not be reordered (x86 may move a load ahead of a release store), or a consumer
  // that unmasks and re-checks at that moment misses the frame until its next sweep.
  void SetTail(uint16_t v) const { __atomic_store_n(u16(64), v, __ATOMIC_SEQ_CST); }
  bool ConsumerSleeps() const { return (__atomic_load_n(u16(4), __ATOMIC_SEQ_CST) & kMaskInt) == 0; }
  uint8_t* Desc(uint16_t counter) const { return header + kHeaderBytes + (counter & (size - 1)) * kDescBytes; }
  // The bytes a descriptor names, if they lie inside their region.
  uint8_t* Bytes(const uint8_t* d, uint32_t length) const {
    uint16_t region;
    uint32_t offset;
    memcpy(&region, d + 2, 2);
    memcpy(&offset, d + 8, 4);
    if (region >= regions.size() || uint64_t{offset} + length > regions[region].length) return nullptr;
    return regions[region].base + offset;
  }
};

struct Port {
  bool rxReady = false;
  bool txReady = false;
  Ring rx;
  Ring tx;
  int txEvent = -1;
};

struct Route {
  int from;
  uint64_t src;
  uint64_t dst;
  int tag;  // VID of a tagged frame, -1 untagged
  int to;
  double until;
};

// Marks a MemifForwarder's JS object, so a MemifForwardPoll is given nothing else to unwrap as one.
constexpr napi_type_tag kForwarderTag = {0x6d656d6966667764ULL, 0x7377697463680001ULL};

struct Segment {
  const uint8_t* bytes;
  uint32_t length;
};

uint64_t Mac(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++) v = (v << 8) | p[i];
  return v;
}

// Ring `header` (a Uint8Array from the ring's header through its descriptors) and its regions.
Ring RingArg(Napi::Env env, const Napi::Value& header, const Napi::Value& regions) {
  if (!header.IsTypedArray() || !regions.IsArray()) throw Napi::TypeError::New(env, "a ring needs its header bytes and its regions");
  Napi::Uint8Array h = header.As<Napi::Uint8Array>();
  Ring r;
  r.header = h.Data();
  uint32_t slots = static_cast<uint32_t>((h.ByteLength() - kHeaderBytes) / kDescBytes);
  if (h.ByteLength() < kHeaderBytes + kDescBytes || (slots & (slots - 1)) != 0) throw Napi::RangeError::New(env, "ring header bytes: not a ring of 2^n slots");
  r.size = slots;
  Napi::Array list = regions.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsTypedArray()) throw Napi::TypeError::New(env, "a region must be a Uint8Array");
    Napi::Uint8Array u = v.As<Napi::Uint8Array>();
    r.regions.push_back({u.Data(), u.ByteLength()});
  }
  return r;
}

class MemifForwarder : public Napi::ObjectWrap<MemifForwarder> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "MemifForwarder", {
      InstanceMethod<&MemifForwarder::SetRx>("setRx"),
      InstanceMethod<&MemifForwarder::SetTx>("setTx"),
      InstanceMethod<&MemifForwarder::SetRoute>("setRoute"),
      InstanceMethod<&MemifForwarder::ClearRoutes>("clearRoutes"),
      InstanceMethod<&MemifForwarder::Forward>("forward"),
    });
  }

  // new MemifForwarder(ports, routes, counters: Float64Array(ports * 10), hits: Float64Array(routes), open: Uint8Array(ports),
  //                   loss: Float64Array(ports * 2), seed)
  // open[j] != 0: port j's transmit ring may be written (the JS side keeps it: its rings
  // registered, nothing of its own waiting for it, no fault but loss and no capture on the port);
  // loss[2j], loss[2j + 1]: the probability a frame in from port j's station, out to it, is dropped.
  explicit MemifForwarder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemifForwarder>(info) {
    Napi::Env env = info.Env();
    uint32_t ports = ArgCount(info, 0);
    maxRoutes_ = ArgCount(info, 1);
    if (info.Length() < 7 || !info[2].IsTypedArray() || !info[3].IsTypedArray() || !info[5].IsTypedArray() || !info[6].IsNumber()) throw Napi::TypeError::New(env, "MemifForwarder needs its counters, hits, open and loss arrays and a seed");
    Napi::Float64Array counters = info[2].As<Napi::Float64Array>();
    Napi::Float64Array hits = info[3].As<Napi::Float64Array>();
    Napi::Uint8Array open = ArgBytes(info, 4);
    Napi::Float64Array loss = info[5].As<Napi::Float64Array>();
    if (counters.ElementLength() < size_t{ports} * kCounters || hits.ElementLength() < maxRoutes_ || open.ByteLength() < ports || loss.ElementLength() < size_t{ports} * 2) throw Napi::RangeError::New(env, "counters, hits, open or loss array too short");
    counters_ = counters.Data();
    hits_ = hits.Data();
    open_ = open.Data();
    loss_ = loss.Data();
    // xorshift64* must not start at 0; splitmix the seed so nearby seeds give unrelated streams.
    uint64_t z = static_cast<uint64_t>(info[6].As<Napi::Number>().Int64Value()) + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    rng_ = (z ^ (z >> 31)) | 1;
    // The arrays' memory must outlive every call: hold them.
    keep_ = Napi::Persistent(Napi::Object::New(env));
    keep_.Set("counters", counters);
    keep_.Set("hits", hits);
    keep_.Set("open", open);
    keep_.Set("loss", loss);
    ports_.resize(ports);
    routes_.reserve(maxRoutes_);
    info.This().As<Napi::Object>().TypeTag(&kForwarderTag);
  }

 private:
  // setRx(i, header, regions) | setRx(i, null): port i's receive ring, or none.
  Napi::Value SetRx(const Napi::CallbackInfo& info) {
    Port& p = PortArg(info);
    bool on = info.Length() > 1 && !info[1].IsNull();
    p.rxReady = false;
    p.rx = on ? RingArg(info.Env(), info[1], info[2]) : Ring{};
    p.rxReady = on;
    return info.Env().Undefined();
  }

  // setTx(i, header, regions, eventfd) | setTx(i, null): port i's transmit ring, or none.
  Napi::Value SetTx(const Napi::CallbackInfo& info) {
    Port& p = PortArg(info);
    bool on = info.Length() > 1 && !info[1].IsNull();
    p.txReady = false;
    p.tx = on ? RingArg(info.Env(), info[1], info[2]) : Ring{};
    p.txEvent = on ? ArgFd(info, 3) : -1;
    p.txReady = on;
    return info.Env().Undefined();
  }

  Port& PortArg(const Napi::CallbackInfo& info) {
    uint32_t i = ArgCount(info, 0);
    if (i >= ports_.size()) throw Napi::RangeError::New(info.Env(), "no such port");
    return ports_[i];
  }

  // setRoute(k, from, src, dst, tag, to, until): route k (k ≤ the routes set so far).
  Napi::Value SetRoute(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t k = ArgCount(info, 0);
    Route r{static_cast<int>(ArgCount(info, 1)), static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()), static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value()),
            info[4].As<Napi::Number>().Int32Value(), static_cast<int>(ArgCount(info, 5)), info[6].As<Napi::Number>().DoubleValue()};
    if (k > routes_.size() || k >= maxRoutes_ || r.from >= static_cast<int>(ports_.size()) || r.to >= static_cast<int>(ports_.size())) throw Napi::RangeError::New(env, "route out of range");
    if (k == routes_.size()) routes_.push_back(r);
    else routes_[k] = r;
    hits_[k] = 0;
    return env.Undefined();
  }

  Napi::Value ClearRoutes(const Napi::CallbackInfo& info) {
    routes_.clear();
    return info.Env().Undefined();
  }

  // forward(i, cursor, max, now) → frames forwarded * 65536 + the new cursor. The caller has
  // brought open[] up to date in this turn. `now` is the JS clock's: a wake-up served here reads
  // the same clock through the offset kept from it.
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t from = ArgCount(info, 0);
    uint16_t cursor = static_cast<uint16_t>(ArgCount(info, 1));
    uint32_t max = ArgCount(info, 2);
    double now = info[3].As<Napi::Number>().DoubleValue();
    clockOffset_ = HrMs() - now;
    if (from >= ports_.size() || !ports_[from].rxReady) throw Napi::RangeError::New(env, "forward: port not set");
    const Ring& rx = ports_[from].rx;
    uint16_t head = rx.Head();
    uint32_t n = 0;
    if (static_cast<uint16_t>(head - cursor) <= rx.size) n = Burst(from, rx, cursor, head, max, now);
    return Napi::Number::New(env, double(n) * 65536 + cursor);
  }

  static double HrMs() { return static_cast<double>(uv_hrtime()) / 1e6; }

 public:
  // A wake-up of port i (its receive eventfd `fd` readable), served here if the port is wholly
  // native now: the eventfd read, then every frame on the ring forwarded, then the interrupt
  // asked for again and the ring looked at once more (a frame published meanwhile found it
  // masked and signalled nobody). False: frames are left (or the port is not native now), and
  // the caller runs the JS receive pass, which takes them in order and reads the eventfd itself.
  bool Serve(uint32_t i, int fd) {
    if (i >= ports_.size() || !ports_[i].rxReady || !open_[i] || routes_.empty()) return false;
    const Ring& rx = ports_[i].rx;
    uint64_t v;
    // EAGAIN (a spurious wake-up) is fine: the ring decides.
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN) return false;
    double now = HrMs() - clockOffset_;
    uint32_t budget = kPerWake;
    // The server's own position in a c2s ring is the tail it publishes (the JS pass keeps them equal).
    uint16_t cursor = rx.Tail();
    for (;;) {
      rx.WantSignals(false);
      uint16_t head = rx.Head();
      if (static_cast<uint16_t>(head - cursor) > rx.size) return false;
      if (cursor != head) {
        budget -= Burst(i, rx, cursor, head, budget, now);
        if (cursor != head) return false;
      }
      rx.WantSignals(true);
      if (rx.Head() == cursor) break;
    }
    counters_[i * kCounters + 5] += 1;
    return true;
  }

  // Port i's session is ending: its rings are about to be unmapped.
  void Detach(uint32_t i) {
    if (i >= ports_.size()) return;
    ports_[i].rxReady = false;
    ports_[i].txReady = false;
    open_[i] = 0;
  }

 private:
  uint32_t Burst(uint32_t from, const Ring& rx, uint16_t& cursor, uint16_t head, uint32_t max, double now) {
    const uint8_t* open = open_;
    // Each destination's tail as this call moves it, and its head (the buffers offered) read once.
    std::vector<int>& tails = tails_;
    tails.assign(ports_.size(), -1);
    std::vector<uint16_t>& heads = heads_;
    heads.resize(ports_.size());
    Segment segs[kMaxSegments];
    uint32_t n = 0;
    while (cursor != head && n < max) {
      // The frame's chain, every descriptor inside its region.
      int used = 0;
      uint32_t bytes = 0;
      bool ok = false;
      while (used < kMaxSegments && static_cast<uint16_t>(head - cursor) > used) {
        const uint8_t* d = rx.Desc(cursor + used);
        uint16_t flags;
        uint32_t length;
        memcpy(&flags, d, 2);
        memcpy(&length, d + 4, 4);
        const uint8_t* b = rx.Bytes(d, length);
        bytes += length;
        if (b == nullptr || bytes > kMaxFrame) break;
        segs[used++] = {b, length};
        if (!(flags & kDescNext)) {
          ok = true;
          break;
        }
      }
      if (!ok || segs[0].length < kHeader) break;
      // Decided on a copy of the header, and that copy is what leaves: the peer may rewrite the
      // slot meanwhile, but not the addresses the route (and port security) was checked on.
      uint8_t f[kHeader];
      memcpy(f, segs[0].bytes, kHeader);
      uint64_t dst = Mac(f);
      if (f[0] & 1) break;
      uint64_t src = Mac(f + 6);
      int tag = (f[12] << 8 | f[13]) == kTpid ? ((f[14] << 8 | f[15]) & 0xfff) : -1;
      int k = Find(from, src, dst, tag, now);
      if (k < 0) break;
      int to = routes_[k].to;
      const Port& out = ports_[to];
      if (!open[to] || !out.txReady) break;
      // The injector's loss, in from the station and then out to the other: a dropped frame is taken off the ring and goes nowhere.
      if (Lost(from, 0) || Lost(to, 1)) {
        cursor = static_cast<uint16_t>(cursor + used);
        hits_[k] = now;
        n++;
        continue;
      }
      const Ring& tx = out.tx;
      if (tails[to] < 0) {
        tails[to] = tx.Tail();
        heads[to] = tx.Head();
      }
      uint16_t tail = static_cast<uint16_t>(tails[to]);
      Segment room[kMaxSegments];
      int slots = Fit(tx, tail, static_cast<uint16_t>(heads[to] - tail), bytes, room);
      if (slots <= 0) break;
      Copy(tx, tail, segs, used, room, slots, f);
      tails[to] = static_cast<uint16_t>(tail + slots);
      cursor = static_cast<uint16_t>(cursor + used);
      hits_[k] = now;
      double* c = counters_ + from * kCounters;
      c[0] += 1;
      c[1] += bytes;
      c = counters_ + to * kCounters;
      c[2] += 1;
      c[3] += bytes;
      n++;
    }
    for (size_t j = 0; j < ports_.size(); j++) {
      if (tails[j] < 0 || static_cast<uint16_t>(tails[j]) == ports_[j].tx.Tail()) continue;
      const Ring& tx = ports_[j].tx;
      tx.SetTail(static_cast<uint16_t>(tails[j]));
      if (tx.ConsumerSleeps() && EventfdAdd(ports_[j].txEvent, 1) == 1) counters_[j * kCounters + 4] += 1;
    }
    if (n > 0) rx.SetTail(cursor);
    return n;
  }

  // Whether port j's loss drops this frame on its way in from (way 0) or out to (way 1) the
  // station; each decision counted on that port as the injector counts it (lost or passed).
  bool Lost(int j, int way) {
    double p = loss_[j * 2 + way];
    if (!(p > 0)) return false;
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    double u = static_cast<double>((rng_ * 0x2545f4914f6cdd1dULL) >> 11) * 0x1.0p-53;
    bool lost = u < p;
    counters_[j * kCounters + (way ? kTxLost : kRxLost) + (lost ? 0 : 1)] += 1;
    return lost;
  }

  int Find(uint32_t from, uint64_t src, uint64_t dst, int tag, double now) const {
    for (size_t k = 0; k < routes_.size(); k++) {
      const Route& r = routes_[k];
      if (r.dst == dst && r.src == src && r.from == static_cast<int>(from) && r.tag == tag) return now <= r.until ? static_cast<int>(k) : -1;
    }
    return -1;
  }

  // Where a frame of `bytes` goes in the buffers offered from `tail`: each buffer's bytes and how
  // many it takes, read once (the peer may rewrite its descriptors meanwhile); how many buffers,
  // or 0 when too few are offered, one lies outside its region, offers no room, or the first is
  // too short for the header. Nothing is written yet.
  static int Fit(const Ring& tx, uint16_t tail, uint16_t offered, uint32_t bytes, Segment* out) {
    if (offered > tx.size) return 0;
    uint32_t left = bytes;
    int slots = 0;
    do {
      if (slots >= offered || slots >= kMaxSegments) return 0;
      const uint8_t* d = tx.Desc(tail + slots);
      uint32_t room;
      memcpy(&room, d + 4, 4);
      uint32_t take = room < left ? room : left;
      const uint8_t* b = tx.Bytes(d, take);
      if (take == 0 || b == nullptr || (slots == 0 && take < kHeader)) return 0;
      out[slots++] = {b, take};
      left -= take;
    } while (left > 0);
    return slots;
  }

  // Copy the frame's segments into the buffers Fit found, the header from the copy the route was
  // chosen by; set each descriptor's length, chaining with NEXT.
  static void Copy(const Ring& tx, uint16_t tail, const Segment* from, int nfrom, const Segment* to, int nto, const uint8_t* header) {
    int s = 0;
    uint32_t inSeg = 0;
    for (int slot = 0; slot < nto; slot++) {
      uint8_t* out = const_cast<uint8_t*>(to[slot].bytes);
      uint32_t filled = 0;
      while (s < nfrom && filled < to[slot].length) {
        uint32_t n = from[s].length - inSeg;
        if (n > to[slot].length - filled) n = to[slot].length - filled;
        memcpy(out + filled, from[s].bytes + inSeg, n);
        filled += n;
        inSeg += n;
        if (inSeg == from[s].length) {
          s++;
          inSeg = 0;
        }
      }
      if (slot == 0) memcpy(out, header, kHeader);
      uint8_t* d = tx.Desc(tail + slot);
      uint16_t flags = slot + 1 < nto ? kDescNext : 0;
      memcpy(d, &flags, 2);
      memcpy(d + 4, &filled, 4);
    }
  }

  std::vector<Port> ports_;
  std::vector<Route> routes_;
  uint32_t maxRoutes_;
  double* counters_;
  double* hits_;
  uint8_t* open_;
  double* loss_;
  uint64_t rng_;
  // uv_hrtime in ms minus the JS clock's now, as of the last forward() from JS.
  double clockOffset_ = 0;
  Napi::ObjectReference keep_;
  std::vector<int> tails_;
  std::vector<uint16_t> heads_;
};

// new MemifForwardPoll(forwarder, i, fd, callback): port i's receive eventfd `fd`, watched as a
// Poll is (uv-poll.h: start, stop, close; the fd never closed here), but each wake-up goes to
// forwarder.Serve first; callback(err, events) runs only for what it leaves. Closing it detaches
// the port from the forwarder: the session's rings go next.
class MemifForwardPoll : public UvPoll<MemifForwardPoll> {
 public:
  explicit MemifForwardPoll(const Napi::CallbackInfo& info) : UvPoll<MemifForwardPoll>(info, ArgFd(info, 2), CallbackArg(info)) {
    forwarder_ = Napi::ObjectWrap<MemifForwarder>::Unwrap(info[0].As<Napi::Object>());
    forwarderRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    port_ = ArgCount(info, 1);
    fd_ = ArgFd(info, 2);
  }

  ~MemifForwardPoll() override { CloseHandle(); }

  bool Serve(int uvEvents) { return forwarder_ != nullptr && forwarder_->Serve(port_, fd_); }

  void Closing() {
    if (forwarder_ != nullptr) forwarder_->Detach(port_);
    forwarder_ = nullptr;
    forwarderRef_.Reset();
  }

 private:
  static Napi::Function CallbackArg(const Napi::CallbackInfo& info) {
    if (info.Length() < 4 || !info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kForwarderTag) || !info[3].IsFunction()) throw Napi::TypeError::New(info.Env(), "MemifForwardPoll needs a forwarder, a port, an fd and a callback");
    return info[3].As<Napi::Function>();
  }

  MemifForwarder* forwarder_ = nullptr;
  Napi::ObjectReference forwarderRef_;
  uint32_t port_ = 0;
  int fd_ = -1;
};

}  // namespace

void RegisterMemifForward(Napi::Env env, Napi::Object exports) {
  exports.Set("MemifForwarder", MemifForwarder::Init(env));
  exports.Set("MemifForwardPoll", MemifForwardPoll::Define(env, "MemifForwardPoll"));
}

}  // namespace pcieoe
