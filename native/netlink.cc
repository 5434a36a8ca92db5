// rtnetlink and generic netlink queries: routes, neighbours, links and a
// device's XDP features. Synchronous; every call opens its own socket in the
// calling thread's network namespace (so inNetns reaches a test host),
// sends one request, reads the answer and closes. Messages are built and
// parsed here by hand: no netlink library.
#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <napi.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace rs {
namespace {

// linux/netdev.h (kernel 6.3+) is missing from Debian 12's 6.1 headers.
constexpr const char* kNetdevFamilyName = "netdev";
constexpr uint8_t kNetdevFamilyVersion = 1;
constexpr uint8_t kNetdevCmdDevGet = 1;
constexpr uint16_t kNetdevAttrDevIfindex = 1;
constexpr uint16_t kNetdevAttrDevXdpFeatures = 3;  // u64, enum netdev_xdp_act bits

// A kernel that never answers would hang the agent's only thread.
constexpr int kReplyTimeoutSeconds = 5;

// The parsed answer to one request.
struct Reply {
  int err = 0;              // 0 or a positive errno from NLMSG_ERROR
  std::string kernel_msg;   // extended ack message (NLMSGERR_ATTR_MSG), if any
  std::vector<uint8_t> msg;  // the answering message (nlmsghdr first); empty for a bare ack
};

// One netlink request: header, family header, attributes.
class Request {
 public:
  Request(uint16_t type, uint16_t flags, const void* family_hdr, size_t family_len) {
    buf_.resize(NLMSG_SPACE(family_len));
    auto* h = Header();
    h->nlmsg_len = NLMSG_LENGTH(family_len);
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    memcpy(NLMSG_DATA(h), family_hdr, family_len);
  }

