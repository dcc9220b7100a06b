// Holds a UDP socket on port 4500 (or argv[1]) with UDP_ENCAP_ESPINUDP, as an IKE daemon would:
// without it the kernel hands ESP-in-UDP datagrams to no one (RFC 3948 decapsulation happens on
// such a socket). Runs in the kernel VM; prints "encap-ready" once bound, then sleeps.
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef UDP_ENCAP
#define UDP_ENCAP 100
#endif
#ifndef UDP_ENCAP_ESPINUDP
#define UDP_ENCAP_ESPINUDP 2
#endif

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 4500;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
  int type = UDP_ENCAP_ESPINUDP;
  if (setsockopt(fd, IPPROTO_UDP, UDP_ENCAP, &type, sizeof type) < 0) { perror("setsockopt UDP_ENCAP"); return 1; }
  printf("encap-ready %d\n", port);
  fflush(stdout);
  for (;;) pause();
}
