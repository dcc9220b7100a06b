// Passing open fds between processes (SCM_RIGHTS over unix datagram sockets) and anonymous memory
// files: the agent hands its TUN queue, UDP socket and a memfd of its datapath state to its
// supervisor's fd store ($NOTIFY_SOCKET, systemd's FDSTORE=1 protocol) when it stops, and the next
// agent gets them back as LISTEN_FDS. Only syscalls; what the fds mean is TypeScript's business.
#include "common.h"
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PASSED_FDS 16

static bool unix_address(napi_env env, napi_value v, struct sockaddr_un *sa, socklen_t *len) {
  char path[sizeof sa->sun_path];
  if (!arg_string(env, v, path, sizeof path, "path")) return false;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  strcpy(sa->sun_path, path);
  if (path[0] == '@') sa->sun_path[0] = 0; // abstract namespace, as systemd allows for NOTIFY_SOCKET
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + (path[0] == '@' ? 0 : 1));
  return true;
}

// unixDgramBind(path) -> non-blocking, close-on-exec fd | error. The path must not exist.
napi_value unix_dgram_bind(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct sockaddr_un sa; socklen_t len;
  NEED(unix_address(env, argv[0], &sa, &len));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  if (bind(fd, (struct sockaddr *)&sa, len) < 0) { int e = errno; close(fd); return ret_int(env, VEIL_ERR(STAGE_IO, e)); }
  return ret_int(env, fd);
}

// sendFds(path, text: Uint8Array, fds: Int32Array) -> 0 | error: one datagram carrying text and the fds.
napi_value send_fds(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct sockaddr_un sa; socklen_t len;
  uint8_t *text; size_t tlen; int32_t *fds; size_t nfds;
  NEED(unix_address(env, argv[0], &sa, &len));
  NEED(arg_bytes(env, argv[1], &text, &tlen, "text"));
  NEED(arg_i32s(env, argv[2], &fds, &nfds, "fds"));
  if (nfds > MAX_PASSED_FDS) return throw_range(env, "veil_datapath: sendFds passes at most 16 fds");
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)]; } control;
  memset(&control, 0, sizeof control);
  struct iovec iov = { .iov_base = text, .iov_len = tlen };
  struct msghdr m = { .msg_name = &sa, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1 };
  if (nfds > 0) {
    m.msg_control = control.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t r = sendmsg(s, &m, MSG_NOSIGNAL);
  int e = errno;
  close(s);
  return ret_int(env, r < 0 ? VEIL_ERR(STAGE_IO, e) : 0);
}

// recvFds(fd, text: Uint8Array, fds: Int32Array) -> text length | error (EAGAIN: nothing waiting).
// The received fds (close-on-exec) go to fds[0..], -1 after the last; a truncated datagram is an error
// (EMSGSIZE) and its fds are closed.
napi_value recv_fds(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t fd; uint8_t *text; size_t tlen; int32_t *fds; size_t nfds;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  NEED(arg_bytes(env, argv[1], &text, &tlen, "text"));
  NEED(arg_i32s(env, argv[2], &fds, &nfds, "fds"));
  for (size_t i = 0; i < nfds; i++) fds[i] = -1;
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)]; } control;
  struct iovec iov = { .iov_base = text, .iov_len = tlen };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (r < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  size_t got = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *p = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      if (got < nfds && !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) fds[got++] = p[i];
      else close(p[i]);
    }
  }
  if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (size_t i = 0; i < got; i++) { close(fds[i]); fds[i] = -1; }
    return ret_int(env, VEIL_ERR(STAGE_IO, EMSGSIZE));
  }
  return ret_int(env, r);
}

// memfdCreate(name) -> fd (close-on-exec) | error: an anonymous file that lives while an fd names it.
napi_value memfd_create_fd(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  char name[64];
  NEED(arg_string(env, argv[0], name, sizeof name, "name"));
  int fd = memfd_create(name, MFD_CLOEXEC);
  return ret_int(env, fd < 0 ? VEIL_ERR(STAGE_IO, errno) : fd);
}
