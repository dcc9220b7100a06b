// TUN device I/O: open (optionally with IFF_VNET_HDR and offloads), batched reads that split
// virtio-net GSO super-packets into MTU-sized packets, batched writes that can coalesce TCP segments
// of one flow back into a GSO super-packet, and a blocking poll for worker threads.
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define OPEN_VNET 1
#define OPEN_MULTI_QUEUE 2
#define OPEN_PERSIST 4

#define WRITE_VNET 1
#define WRITE_COALESCE 2
#define WRITE_CSUM_TRUSTED 4   // caller vouches for the checksums (AEAD-authenticated): DATA_VALID

// Counters the caller passes in (Float64Array), accumulated here. Keep in sync with native.ts.
enum {
  ST_READS, ST_GSO_IN, ST_SEGMENTS_OUT, ST_CSUM_COMPLETED, ST_DROP_MALFORMED, ST_DROP_TOO_BIG,
  ST_WRITES, ST_COALESCED_WRITES, ST_COALESCED_SEGMENTS, ST_WRITE_ERRORS, ST_LAST_ERRNO,
  ST_YIELDS, // sched_yield() calls between the writes of a batch (yieldEvery)
  ST_DRAINED, // 1 when the last tunReadBatch found the device empty (so reading again is a wasted syscall)
  ST_COUNT
};

// tunOpen(name, flags) -> fd | error
napi_value tun_open(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  char name[IFNAMSIZ + 1];
  int32_t flags;
  NEED(arg_string(env, argv[0], name, sizeof name, "name"));
  NEED(arg_int(env, argv[1], &flags, "flags"));
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_TUN_OPEN, errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name)); // arg_string guarantees < IFNAMSIZ
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (flags & OPEN_VNET) ifr.ifr_flags |= IFF_VNET_HDR;
  if (flags & OPEN_MULTI_QUEUE) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); return ret_int(env, VEIL_ERR(STAGE_TUN_SETIFF, e)); }
  if ((flags & OPEN_PERSIST) && ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
    int e = errno; close(fd); return ret_int(env, VEIL_ERR(STAGE_TUN_PERSIST, e));
  }
  return ret_int(env, fd);
}

// tunSetOffload(fd, TUN_F_* flags) -> 0 | error
napi_value tun_set_offload(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd, flags;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_int(env, argv[1], &flags, "flags"));
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) return ret_int(env, VEIL_ERR(STAGE_TUN_OFFLOAD, errno));
  return ret_int(env, 0);
}

// tunName(fd) -> interface name (the kernel may have picked it from a pattern like "veil%d")
napi_value tun_name(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ioctl(fd, TUNGETIFF, &ifr) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  napi_value s;
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &s);
  return s;
}

napi_value fd_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  return ret_int(env, close(fd) < 0 ? VEIL_ERR(STAGE_IO, errno) : 0);
}

// waitReadable(fds: Int32Array, count, timeoutMs) -> bitmask of readable fds (bit i = fds[i]) | error.
// Blocks: call it from a worker thread. Errors and hang-ups count as readable so the read reports them.
napi_value wait_readable(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t *fds; size_t nfds; int32_t count, timeout;
  NEED(arg_i32s(env, argv[0], &fds, &nfds, "fds"));
  NEED(arg_int(env, argv[1], &count, "count"));
  NEED(arg_int(env, argv[2], &timeout, "timeoutMs"));
  if (count < 0 || count > 31 || (size_t)count > nfds) return throw_range(env, "veil_datapath: waitReadable takes 0..31 fds");
  struct pollfd p[31];
  for (int i = 0; i < count; i++) { p[i].fd = fds[i]; p[i].events = POLLIN; p[i].revents = 0; }
  int r = poll(p, (nfds_t)count, timeout);
  if (r < 0) return ret_int(env, errno == EINTR ? 0 : VEIL_ERR(STAGE_IO, errno));
  int32_t mask = 0;
  for (int i = 0; i < count; i++)
    if (p[i].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) mask |= 1 << i;
  return ret_int(env, mask);
}

// ---------------------------------------------------------------------------------------- read

