// UDP sockets for the underlay: IPv4/IPv6, batched receive (recvmmsg, UDP_GRO super-datagrams split
// by their gso_size) and batched send (sendmmsg to per-packet destinations, UDP_SEGMENT when
// consecutive packets share destination and size). Addresses travel as 16-byte slots + family + port.
#include "common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define SEND_GSO 1
#define SOCK_V6 2   // the socket is AF_INET6: IPv4 destinations are sent as ::ffff:a.b.c.d

enum { US_RECV_CALLS, US_RECV_DGRAMS, US_GRO_SPLIT, US_DROP_TRUNC, US_DROP_NO_ROOM, US_SEND_CALLS,
       US_SENT, US_SEND_ERRORS, US_GSO_FALLBACK, US_LAST_ERRNO,
       US_DRAINED, // 1 when the last udpRecvBatch got fewer datagrams than it asked for: the queue is empty
       US_COUNT };

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// udpOpen(addr, port, v6only) -> non-blocking fd | error
napi_value udp_open(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  char addr[INET6_ADDRSTRLEN + 1];
  int32_t port, v6only;
  NEED(arg_string(env, argv[0], addr, sizeof addr, "addr"));
  NEED(arg_int(env, argv[1], &port, "port"));
  NEED(arg_int(env, argv[2], &v6only, "v6only"));
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (void *)&ss;
  struct sockaddr_in6 *s6 = (void *)&ss;
  if (port < 0 || port > 65535) return ret_int(env, VEIL_ERR(STAGE_UDP_ADDR, EINVAL));
  if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET; s4->sin_port = htons((uint16_t)port); sl = sizeof *s4;
  } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6; s6->sin6_port = htons((uint16_t)port); sl = sizeof *s6;
  } else return ret_int(env, VEIL_ERR(STAGE_UDP_ADDR, EINVAL));
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_UDP_SOCKET, errno));
  if (ss.ss_family == AF_INET6) {
    int on = v6only ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) { int e = errno; close(fd); return ret_int(env, VEIL_ERR(STAGE_UDP_BIND, e)); }
  return ret_int(env, fd);
}

// udpSetGro(fd, on) -> 0 | error
napi_value udp_set_gro(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd, on;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_int(env, argv[1], &on, "on"));
  if (setsockopt(fd, IPPROTO_UDP, UDP_GRO, &on, sizeof on) < 0) return ret_int(env, VEIL_ERR(STAGE_UDP_GRO, errno));
  return ret_int(env, 0);
}

// udpSetBuffers(fd, bytes) -> the receive buffer size the kernel granted. The FORCE variants pass
// net.core.rmem_max (they need CAP_NET_ADMIN); without it the plain ones are capped by the sysctl.
napi_value udp_set_buffers(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd, bytes;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_int(env, argv[1], &bytes, "bytes"));
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  int got = 0;
  socklen_t gl = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &gl) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, got);
}

// udpLocalPort(fd) -> bound port
napi_value udp_local_port(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port));
}

// Writes a peer address as (16-byte slot, family 4|6, port); IPv4-mapped IPv6 becomes family 4.
static void put_peer(const struct sockaddr_storage *ss, uint8_t *addr, uint8_t *fam, uint16_t *port) {
  memset(addr, 0, 16);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)ss;
    memcpy(addr, &s->sin_addr, 4); *fam = 4; *port = ntohs(s->sin_port);
  } else {
    const struct sockaddr_in6 *s = (const void *)ss;
    if (!memcmp(&s->sin6_addr, V4_MAPPED, 12)) { memcpy(addr, (const uint8_t *)&s->sin6_addr + 12, 4); *fam = 4; }
    else { memcpy(addr, &s->sin6_addr, 16); *fam = 6; }
    *port = ntohs(s->sin6_port);
  }
}

// Builds a sockaddr for a destination; false if the family cannot be sent on this socket.
static bool make_dest(struct sockaddr_storage *ss, socklen_t *sl, const uint8_t *addr, int fam, int port, bool sock6) {
  memset(ss, 0, sizeof(struct sockaddr_in6));
  if (fam == 4 && !sock6) {
    struct sockaddr_in *s = (void *)ss;
    s->sin_family = AF_INET; s->sin_port = htons((uint16_t)port); memcpy(&s->sin_addr, addr, 4);
    *sl = sizeof *s; return true;
  }
  if (!sock6 || (fam != 4 && fam != 6)) return false;
  struct sockaddr_in6 *s = (void *)ss;
  s->sin6_family = AF_INET6; s->sin6_port = htons((uint16_t)port);
  if (fam == 4) { memcpy(&s->sin6_addr, V4_MAPPED, 12); memcpy((uint8_t *)&s->sin6_addr + 12, addr, 4); }
  else memcpy(&s->sin6_addr, addr, 16);
  *sl = sizeof *s; return true;
}

