// Raw IP sockets for one IP protocol (ESP, 50): how veil sends and receives ESP without UDP
// encapsulation, as Cilium's nodes put it on the wire. The kernel builds the outer IP header on
// send; on receive an IPv4 socket hands over the whole packet with its header (the TypeScript side
// skips it), an IPv6 one only the payload. Batches go through the UDP socket's recvmmsg/sendmmsg
// code (udp.c): both are datagram sockets with per-packet addresses.
#include "common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

// rawOpen(addr, protocol) -> non-blocking fd bound to addr, receiving that protocol | error
napi_value raw_open(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  char addr[INET6_ADDRSTRLEN + 1];
  int32_t protocol;
  NEED(arg_string(env, argv[0], addr, sizeof addr, "addr"));
  NEED(arg_int(env, argv[1], &protocol, "protocol"));
  if (protocol <= 0 || protocol > 255) return ret_int(env, VEIL_ERR(STAGE_ARG, EINVAL));
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (void *)&ss;
  struct sockaddr_in6 *s6 = (void *)&ss;
  if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) { s4->sin_family = AF_INET; sl = sizeof *s4; }
  else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) { s6->sin6_family = AF_INET6; sl = sizeof *s6; }
  else return ret_int(env, VEIL_ERR(STAGE_UDP_ADDR, EINVAL));
  int fd = socket(ss.ss_family, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_UDP_SOCKET, errno));
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) { int e = errno; close(fd); return ret_int(env, VEIL_ERR(STAGE_UDP_BIND, e)); }
  return ret_int(env, fd);
}