typedef struct {
  uint8_t *buf; size_t blen;
  int32_t slot, head, tail;     // slot i starts at i*slot; a packet sits at +head, tail bytes kept free
  int32_t *offs, *lens;
  int32_t n, max;
  double *st;
} read_ctx;

static int slot_room(const read_ctx *c) { return c->slot - c->head - c->tail; }
static uint8_t *slot_data(const read_ctx *c, int i) { return c->buf + (size_t)i * c->slot + c->head; }

// Finishes a CHECKSUM_PARTIAL packet: the field at start+offset holds the pseudo-header sum.
static bool complete_csum(uint8_t *ip, int len, int start, int offset) {
  if (start < 20 || offset < 0 || start + offset + 2 > len) return false;
  uint16_t c = (uint16_t)~csum_fold(csum_add(0, ip + start, (size_t)(len - start)));
  if (c == 0 && offset == 6) c = 0xffff; // UDP: 0 means "no checksum"
  put16(ip + start + offset, c);
  return true;
}

static uint64_t tcp_pseudo_sum(const uint8_t *ip, bool v6, int tcp_len) {
  uint64_t s = v6 ? csum_add(0, ip + 8, 32) : csum_add(0, ip + 12, 8);
  return s + IPPROTO_TCP + (uint32_t)tcp_len;
}

// Splits one packet read with a virtio-net header into slots c->n.. . Returns segments written,
// 0 if it was dropped (counted), -1 if there are not enough free slots (try again next batch).
static int vnet_split(read_ctx *c, const uint8_t *pkt, int plen) {
  if (plen <= VNET_HDR_LEN) { c->st[ST_DROP_MALFORMED]++; return 0; }
  struct virtio_net_hdr vh;
  memcpy(&vh, pkt, sizeof vh);
  const uint8_t *ip = pkt + VNET_HDR_LEN;
  int len = plen - VNET_HDR_LEN, room = slot_room(c), free_slots = c->max - c->n;
  int gso = vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (free_slots < 1) return -1;
    if (len > room) { c->st[ST_DROP_TOO_BIG]++; return 0; }
    uint8_t *o = slot_data(c, c->n);
    memcpy(o, ip, (size_t)len);
    if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if (!complete_csum(o, len, vh.csum_start, vh.csum_offset)) { c->st[ST_DROP_MALFORMED]++; return 0; }
      c->st[ST_CSUM_COMPLETED]++;
    }
    c->offs[c->n] = (int32_t)(o - c->buf); c->lens[c->n] = len;
    return 1;
  }
  bool v6 = gso == VIRTIO_NET_HDR_GSO_TCPV6;
  if ((gso != VIRTIO_NET_HDR_GSO_TCPV4 && !v6) || len < 40 || (ip[0] >> 4) != (v6 ? 6 : 4)) {
    c->st[ST_DROP_MALFORMED]++; return 0;
  }
  int l4 = v6 ? 40 : (ip[0] & 0xf) * 4;
  if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) l4 = vh.csum_start; // after any IPv6 extension headers
  if (l4 < (v6 ? 40 : 20) || l4 + 20 > len) { c->st[ST_DROP_MALFORMED]++; return 0; }
  const uint8_t *tcp = ip + l4;
  int thl = (tcp[12] >> 4) * 4, hl = l4 + thl, mss = vh.gso_size;
  if (thl < 20 || hl > len || mss <= 0) { c->st[ST_DROP_MALFORMED]++; return 0; }
  if (hl + mss > room) { c->st[ST_DROP_TOO_BIG]++; return 0; }
  int pay = len - hl, nseg = pay <= 0 ? 1 : (pay + mss - 1) / mss;
  if (nseg > free_slots) return -1;
  uint32_t seq = get32(tcp + 4);
  uint16_t id = v6 ? 0 : get16(ip + 4);
  for (int i = 0; i < nseg; i++) {
    int seglen = i == nseg - 1 ? pay - i * mss : mss;
    if (seglen < 0) seglen = 0;
    uint8_t *o = slot_data(c, c->n + i), *t = o + l4;
    memcpy(o, ip, (size_t)hl);
    memcpy(o + hl, ip + hl + (size_t)i * mss, (size_t)seglen);
    int tot = hl + seglen;
    if (v6) put16(o + 4, (uint16_t)(tot - 40));
    else {
      put16(o + 2, (uint16_t)tot);
      put16(o + 4, (uint16_t)(id + i));
      o[10] = o[11] = 0;
      put16(o + 10, (uint16_t)~csum_fold(csum_add(0, o, (size_t)l4)));
    }
    put32(t + 4, seq + (uint32_t)(i * mss));
    if (i > 0) t[13] &= (uint8_t)~0x80;              // CWR only on the first segment
    if (i < nseg - 1) t[13] &= (uint8_t)~(0x01 | 0x08); // FIN and PSH only on the last
    t[16] = t[17] = 0;
    put16(t + 16, (uint16_t)~csum_fold(csum_add(tcp_pseudo_sum(o, v6, thl + seglen), t, (size_t)(thl + seglen))));
    c->offs[c->n + i] = (int32_t)(o - c->buf); c->lens[c->n + i] = tot;
  }
  c->st[ST_GSO_IN]++;
  c->st[ST_SEGMENTS_OUT] += nseg;
  return nseg;
}