// udpRecvBatch(fd, batch, maxMsgs, maxPkts, stats) -> packets | error (only when nothing was
//   received). Datagram i lands at slot i + headroom; a GRO super-datagram yields one descriptor per
//   segment, all with the same source.
napi_value udp_recv_batch(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t fd, maxm, maxp; veil_batch *b; double *st; size_t nst;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_batch(env, argv[1], &b, "batch"));
  NEED(arg_int(env, argv[2], &maxm, "maxMsgs"));
  NEED(arg_int(env, argv[3], &maxp, "maxPkts"));
  NEED(arg_f64s(env, argv[4], &st, &nst, "stats"));
  if (maxm > MAX_MSGS) maxm = MAX_MSGS;
  if (maxm <= 0 || maxp <= 0 || maxm > b->slots || maxp > b->cap || nst < US_COUNT)
    return throw_range(env, "veil_datapath: udpRecvBatch layout does not fit the buffers");
  if (maxm > maxp) maxm = maxp;
  int32_t slot = b->slot, head = b->head, *offs = b->offs, *lens = b->lens;
  uint8_t *buf = b->buf, *addrs = b->addrs, *fams = b->fams; uint16_t *ports = b->ports;
  veil_state *S = veil_get_state(env);
  for (int i = 0; i < maxm; i++) {
    struct msghdr *h = &S->msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    S->iov[i].iov_base = buf + (size_t)i * slot + head; S->iov[i].iov_len = (size_t)(slot - head);
    h->msg_iov = &S->iov[i]; h->msg_iovlen = 1;
    h->msg_name = &S->names[i]; h->msg_namelen = sizeof S->names[i];
    h->msg_control = S->ctl[i]; h->msg_controllen = sizeof S->ctl[i];
  }
  int r;
  do r = recvmmsg(fd, S->msgs, (unsigned)maxm, MSG_DONTWAIT, NULL); while (r < 0 && errno == EINTR);
  st[US_RECV_CALLS]++;
  st[US_DRAINED] = r < maxm;
  if (r < 0) {
    if (errno == EAGAIN) return ret_int(env, 0);
    st[US_LAST_ERRNO] = errno;
    return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  }
  int n = 0;
  for (int i = 0; i < r; i++) {
    struct msghdr *h = &S->msgs[i].msg_hdr;
    int len = (int)S->msgs[i].msg_len, seg = 0, base = i * slot + head;
    st[US_RECV_DGRAMS]++;
    if (h->msg_flags & MSG_TRUNC) { st[US_DROP_TRUNC]++; continue; }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
      if (cm->cmsg_level == IPPROTO_UDP && cm->cmsg_type == UDP_GRO) { uint16_t g; memcpy(&g, CMSG_DATA(cm), 2); seg = g; }
    if (seg <= 0 || seg >= len) seg = len > 0 ? len : 1; // an empty datagram is still one packet
    else st[US_GRO_SPLIT]++;
    int o = 0;
    do {
      if (n >= maxp) { st[US_DROP_NO_ROOM]++; break; }
      offs[n] = base + o; lens[n] = len - o < seg ? len - o : seg;
      put_peer(&S->names[i], addrs + (size_t)n * 16, fams + n, ports + n);
      n++;
      o += seg;
    } while (o < len);
  }
  return ret_int(env, n);
}

static bool same_dest(const uint8_t *addrs, const uint8_t *fams, const uint16_t *ports, int a, int b) {
  return fams[a] == fams[b] && ports[a] == ports[b] && !memcmp(addrs + (size_t)a * 16, addrs + (size_t)b * 16, fams[a] == 4 ? 4 : 16);
}