  void Attr(uint16_t type, const void* data, size_t len) {
    size_t at = NLMSG_ALIGN(Header()->nlmsg_len);
    buf_.resize(at + NLA_ALIGN(NLA_HDRLEN + len), 0);
    auto* a = reinterpret_cast<nlattr*>(buf_.data() + at);
    a->nla_type = type;
    a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
    memcpy(buf_.data() + at + NLA_HDRLEN, data, len);
    Header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
  }
  void AttrU32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof(v)); }
  void AttrString(uint16_t type, const std::string& s) { Attr(type, s.c_str(), s.size() + 1); }

  nlmsghdr* Header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  const std::vector<uint8_t>& Bytes() const { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

// Attributes of one message or nest, indexed by type (the last one of a type wins).
class Attrs {
 public:
  Attrs(const uint8_t* p, size_t len) {
    while (len >= NLA_HDRLEN) {
      auto* a = reinterpret_cast<const nlattr*>(p);
      if (a->nla_len < NLA_HDRLEN || a->nla_len > len) break;  // truncated: stop, do not read past
      uint16_t type = a->nla_type & NLA_TYPE_MASK;
      if (type >= tb_.size()) tb_.resize(type + 1, nullptr);
      tb_[type] = a;
      size_t step = NLA_ALIGN(a->nla_len);
      if (step > len) break;
      p += step;
      len -= step;
    }
  }
  // Attributes following a family header of `hdr_len` bytes in message `m`.
  static Attrs Of(const std::vector<uint8_t>& m, size_t hdr_len) {
    auto* h = reinterpret_cast<const nlmsghdr*>(m.data());
    size_t off = NLMSG_LENGTH(NLMSG_ALIGN(hdr_len));
    if (h->nlmsg_len < off) return Attrs(nullptr, 0);
    return Attrs(m.data() + off, h->nlmsg_len - off);
  }
  static Attrs Nested(const nlattr* a) {
    return Attrs(reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN, a->nla_len - NLA_HDRLEN);
  }

  const nlattr* Get(uint16_t type) const { return type < tb_.size() ? tb_[type] : nullptr; }
  const uint8_t* Data(uint16_t type) const {
    auto* a = Get(type);
    return a ? reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN : nullptr;
  }
  size_t Len(uint16_t type) const {
    auto* a = Get(type);
    return a ? a->nla_len - NLA_HDRLEN : 0;
  }
  // Fixed-size integer attribute; false when absent or too short.
  template <typename T>
  bool Read(uint16_t type, T* out) const {
    if (Len(type) < sizeof(T)) return false;
    memcpy(out, Data(type), sizeof(T));
    return true;
  }

 private:
  std::vector<const nlattr*> tb_;
};

// A netlink socket of one protocol, opened in the calling thread's namespace.
class Socket {
 public:
  Socket(Napi::Env env, int protocol, const std::string& what) {
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd_ < 0) ThrowErrno(env, errno, what + ": open netlink socket");
    int one = 1;
    // Errors carry the kernel's explanation and not a copy of the request.
    setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    struct timeval tv = {kReplyTimeoutSeconds, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Send `req` and wait for its answer. Transport failures throw; the
  // kernel's verdict on the request is returned in Reply::err.
  Reply Transact(Napi::Env env, Request& req, const std::string& what) {
    auto* h = req.Header();
    h->nlmsg_seq = ++seq_;
    h->nlmsg_pid = 0;
    struct sockaddr_nl kernel = {};
    kernel.nl_family = AF_NETLINK;
    const auto& bytes = req.Bytes();
    ssize_t sent = sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
    if (sent < 0) ThrowErrno(env, errno, what + ": send netlink request");
    std::vector<uint8_t> buf;
    for (;;) {
      // Peek for the datagram's size first: link answers can be large.
      ssize_t size = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
      if (size < 0) {
        if (errno == EINTR) continue;
        ThrowErrno(env, errno == EAGAIN ? ETIMEDOUT : errno, what + ": receive netlink answer");
      }
      buf.resize(static_cast<size_t>(size));
      ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        ThrowErrno(env, errno, what + ": receive netlink answer");
      }
      int len = static_cast<int>(n);  // int: NLMSG_NEXT may step past the end, NLMSG_OK then stops
      for (auto* m = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(m, len); m = NLMSG_NEXT(m, len)) {
        if (m->nlmsg_seq != seq_) continue;  // not ours (stale answer)
        Reply r;
        if (m->nlmsg_type == NLMSG_ERROR) {
          if (m->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) ThrowErrno(env, EBADMSG, what + ": short netlink error");
          auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(m));
          r.err = -e->error;
          if (m->nlmsg_flags & NLM_F_ACK_TLVS) {
            // With NETLINK_CAP_ACK the request is not echoed: TLVs follow nlmsgerr.
            size_t off = NLMSG_LENGTH(sizeof(nlmsgerr));
            Attrs tlv(reinterpret_cast<uint8_t*>(m) + off, m->nlmsg_len - off);
            if (tlv.Len(NLMSGERR_ATTR_MSG) > 0) {
              const char* s = reinterpret_cast<const char*>(tlv.Data(NLMSGERR_ATTR_MSG));
              r.kernel_msg.assign(s, strnlen(s, tlv.Len(NLMSGERR_ATTR_MSG)));
            }
          }
          return r;
        }
        if (m->nlmsg_type == NLMSG_DONE) return r;
        auto* start = reinterpret_cast<uint8_t*>(m);
        r.msg.assign(start, start + m->nlmsg_len);
        return r;
      }
    }
  }

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
};

// Throw the kernel's errno for a request, with its extended ack message when it gave one.
[[noreturn]] void ThrowReply(Napi::Env env, const Reply& r, const std::string& what) {
  ThrowErrno(env, r.err, r.kernel_msg.empty() ? what : what + " (kernel: " + r.kernel_msg + ")");
}

// An answer of the expected type, or throw.
void Expect(Napi::Env env, const Reply& r, uint16_t type, size_t hdr_len, const std::string& what) {
  if (r.err) ThrowReply(env, r, what);
  auto* h = reinterpret_cast<const nlmsghdr*>(r.msg.data());
  if (r.msg.size() < NLMSG_LENGTH(hdr_len) || h->nlmsg_type != type) {
    ThrowErrno(env, EBADMSG, what + ": unexpected netlink answer");
  }
}

int FamilyArg(const Napi::CallbackInfo& info, size_t i) {
  uint32_t f = info[i].As<Napi::Number>().Uint32Value();
  if (f == 4) return AF_INET;
  if (f == 6) return AF_INET6;
  throw Napi::TypeError::New(info.Env(), "address family must be 4 or 6");
}