// tunReadBatch(fd, batch, maxPkts, vnet, scratch, stats) -> packets read | error (only when nothing was read).
// Reads until EAGAIN or the batch is full. Without vnet each read lands in its own slot. With vnet
// each read goes to scratch (whose first 4 bytes keep a super-packet that did not fit yet, for the
// next call) and is split into slots.
napi_value tun_read_batch(napi_env env, napi_callback_info info) {
  GET_ARGS(6);
  read_ctx c;
  veil_batch *b;
  int32_t fd, vnet; size_t sclen = 0, nst; uint8_t *scratch = NULL;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_batch(env, argv[1], &b, "batch"));
  NEED(arg_int(env, argv[2], &c.max, "maxPkts"));
  NEED(arg_int(env, argv[3], &vnet, "vnet"));
  if (vnet) NEED(arg_bytes(env, argv[4], &scratch, &sclen, "scratch"));
  NEED(arg_f64s(env, argv[5], &c.st, &nst, "stats"));
  c.buf = b->buf; c.blen = b->blen; c.slot = b->slot; c.head = b->head; c.tail = b->tail; c.offs = b->offs; c.lens = b->lens;
  if (c.max < 0 || c.max > b->cap || c.max > b->slots || slot_room(&c) <= 0 || nst < ST_COUNT)
    return throw_range(env, "veil_datapath: tunReadBatch layout does not fit the buffer");
  if (vnet && sclen < 4 + VNET_HDR_LEN + 65536) return throw_range(env, "veil_datapath: tunReadBatch scratch too small");
  c.n = 0;
  int err = 0;
  bool drained = false;
  while (c.n < c.max) {
    if (!vnet) {
      uint8_t *o = slot_data(&c, c.n);
      ssize_t r = read(fd, o, (size_t)slot_room(&c));
      if (r < 0) { if (errno == EINTR) continue; if (errno != EAGAIN) err = errno; drained = true; break; }
      if (r == 0) { drained = true; break; }
      c.st[ST_READS]++;
      if (r >= slot_room(&c)) { c.st[ST_DROP_TOO_BIG]++; continue; } // maybe truncated
      c.offs[c.n] = (int32_t)(o - c.buf); c.lens[c.n] = (int32_t)r; c.n++;
      continue;
    }
    int32_t pending;
    memcpy(&pending, scratch, 4);
    if (pending <= 0) {
      ssize_t r = read(fd, scratch + 4, sclen - 4);
      if (r < 0) { if (errno == EINTR) continue; if (errno != EAGAIN) err = errno; drained = true; break; }
      if (r == 0) { drained = true; break; }
      c.st[ST_READS]++;
      pending = (int32_t)r;
    }
    int k = vnet_split(&c, scratch + 4, pending);
    if (k < 0) {
      if (c.n == 0) { c.st[ST_DROP_TOO_BIG]++; pending = 0; memcpy(scratch, &pending, 4); continue; } // never fits
      memcpy(scratch, &pending, 4);
      break;
    }
    pending = 0;
    memcpy(scratch, &pending, 4);
    c.n += k;
  }
  if (err) c.st[ST_LAST_ERRNO] = err;
  c.st[ST_DRAINED] = drained;
  if (c.n == 0 && err) return ret_int(env, VEIL_ERR(STAGE_IO, err));
  return ret_int(env, c.n);
}