// udpSendBatch(fd, batch, n, mode, stats) -> packets handed to the kernel.
// Stops early only when the socket buffer is full (EAGAIN/ENOBUFS); a datagram the kernel refuses
// for another reason is counted and skipped. lens[i] < 0 skips a packet.
napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t fd, n, mode; veil_batch *b; double *st; size_t nst;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_batch(env, argv[1], &b, "batch"));
  NEED(arg_int(env, argv[2], &n, "n"));
  NEED(arg_int(env, argv[3], &mode, "mode"));
  NEED(arg_f64s(env, argv[4], &st, &nst, "stats"));
  if (n < 0 || n > b->cap || nst < US_COUNT)
    return throw_range(env, "veil_datapath: udpSendBatch n exceeds the descriptor arrays");
  int32_t *offs = b->offs, *lens = b->lens; uint8_t *buf = b->buf, *addrs = b->addrs, *fams = b->fams;
  uint16_t *ports = b->ports; size_t blen = b->blen;
  veil_state *S = veil_get_state(env);
  bool gso = mode & SEND_GSO, sock6 = mode & SOCK_V6;
  int sent = 0, i = 0;
  while (i < n) {
    // Build up to MAX_MSGS messages, then flush them with sendmmsg.
    int nm = 0, niov = 0;
    while (i < n && nm < MAX_MSGS && niov + MAX_GSO_SEGS <= MAX_MSGS * 2) {
      if (lens[i] < 0) { i++; continue; }
      if (offs[i] < 0 || (size_t)offs[i] + (size_t)lens[i] > blen) { st[US_SEND_ERRORS]++; i++; continue; }
      struct msghdr *h = &S->msgs[nm].msg_hdr;
      memset(h, 0, sizeof *h);
      socklen_t sl;
      if (!make_dest(&S->names[nm], &sl, addrs + (size_t)i * 16, fams[i], ports[i], sock6)) {
        st[US_SEND_ERRORS]++; st[US_LAST_ERRNO] = EAFNOSUPPORT; i++; continue;
      }
      int j = i + 1, tot = lens[i];
      if (gso && lens[i] > 0) {
        while (j < n && j - i < MAX_GSO_SEGS && lens[j] == lens[i] && tot + lens[j] <= 65000 &&
               offs[j] >= 0 && (size_t)offs[j] + (size_t)lens[j] <= blen && same_dest(addrs, fams, ports, i, j)) { tot += lens[j]; j++; }
        if (j < n && j - i < MAX_GSO_SEGS && lens[j] > 0 && lens[j] < lens[i] && tot + lens[j] <= 65000 &&
            offs[j] >= 0 && (size_t)offs[j] + (size_t)lens[j] <= blen && same_dest(addrs, fams, ports, i, j)) j++; // shorter tail
      }
      for (int k = i; k < j; k++) { S->iov[niov + k - i].iov_base = buf + offs[k]; S->iov[niov + k - i].iov_len = (size_t)lens[k]; }
      h->msg_name = &S->names[nm]; h->msg_namelen = sl;
      h->msg_iov = &S->iov[niov]; h->msg_iovlen = (size_t)(j - i);
      if (j - i > 1) {
        struct cmsghdr *cm = (void *)S->ctl[nm];
        memset(S->ctl[nm], 0, sizeof S->ctl[nm]);
        cm->cmsg_level = IPPROTO_UDP; cm->cmsg_type = UDP_SEGMENT; cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t g = (uint16_t)lens[i];
        memcpy(CMSG_DATA(cm), &g, 2);
        h->msg_control = S->ctl[nm]; h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      }
      niov += j - i; nm++; i = j;
    }
    int done = 0;
    while (done < nm) {
      int r = sendmmsg(fd, S->msgs + done, (unsigned)(nm - done), 0);
      st[US_SEND_CALLS]++;
      if (r > 0) {
        for (int k = done; k < done + r; k++) sent += (int)S->msgs[k].msg_hdr.msg_iovlen;
        done += r; continue;
      }
      int e = errno;
      if (e == EINTR) continue;
      st[US_LAST_ERRNO] = e;
      if (e == EAGAIN || e == ENOBUFS) { st[US_SENT] += sent; return ret_int(env, sent); }
      struct msghdr *h = &S->msgs[done].msg_hdr;
      if (h->msg_iovlen > 1 && (e == EIO || e == EINVAL || e == EOPNOTSUPP)) {
        // No UDP GSO on this path (e.g. a device without checksum offload): send the segments one by one.
        st[US_GSO_FALLBACK]++;
        struct msghdr one = *h;
        one.msg_control = NULL; one.msg_controllen = 0; one.msg_iovlen = 1;
        for (size_t k = 0; k < h->msg_iovlen; k++) {
          one.msg_iov = h->msg_iov + k;
          if (sendmsg(fd, &one, 0) >= 0) sent++; else st[US_SEND_ERRORS]++;
        }
      } else st[US_SEND_ERRORS] += (double)h->msg_iovlen;
      done++;
    }
  }
  st[US_SENT] += sent;
  return ret_int(env, sent);
}

