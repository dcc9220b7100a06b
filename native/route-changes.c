// Whether the node's own networking may have moved: a netlink socket subscribed to link and route
// changes, drained when the agent is about to screen peers against its underlay. Nothing moved
// since the last drain: the underlay facts read then still hold, and no `ip` process is spawned
// (three a pass, each a fork of the whole agent: the largest part of an idle agent's child cost).
// Changes the agent makes itself (routes through its tunnel devices, its fail-closed blackholes) are
// not counted. The replaced-routes record reads the table again on the same signal.
#include "common.h"
#include <errno.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <unistd.h>

#define MAX_IGNORED 8
// The socket's receive buffer (the kernel doubles it): a pass that steers 1,000 prefixes makes ~2,000
// notifications of the agent's own (~1 KB each as the kernel counts them). With the default 208 KB a
// pass of more than ~100 prefixes overflowed it, and a lost notification (ENOBUFS) must count as a
// change: every such pass read the whole routing table again (`ip`, O(routes)), as did the underlay
// reader. Memory is charged only while notifications wait; the readers drain each pass.
#define RECEIVE_BUFFER (4 << 20)

// routeChangesOpen() -> fd | error: a non-blocking netlink socket on link and route changes (this netns).
napi_value route_changes_open(napi_env env, napi_callback_info info) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE };
  int bytes = RECEIVE_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0) // CAP_NET_ADMIN, which the agent has
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);       // else as far as rmem_max allows
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return ret_int(env, VEIL_ERR(STAGE_IO, e));
  }
  return ret_int(env, fd);
}

static bool ignored(int ifindex, const int *ignore, int n) {
  for (int i = 0; i < n; i++) if (ignore[i] == ifindex) return true;
  return false;
}

// Whether one message can move the underlay or the host's own routes: a link change (not of an
// ignored device), a unicast route of table main not through an ignored device, or another route
// of table main (a blackhole, unreachable, ...) but the agent's own fail-closed blackholes, which
// are the ones at ownMetric (the replaced-routes record keeps the host's blackholes too).
static bool counts(const struct nlmsghdr *h, const int *ignore, int n, uint32_t own_metric) {
  if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return true;
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    return !ignored(ifi->ifi_index, ignore, n);
  }
  if (h->nlmsg_type != RTM_NEWROUTE && h->nlmsg_type != RTM_DELROUTE) return false;
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg))) return true;
  const struct rtmsg *rt = NLMSG_DATA(h);
  uint32_t table = rt->rtm_table, priority = 0;
  int oif = 0;
  int len = (int)RTM_PAYLOAD(h);
  for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) >= sizeof(uint32_t)) memcpy(&table, RTA_DATA(a), sizeof table);
    else if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= sizeof(int)) memcpy(&oif, RTA_DATA(a), sizeof oif);
    else if (a->rta_type == RTA_PRIORITY && RTA_PAYLOAD(a) >= sizeof(uint32_t)) memcpy(&priority, RTA_DATA(a), sizeof priority);
  }
  if (table != RT_TABLE_MAIN) return false; // local, broadcast and other tables' routes
  if (rt->rtm_type != RTN_UNICAST) return priority != own_metric;
  return !(oif && ignored(oif, ignore, n));
}

// routeChangesDrain(fd, ignoredDevices: string[], ownBlackholeMetric) -> changes since the last drain
// that can move the underlay or the host's routes (0: none; a lost notification, ENOBUFS, counts as
// one) | error.
napi_value route_changes_drain(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t fd, own_metric;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_int(env, argv[2], &own_metric, "ownBlackholeMetric"));
  uint32_t names = 0;
  if (napi_get_array_length(env, argv[1], &names) != napi_ok) {
    napi_throw_type_error(env, NULL, "veil_datapath: ignoredDevices must be an array of device names");
    return NULL;
  }
  int ignore[MAX_IGNORED];
  int n = 0;
  for (uint32_t i = 0; i < names && n < MAX_IGNORED; i++) {
    napi_value v;
    char name[IF_NAMESIZE + 1];
    if (napi_get_element(env, argv[1], i, &v) != napi_ok) return NULL;
    NEED(arg_string(env, v, name, sizeof name, "ignoredDevices[i]"));
    unsigned idx = if_nametoindex(name);
    if (idx) ignore[n++] = (int)idx; // a device that is not there has no changes to ignore
  }
  static __thread char buf[64 * 1024] __attribute__((aligned(4)));
  int64_t changes = 0;
  for (;;) {
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) { changes++; continue; }
      if (errno == EAGAIN) break;
      return ret_int(env, VEIL_ERR(STAGE_IO, errno));
    }
    int len = (int)got;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len))
      if (counts(h, ignore, n, (uint32_t)own_metric)) changes++;
  }
  return ret_int(env, changes > INT32_MAX ? INT32_MAX : changes);
}