// ---------------------------------------------------------------------------------------- write

typedef struct { bool v6; int l4, thl, hl, pay; uint8_t flags; } tcp_seg;

// A plain TCP segment (no IP options or extension headers, not a fragment, only ACK/PSH) that may
// join a coalesced super-packet.
static bool tcp_candidate(const uint8_t *p, int l, tcp_seg *s) {
  if (l < 40) return false;
  int v = p[0] >> 4;
  if (v == 4) {
    if ((p[0] & 0xf) != 5 || p[9] != IPPROTO_TCP || (get16(p + 6) & 0x3fff) != 0 || get16(p + 2) != l) return false;
    s->v6 = false; s->l4 = 20;
  } else if (v == 6) {
    if (l < 60 || p[6] != IPPROTO_TCP || get16(p + 4) + 40 != l) return false;
    s->v6 = true; s->l4 = 40;
  } else return false;
  s->thl = (p[s->l4 + 12] >> 4) * 4;
  s->hl = s->l4 + s->thl;
  if (s->thl < 20 || s->hl >= l) return false;
  s->flags = p[s->l4 + 13];
  if (!(s->flags & 0x10) || (s->flags & ~(0x10 | 0x08))) return false;
  s->pay = l - s->hl;
  return true;
}

static bool tcp_csum_ok(const uint8_t *p, const tcp_seg *s) {
  int tl = s->thl + s->pay;
  return csum_fold(csum_add(tcp_pseudo_sum(p, s->v6, tl), p + s->l4, (size_t)tl)) == 0xffff;
}

// Same flow, same headers apart from the sequence number and lengths, so the kernel's segmentation
// of the super-packet would reproduce q.
static bool same_flow(const uint8_t *p, const uint8_t *q, const tcp_seg *a, const tcp_seg *b) {
  if (a->v6 != b->v6 || a->thl != b->thl) return false;
  if (a->v6) { if (memcmp(p, q, 4) || p[7] != q[7] || memcmp(p + 8, q + 8, 32)) return false; }
  else if (p[1] != q[1] || p[6] != q[6] || p[8] != q[8] || memcmp(p + 12, q + 12, 8)) return false;
  const uint8_t *tp = p + a->l4, *tq = q + b->l4;
  return !memcmp(tp, tq, 4) && !memcmp(tp + 8, tq + 8, 4) && !memcmp(tp + 14, tq + 14, 2) &&
         !memcmp(tp + 20, tq + 20, (size_t)(a->thl - 20));
}

static bool write_all(int fd, struct iovec *iov, int n, double *st) {
  for (;;) {
    ssize_t r = writev(fd, iov, n);
    if (r >= 0) return true;
    if (errno == EINTR) continue;
    st[ST_WRITE_ERRORS]++; st[ST_LAST_ERRNO] = errno;
    return false;
  }
}