// The address argument, checked against the family's size.
std::vector<uint8_t> AddressArg(const Napi::CallbackInfo& info, size_t i, int family) {
  if (info.Length() <= i || !info[i].IsBuffer()) throw Napi::TypeError::New(info.Env(), "address must be a Buffer");
  auto b = info[i].As<Napi::Buffer<uint8_t>>();
  size_t want = family == AF_INET ? 4 : 16;
  if (b.Length() != want) {
    throw Napi::RangeError::New(info.Env(), "address is " + std::to_string(b.Length()) + " bytes, expected " +
                                                std::to_string(want));
  }
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

std::string AddressText(int family, const std::vector<uint8_t>& addr) {
  char buf[INET6_ADDRSTRLEN] = "?";
  inet_ntop(family, addr.data(), buf, sizeof(buf));
  return buf;
}

Napi::Value BufferOrNull(Napi::Env env, const Attrs& a, uint16_t type) {
  if (!a.Get(type)) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, a.Data(type), a.Len(type));
}

// "aa:bb:cc:dd:ee:ff" (any length), or null for a missing or empty address.
Napi::Value MacOrNull(Napi::Env env, const Attrs& a, uint16_t type) {
  size_t n = a.Len(type);
  if (n == 0) return env.Null();
  const uint8_t* d = a.Data(type);
  std::string s;
  char part[4];
  for (size_t i = 0; i < n; i++) {
    snprintf(part, sizeof(part), i ? ":%02x" : "%02x", d[i]);
    s += part;
  }
  return Napi::String::New(env, s);
}

// routeGet(family, address) -> {ifindex, gateway, prefsrc, type, table}: the
// route the kernel would use to send to `address` (ip route get).
Napi::Value RouteGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = FamilyArg(info, 0);
  auto addr = AddressArg(info, 1, family);
  std::string what = "get route to " + AddressText(family, addr);
  struct rtmsg rtm = {};
  rtm.rtm_family = static_cast<unsigned char>(family);
  rtm.rtm_dst_len = static_cast<unsigned char>(addr.size() * 8);
  // IPv4 reports the main table unless asked for the table the lookup used.
  if (family == AF_INET) rtm.rtm_flags = RTM_F_LOOKUP_TABLE;
  Request req(RTM_GETROUTE, NLM_F_REQUEST, &rtm, sizeof(rtm));
  req.Attr(RTA_DST, addr.data(), addr.size());
  Socket sock(env, NETLINK_ROUTE, what);
  Reply r = sock.Transact(env, req, what);
  Expect(env, r, RTM_NEWROUTE, sizeof(rtmsg), what);
  auto* got = static_cast<const rtmsg*>(NLMSG_DATA(reinterpret_cast<const nlmsghdr*>(r.msg.data())));
  Attrs a = Attrs::Of(r.msg, sizeof(rtmsg));
  uint32_t oif = 0, table = got->rtm_table;
  a.Read(RTA_OIF, &oif);
  a.Read(RTA_TABLE, &table);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", oif);
  Napi::Value gw = BufferOrNull(env, a, RTA_GATEWAY);
  if (gw.IsNull() && a.Len(RTA_VIA) > sizeof(rtvia)) {
    // An IPv4 route via an IPv6 next hop (RFC 5549) names it in RTA_VIA.
    gw = Napi::Buffer<uint8_t>::Copy(env, a.Data(RTA_VIA) + sizeof(rtvia), a.Len(RTA_VIA) - sizeof(rtvia));
  }
  o.Set("gateway", gw);
  o.Set("prefsrc", BufferOrNull(env, a, RTA_PREFSRC));
  o.Set("type", got->rtm_type);
  o.Set("table", table);
  return o;
}

// neighGet(ifindex, family, address) -> {mac, state, flags, flagsExt} or null when the
// neighbour table has no entry for `address` on the device.
Napi::Value NeighGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  int family = FamilyArg(info, 1);
  auto addr = AddressArg(info, 2, family);
  std::string what = "get neighbour " + AddressText(family, addr) + " on ifindex " + std::to_string(ifindex);
  struct ndmsg ndm = {};
  ndm.ndm_family = static_cast<uint8_t>(family);
  ndm.ndm_ifindex = ifindex;
  Request req(RTM_GETNEIGH, NLM_F_REQUEST, &ndm, sizeof(ndm));
  req.Attr(NDA_DST, addr.data(), addr.size());
  Socket sock(env, NETLINK_ROUTE, what);
  Reply r = sock.Transact(env, req, what);
  if (r.err == ENOENT) return env.Null();
  Expect(env, r, RTM_NEWNEIGH, sizeof(ndmsg), what);
  auto* got = static_cast<const ndmsg*>(NLMSG_DATA(reinterpret_cast<const nlmsghdr*>(r.msg.data())));
  Attrs a = Attrs::Of(r.msg, sizeof(ndmsg));
  Napi::Object o = Napi::Object::New(env);
  o.Set("mac", MacOrNull(env, a, NDA_LLADDR));
  o.Set("state", got->ndm_state);
  o.Set("flags", got->ndm_flags);
  uint32_t ext = 0;
  a.Read(NDA_FLAGS_EXT, &ext);
  o.Set("flagsExt", ext);
  return o;
}

