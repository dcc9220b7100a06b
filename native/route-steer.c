// The tunnel's steering written through netlink (src/agent/routes.ts decides what): per prefix two
// route messages, as `ip -force -batch` sent them, many to a sendmsg, each acknowledged. A pass
// then costs a socket and a few syscalls, not a fork of the whole agent and an `ip` process.
// Steer: the fail-closed blackhole (at the given metric) replaced first, then the route through the
// device (scope link, its mtu and preferred source). Release: the route through the device and the
// blackhole at the metric deleted. A failed message does not stop the rest; each one's errno (and
// the kernel's extended-ack text) comes back for the caller to report.
#include "common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 128         // messages a sendmsg: their acks (~1 KB of receive buffer each) fit the default buffer
#define MSG_SPACE 128     // one route message: header, rtmsg, dst, priority or oif, prefsrc, metrics
#define ACK_SPACE 1024    // one ack: nlmsgerr, its capped header and an extended-ack text
// An argument that throws mid-pass: the socket closed, the exception left pending for JS.
#define NEED_OPEN(x) do { if (!(x)) { close(fd); return NULL; } } while (0)

typedef struct {
  uint8_t family, len;
  uint8_t addr[16];
  bool ok;
} prefix_t;

static bool parse_addr(const char *s, uint8_t *family, uint8_t *addr) {
  if (inet_pton(AF_INET, s, addr) == 1) { *family = AF_INET; return true; }
  if (inet_pton(AF_INET6, s, addr) == 1) { *family = AF_INET6; return true; }
  return false;
}

// "10.1.0.0/24", "fd00::/64", or an address alone (a host route).
static prefix_t parse_prefix(const char *s) {
  prefix_t p = { 0 };
  char a[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n >= sizeof a) return p;
  memcpy(a, s, n);
  a[n] = 0;
  if (!parse_addr(a, &p.family, p.addr)) return p;
  unsigned max = p.family == AF_INET ? 32 : 128;
  unsigned len = max;
  if (slash) {
    char *end;
    unsigned long l = strtoul(slash + 1, &end, 10);
    if (end == slash + 1 || *end || l > max) return p;
    len = (unsigned)l;
  }
  p.len = (uint8_t)len;
  p.ok = true;
  return p;
}

static void put_attr(struct nlmsghdr *h, uint16_t type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

typedef struct {
  bool release;
  int oif;
  uint32_t metric;
} steer_args;

// Message k of prefix p (k 0: the blackhole, or on release the device's route; k 1: the other) into
// h. Returns false when it is not to be sent (no such device: a route through it cannot be written,
// and a delete without the device would take any route to the prefix).
static bool build(struct nlmsghdr *h, uint32_t seq, const steer_args *a, const prefix_t *p, int k,
                  uint32_t mtu, bool has_src, const uint8_t *src) {
  bool blackhole = a->release ? k == 1 : k == 0;
  if (!blackhole && !a->oif) return false;
  memset(h, 0, MSG_SPACE);
  h->nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  h->nlmsg_type = a->release ? RTM_DELROUTE : RTM_NEWROUTE;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (a->release ? 0 : NLM_F_CREATE | NLM_F_REPLACE);
  h->nlmsg_seq = seq;
  struct rtmsg *rt = NLMSG_DATA(h);
  rt->rtm_family = p->family;
  rt->rtm_dst_len = p->len;
  rt->rtm_table = RT_TABLE_MAIN;
  if (a->release) { // as ip's `route del`: no protocol, any scope, the type only for the blackhole
    rt->rtm_scope = RT_SCOPE_NOWHERE;
    rt->rtm_type = blackhole ? RTN_BLACKHOLE : RTN_UNSPEC;
  } else { // as ip's `route replace`: a route without a gateway is on-link
    rt->rtm_protocol = RTPROT_BOOT;
    rt->rtm_scope = blackhole ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rt->rtm_type = blackhole ? RTN_BLACKHOLE : RTN_UNICAST;
  }
  put_attr(h, RTA_DST, p->addr, p->family == AF_INET ? 4 : 16);
  if (blackhole) {
    put_attr(h, RTA_PRIORITY, &a->metric, sizeof a->metric);
    return true;
  }
  put_attr(h, RTA_OIF, &a->oif, sizeof a->oif);
  if (a->release) return true;
  if (has_src) put_attr(h, RTA_PREFSRC, src, p->family == AF_INET ? 4 : 16);
  if (mtu) {
    struct { struct rtattr a; uint32_t v; } m = { { RTA_LENGTH(sizeof(uint32_t)), RTAX_MTU }, mtu };
    put_attr(h, RTA_METRICS, &m, sizeof m);
  }
  return true;
}

// The open socket in netns (NULL or "": this thread's own), with the device's index there.
static int open_in(const char *netns, const char *device, int *oif) {
  int back = -1, target = -1, fd = -1, e = 0;
  if (netns && *netns) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/var/run/netns/%s", netns);
    back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    target = back < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (target < 0 || setns(target, CLONE_NEWNET) < 0) {
      e = errno;
      goto out;
    }
  }
  fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) e = errno;
  *oif = (int)if_nametoindex(device); // resolved in the namespace the routes go to
  if (back >= 0 && setns(back, CLONE_NEWNET) < 0) abort(); // this thread left in another namespace: nothing after is safe