// tunWriteBatch(fd, batch, n, mode, stats, yieldEvery) -> packets written (coalesced ones count
// each). Packets with lens[i] <= 0 are skipped. With coalescing the first packet of a run has its IP
// and TCP headers rewritten in place. yieldEvery > 0: sched_yield() after every yieldEvery writes
// when more follow (see TunWriteOptions.yieldEvery).
napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  GET_ARGS(6);
  int32_t fd, n, mode, yield_every; veil_batch *b; size_t nst; double *st;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_batch(env, argv[1], &b, "batch"));
  NEED(arg_int(env, argv[2], &n, "n"));
  NEED(arg_int(env, argv[3], &mode, "mode"));
  NEED(arg_f64s(env, argv[4], &st, &nst, "stats"));
  NEED(arg_int(env, argv[5], &yield_every, "yieldEvery"));
  if (n < 0 || n > b->cap || nst < ST_COUNT) return throw_range(env, "veil_datapath: tunWriteBatch n exceeds descriptors");
  int32_t *offs = b->offs, *lens = b->lens; uint8_t *buf = b->buf; size_t blen = b->blen;
  bool vnet = mode & WRITE_VNET, coalesce = vnet && (mode & WRITE_COALESCE), trusted = mode & WRITE_CSUM_TRUSTED;
  struct iovec iov[MAX_GSO_SEGS + 2];
  struct virtio_net_hdr vh;
  int written = 0, since_yield = 0;
  for (int i = 0; i < n;) {
    int32_t off = offs[i], l = lens[i];
    if (l <= 0) { i++; continue; }
    if (yield_every > 0 && since_yield >= yield_every) { sched_yield(); st[ST_YIELDS]++; since_yield = 0; }
    since_yield++;
    if (off < 0 || (size_t)off + (size_t)l > blen) { st[ST_DROP_MALFORMED]++; i++; continue; }
    uint8_t *p = buf + off;
    if (!vnet) {
      for (;;) {
        if (write(fd, p, (size_t)l) >= 0) { written++; st[ST_WRITES]++; break; }
        if (errno == EINTR) continue;
        st[ST_WRITE_ERRORS]++; st[ST_LAST_ERRNO] = errno; break;
      }
      i++; continue;
    }
    tcp_seg a, b;
    int j = i + 1, cnt = 1;
    if (coalesce && tcp_candidate(p, l, &a) && !(a.flags & 0x08) && (trusted || tcp_csum_ok(p, &a))) {
      int mss = a.pay, tot = l;
      uint32_t next = get32(p + a.l4 + 4) + (uint32_t)mss;
      iov[1].iov_base = p; iov[1].iov_len = (size_t)l;
      while (j < n && cnt < MAX_GSO_SEGS) {
        int32_t qo = offs[j], ql = lens[j];
        if (ql <= 0 || qo < 0 || (size_t)qo + (size_t)ql > blen) break;
        uint8_t *q = buf + qo;
        if (!tcp_candidate(q, ql, &b) || !same_flow(p, q, &a, &b) || get32(q + b.l4 + 4) != next ||
            b.pay > mss || tot + b.pay > 65535 || (!trusted && !tcp_csum_ok(q, &b)))
          break;
        iov[1 + cnt].iov_base = q + b.hl; iov[1 + cnt].iov_len = (size_t)b.pay;
        tot += b.pay; next += (uint32_t)b.pay; cnt++; j++;
        if (b.pay < mss || (b.flags & 0x08)) break; // a short or PSH segment ends the run
      }
      if (cnt > 1) {
        uint8_t *t = p + a.l4;
        if (buf[offs[j - 1] + a.l4 + 13] & 0x08) t[13] |= 0x08;
        if (a.v6) put16(p + 4, (uint16_t)(tot - 40));
        else { put16(p + 2, (uint16_t)tot); p[10] = p[11] = 0; put16(p + 10, (uint16_t)~csum_fold(csum_add(0, p, 20))); }
        put16(t + 16, csum_fold(tcp_pseudo_sum(p, a.v6, tot - a.l4))); // partial: the kernel completes it
        memset(&vh, 0, sizeof vh);
        vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        vh.gso_type = a.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
        vh.hdr_len = (uint16_t)a.hl; vh.gso_size = (uint16_t)mss;
        vh.csum_start = (uint16_t)a.l4; vh.csum_offset = 16;
        iov[0].iov_base = &vh; iov[0].iov_len = sizeof vh;
        if (write_all(fd, iov, cnt + 1, st)) { written += cnt; st[ST_COALESCED_WRITES]++; st[ST_COALESCED_SEGMENTS] += cnt; st[ST_WRITES]++; }
        i = j; continue;
      }
    }
    memset(&vh, 0, sizeof vh);
    if (trusted) vh.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    iov[0].iov_base = &vh; iov[0].iov_len = sizeof vh;
    iov[1].iov_base = p; iov[1].iov_len = (size_t)l;
    if (write_all(fd, iov, 2, st)) { written++; st[ST_WRITES]++; }
    i++;
  }
  return ret_int(env, written);
}