// neighResolve(ifindex, family, address): make the kernel probe for
// `address` itself (ARP / neighbour solicitation), as `ip neigh replace
// ADDR dev DEV use` does: RTM_NEWNEIGH with NTF_USE, which calls
// neigh_event_send and never writes a MAC. Unlike iproute2 the state sent
// is NUD_NONE, not NUD_PERMANENT: the state is ignored with NTF_USE, except
// that PERMANENT exempts a newly created entry from garbage collection.
Napi::Value NeighResolve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  int family = FamilyArg(info, 1);
  auto addr = AddressArg(info, 2, family);
  std::string what = "resolve neighbour " + AddressText(family, addr) + " on ifindex " + std::to_string(ifindex);
  struct ndmsg ndm = {};
  ndm.ndm_family = static_cast<uint8_t>(family);
  ndm.ndm_ifindex = ifindex;
  ndm.ndm_state = NUD_NONE;
  ndm.ndm_flags = NTF_USE;
  Request req(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &ndm, sizeof(ndm));
  req.Attr(NDA_DST, addr.data(), addr.size());
  Socket sock(env, NETLINK_ROUTE, what);
  Reply r = sock.Transact(env, req, what);
  if (r.err) ThrowReply(env, r, what);
  return env.Undefined();
}

// linkInfo(ifindex | name) -> what routeshift needs to know about a device:
// its kind, master, peer (IFLA_LINK / IFLA_LINK_NETNSID), addresses and XDP state.
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifinfomsg ifi = {};
  ifi.ifi_family = AF_UNSPEC;
  std::string name, what;
  if (info.Length() > 0 && info[0].IsString()) {
    name = info[0].As<Napi::String>().Utf8Value();
    if (name.empty() || name.size() >= IFNAMSIZ) ThrowErrno(env, EINVAL, "get link " + name + ": bad interface name");
    what = "get link " + name;
  } else if (info.Length() > 0 && info[0].IsNumber()) {
    ifi.ifi_index = info[0].As<Napi::Number>().Int32Value();
    what = "get link ifindex " + std::to_string(ifi.ifi_index);
  } else {
    throw Napi::TypeError::New(env, "linkInfo(ifindex | name)");
  }
  Request req(RTM_GETLINK, NLM_F_REQUEST, &ifi, sizeof(ifi));
  if (!name.empty()) req.AttrString(IFLA_IFNAME, name);
  req.AttrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  Socket sock(env, NETLINK_ROUTE, what);
  Reply r = sock.Transact(env, req, what);
  Expect(env, r, RTM_NEWLINK, sizeof(ifinfomsg), what);
  auto* got = static_cast<const ifinfomsg*>(NLMSG_DATA(reinterpret_cast<const nlmsghdr*>(r.msg.data())));
  Attrs a = Attrs::Of(r.msg, sizeof(ifinfomsg));
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", got->ifi_index);
  std::string ifname;
  if (a.Len(IFLA_IFNAME)) {
    const char* s = reinterpret_cast<const char*>(a.Data(IFLA_IFNAME));
    ifname.assign(s, strnlen(s, a.Len(IFLA_IFNAME)));
  }
  o.Set("name", ifname);
  Napi::Value kind = env.Null();
  if (a.Get(IFLA_LINKINFO)) {
    Attrs li = Attrs::Nested(a.Get(IFLA_LINKINFO));
    if (li.Len(IFLA_INFO_KIND)) {
      const char* s = reinterpret_cast<const char*>(li.Data(IFLA_INFO_KIND));
      kind = Napi::String::New(env, std::string(s, strnlen(s, li.Len(IFLA_INFO_KIND))));
    }
  }
  o.Set("kind", kind);
  uint32_t u = 0;
  int32_t s32 = 0;
  o.Set("masterIfindex", a.Read(IFLA_MASTER, &u) ? Napi::Value(Napi::Number::New(env, u)) : env.Null());
  o.Set("linkIfindex", a.Read(IFLA_LINK, &u) ? Napi::Value(Napi::Number::New(env, u)) : env.Null());
  o.Set("linkNetnsid", a.Read(IFLA_LINK_NETNSID, &s32) ? Napi::Value(Napi::Number::New(env, s32)) : env.Null());
  o.Set("mac", MacOrNull(env, a, IFLA_ADDRESS));
  uint32_t mtu = 0;
  a.Read(IFLA_MTU, &mtu);
  o.Set("mtu", mtu);
  o.Set("flags", got->ifi_flags);
  uint8_t oper = 0;
  a.Read(IFLA_OPERSTATE, &oper);
  o.Set("operState", oper);
  uint32_t prog_id = 0;
  uint8_t mode = XDP_ATTACHED_NONE;
  if (a.Get(IFLA_XDP)) {
    Attrs x = Attrs::Nested(a.Get(IFLA_XDP));
    x.Read(IFLA_XDP_PROG_ID, &prog_id);  // absent in multi mode: see the per-mode ids (queryXdp)
    x.Read(IFLA_XDP_ATTACHED, &mode);
  }
  o.Set("xdpProgId", prog_id);
  o.Set("xdpAttachMode", mode);
  return o;
}