// udpSend(fd, buf, offset, length, addr, family, port, mode) -> bytes sent | error. For control messages.
napi_value udp_send(napi_env env, napi_callback_info info) {
  GET_ARGS(8);
  int32_t fd, off, len, fam, port, mode; uint8_t *buf, *addr; size_t blen, alen;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_bytes(env, argv[1], &buf, &blen, "buf"));
  NEED(arg_int(env, argv[2], &off, "offset"));
  NEED(arg_int(env, argv[3], &len, "length"));
  NEED(arg_bytes(env, argv[4], &addr, &alen, "addr"));
  NEED(arg_int(env, argv[5], &fam, "family"));
  NEED(arg_int(env, argv[6], &port, "port"));
  NEED(arg_int(env, argv[7], &mode, "mode"));
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > blen || alen < (fam == 4 ? 4u : 16u))
    return throw_range(env, "veil_datapath: udpSend range outside buffer");
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!make_dest(&ss, &sl, addr, fam, port, mode & SOCK_V6)) return ret_int(env, VEIL_ERR(STAGE_UDP_ADDR, EAFNOSUPPORT));
  ssize_t r;
  do r = sendto(fd, buf + off, (size_t)len, 0, (struct sockaddr *)&ss, sl); while (r < 0 && errno == EINTR);
  return ret_int(env, r < 0 ? VEIL_ERR(STAGE_IO, errno) : r);
}

// udpSetRecvStamps(fd) -> 0 | error. The kernel stamps each datagram as it is queued (SO_TIMESTAMPNS,
// CLOCK_REALTIME), so a reader that drains the socket only now and then still learns when each came.
napi_value udp_set_recv_stamps(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, 0);
}

// udpRecvStamped(fd, buf, slot, lens, addrs, fams, stamps) -> datagrams | error (only when nothing was
//   received). Datagram i lands at buf[i * slot], its length in lens[i] (-1: truncated), its source in
//   addrs[16 i..] / fams[i] (4|6), its arrival (ms since the epoch, the kernel's stamp; NaN without one)
//   in stamps[i]. As many as lens holds, at most MAX_MSGS.
napi_value udp_recv_stamped(napi_env env, napi_callback_info info) {
  GET_ARGS(7);
  int32_t fd, slot, *lens; uint8_t *buf, *addrs, *fams; double *stamps; size_t blen, nl, na, nf, ns;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_bytes(env, argv[1], &buf, &blen, "buf"));
  NEED(arg_int(env, argv[2], &slot, "slot"));
  NEED(arg_i32s(env, argv[3], &lens, &nl, "lens"));
  NEED(arg_bytes(env, argv[4], &addrs, &na, "addrs"));
  NEED(arg_bytes(env, argv[5], &fams, &nf, "fams"));
  NEED(arg_f64s(env, argv[6], &stamps, &ns, "stamps"));
  size_t maxm = nl < MAX_MSGS ? nl : MAX_MSGS;
  if (slot <= 0 || maxm == 0 || blen / (size_t)slot < maxm || na < maxm * 16 || nf < maxm || ns < maxm)
    return throw_range(env, "veil_datapath: udpRecvStamped layout does not fit the buffers");
  veil_state *S = veil_get_state(env);
  for (size_t i = 0; i < maxm; i++) {
    struct msghdr *h = &S->msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    S->iov[i].iov_base = buf + i * (size_t)slot; S->iov[i].iov_len = (size_t)slot;
    h->msg_iov = &S->iov[i]; h->msg_iovlen = 1;
    h->msg_name = &S->names[i]; h->msg_namelen = sizeof S->names[i];
    h->msg_control = S->ctl[i]; h->msg_controllen = sizeof S->ctl[i];
  }
  int r;
  do r = recvmmsg(fd, S->msgs, (unsigned)maxm, MSG_DONTWAIT, NULL); while (r < 0 && errno == EINTR);
  if (r < 0) return ret_int(env, errno == EAGAIN ? 0 : VEIL_ERR(STAGE_IO, errno));
  for (int i = 0; i < r; i++) {
    struct msghdr *h = &S->msgs[i].msg_hdr;
    uint16_t port;
    lens[i] = h->msg_flags & MSG_TRUNC ? -1 : (int32_t)S->msgs[i].msg_len;
    put_peer(&S->names[i], addrs + (size_t)i * 16, fams + i, &port);
    stamps[i] = NAN;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts; memcpy(&ts, CMSG_DATA(cm), sizeof ts);
        stamps[i] = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
      }
  }
  return ret_int(env, r);
}