out:
  if (back >= 0) close(back);
  if (target >= 0) close(target);
  if (e) {
    if (fd >= 0) close(fd);
    return -e;
  }
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one); // acks without the request echoed
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one); // the kernel's own text on a failure
  int room = 1 << 20; // a chunk's acks fit the default buffer; room to spare where a host set it lower (CAP_NET_ADMIN, else kept)
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &room, sizeof room);
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

// The extended ack's message text, if the kernel gave one.
static const char *ack_text(const struct nlmsghdr *h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
  size_t off = NLMSG_ALIGN(sizeof(struct nlmsgerr));
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += NLMSG_ALIGN(((const struct nlmsgerr *)NLMSG_DATA(h))->msg.nlmsg_len - NLMSG_HDRLEN);
  int len = (int)h->nlmsg_len - (int)NLMSG_HDRLEN - (int)off;
  for (const struct rtattr *a = (const struct rtattr *)((const char *)NLMSG_DATA(h) + off); len > 0 && RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == NLMSGERR_ATTR_MSG && RTA_PAYLOAD(a) > 0 && ((const char *)RTA_DATA(a))[RTA_PAYLOAD(a) - 1] == 0) return RTA_DATA(a);
  }
  return NULL;
}

// routesWrite(netns, device, release, metric, prefixes: string[], mtus: Int32Array | null,
//   sources: (string | undefined)[] | null, errors: Int32Array(2n), texts: string[]) -> failed
// messages | error. errors[2i + k]: 0 or the errno of prefix i's message k (see build); texts[2i + k]
// set to the kernel's text where it gave one. A prefix that does not parse fails both with EINVAL, a
// source that does not (or of the other family) the route with EINVAL.
napi_value routes_write(napi_env env, napi_callback_info info) {
  GET_ARGS(9);
  char netns[NAME_MAX + 2], device[IF_NAMESIZE + 1];
  NEED(arg_string(env, argv[0], netns, sizeof netns, "netns"));
  NEED(arg_string(env, argv[1], device, sizeof device, "device"));
  steer_args a = { 0 };
  int32_t release, metric;
  NEED(arg_int(env, argv[2], &release, "release"));
  NEED(arg_int(env, argv[3], &metric, "metric"));
  a.release = release != 0;
  a.metric = (uint32_t)metric;
  uint32_t n = 0;
  if (napi_get_array_length(env, argv[4], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "veil_datapath: prefixes must be an array of strings");
    return NULL;
  }
  napi_valuetype t;
  int32_t *mtus = NULL, *errors = NULL;
  size_t nm = 0, ne = 0;
  napi_typeof(env, argv[5], &t);
  if (t != napi_null) NEED(arg_i32s(env, argv[5], &mtus, &nm, "mtus"));
  napi_typeof(env, argv[6], &t);
  bool sources = t != napi_null;
  NEED(arg_i32s(env, argv[7], &errors, &ne, "errors"));
  if ((mtus && nm < n) || ne < 2 * (size_t)n) return throw_range(env, "veil_datapath: routesWrite: mtus or errors shorter than the prefixes");
  if (!n) return ret_int(env, 0);

  int fd = open_in(netns, device, &a.oif);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_IO, -fd));

  static __thread uint8_t out[CHUNK * MSG_SPACE] __attribute__((aligned(4)));
  static __thread uint8_t acks[64][ACK_SPACE] __attribute__((aligned(4)));
  int64_t fatal = 0;
  for (uint32_t base = 0; base < n && !fatal; base += CHUNK / 2) {
    uint32_t end = base + CHUNK / 2 < n ? base + CHUNK / 2 : n;
    size_t used = 0;
    int pending = 0;
    for (uint32_t i = base; i < end; i++) {
      char text[64], srcs[64];
      napi_value v;
      NEED_OPEN(napi_get_element(env, argv[4], i, &v) == napi_ok);
      NEED_OPEN(arg_string(env, v, text, sizeof text, "prefixes[i]"));
      prefix_t p = parse_prefix(text);
      uint8_t src[16];
      bool has_src = false, src_ok = true;
      if (sources && p.ok) {
        NEED_OPEN(napi_get_element(env, argv[6], i, &v) == napi_ok);
        napi_typeof(env, v, &t);
        if (t == napi_string) {
          NEED_OPEN(arg_string(env, v, srcs, sizeof srcs, "sources[i]"));
          uint8_t fam;
          has_src = true;
          src_ok = parse_addr(srcs, &fam, src) && fam == p.family; // else the route fails, its blackhole still goes in
        }
      }
      for (int k = 0; k < 2; k++) {
        uint32_t m = 2 * i + (uint32_t)k;
        bool ok = p.ok && (src_ok || k == 0);
        errors[m] = ok ? 0 : EINVAL;
        if (!ok) continue;
        if (!build((struct nlmsghdr *)(out + used), m + 1, &a, &p, k, mtus ? (uint32_t)mtus[i] : 0, has_src, src)) {
          errors[m] = ENODEV;
          continue;
        }
        errors[m] = -1; // sent, not yet acknowledged
        used += NLMSG_ALIGN(((struct nlmsghdr *)(out + used))->nlmsg_len);
        pending++;
      }
    }
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    struct iovec iov = { out, used };
    struct msghdr mh = { .msg_name = &kernel, .msg_namelen = sizeof kernel, .msg_iov = &iov, .msg_iovlen = 1 };
    while (used && sendmsg(fd, &mh, 0) < 0) {
      if (errno == EINTR) continue;
      fatal = VEIL_ERR(STAGE_IO, errno);
      break;
    }
    while (pending > 0 && !fatal) { // every message of this chunk is answered before the next goes
      struct mmsghdr msgs[64];
      struct iovec iovs[64];
      int want = pending < 64 ? pending : 64;
      for (int j = 0; j < want; j++) {
        iovs[j] = (struct iovec){ acks[j], ACK_SPACE };
        msgs[j] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iovs[j], .msg_iovlen = 1 } };
      }
      int got = recvmmsg(fd, msgs, (unsigned)want, MSG_WAITFORONE, NULL);
      if (got < 0) {
        if (errno == EINTR) continue;
        fatal = VEIL_ERR(STAGE_IO, errno); // ENOBUFS: acks lost, which message they were for is unknown
        break;
      }
      for (int j = 0; j < got; j++) {
        int len = (int)msgs[j].msg_len;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)acks[j]; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
          if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) continue;
          uint32_t m = h->nlmsg_seq - 1;
          if (m >= 2 * n || errors[m] != -1) continue; // not one of ours, or already answered
          int err = -((const struct nlmsgerr *)NLMSG_DATA(h))->error;
          errors[m] = err;
          pending--;
          if (!err) continue;
          const char *msg = ack_text(h);
          napi_value s;
          if (msg && napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &s) == napi_ok) napi_set_element(env, argv[8], m, s);
        }
      }
    }
  }
  close(fd);
  if (fatal) return ret_int(env, fatal);
  int64_t failed = 0;
  for (uint32_t m = 0; m < 2 * n; m++) failed += errors[m] != 0;
  return ret_int(env, failed);
}