// xdpFeatures(ifindex) -> NETDEV_XDP_ACT_* bits the device announces
// (netdev generic netlink family, kernel 6.3+). Whether XDP_REDIRECT into a
// device can work is its NDO_XMIT bit, which for a veth depends on its peer.
Napi::Value XdpFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t ifindex = info[0].As<Napi::Number>().Uint32Value();
  std::string what = "get XDP features of ifindex " + std::to_string(ifindex);
  Socket sock(env, NETLINK_GENERIC, what);

  struct genlmsghdr ctrl = {};
  ctrl.cmd = CTRL_CMD_GETFAMILY;
  ctrl.version = 2;
  Request family_req(GENL_ID_CTRL, NLM_F_REQUEST, &ctrl, sizeof(ctrl));
  family_req.AttrString(CTRL_ATTR_FAMILY_NAME, kNetdevFamilyName);
  std::string family_what = what + ": resolve generic netlink family " + kNetdevFamilyName;
  Reply fr = sock.Transact(env, family_req, family_what);
  if (fr.err == ENOENT) ThrowErrno(env, ENOENT, family_what + " (kernel older than 6.3 has no XDP feature reporting)");
  Expect(env, fr, GENL_ID_CTRL, sizeof(genlmsghdr), family_what);
  uint16_t family_id = 0;
  if (!Attrs::Of(fr.msg, sizeof(genlmsghdr)).Read(CTRL_ATTR_FAMILY_ID, &family_id)) {
    ThrowErrno(env, EBADMSG, family_what + ": no family id in the answer");
  }

  struct genlmsghdr dev = {};
  dev.cmd = kNetdevCmdDevGet;
  dev.version = kNetdevFamilyVersion;
  Request dev_req(family_id, NLM_F_REQUEST, &dev, sizeof(dev));
  dev_req.AttrU32(kNetdevAttrDevIfindex, ifindex);
  Reply dr = sock.Transact(env, dev_req, what);
  Expect(env, dr, family_id, sizeof(genlmsghdr), what);
  uint64_t features = 0;
  if (!Attrs::Of(dr.msg, sizeof(genlmsghdr)).Read(kNetdevAttrDevXdpFeatures, &features)) {
    ThrowErrno(env, EBADMSG, what + ": no xdp-features in the answer");
  }
  return Napi::Number::New(env, static_cast<double>(features));
}

}  // namespace

void InitNetlinkFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("routeGet", Napi::Function::New(env, RouteGet));
  exports.Set("neighGet", Napi::Function::New(env, NeighGet));
  exports.Set("neighResolve", Napi::Function::New(env, NeighResolve));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("xdpFeatures", Napi::Function::New(env, XdpFeatures));
}

}  // namespace rs
