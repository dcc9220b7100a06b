// The datapath worker's wake-up: an eventfd the host thread signals after it posts a control
// request, polled by the worker beside its TUN and UDP fds. A worker blocked in poll(2) cannot see
// its message port; with this it sleeps until a packet, a timer or a request comes, where it woke
// every 20 ms to look at the port (50 wake-ups a second on an idle node: ~0.5 % of a core here,
// and a port check on every wake-up of a lone packet).
#include "common.h"
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

// wakeFdOpen() -> fd | error: a non-blocking, close-on-exec eventfd.
napi_value wake_fd_open(napi_env env, napi_callback_info info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return ret_int(env, fd < 0 ? VEIL_ERR(STAGE_IO, errno) : fd);
}

// wakeFdSignal(fd) -> 0 | error: makes the fd readable (a counter at its limit already is).
napi_value wake_fd_signal(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  uint64_t one = 1;
  if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, 0);
}

// wakeFdDrain(fd) -> signals since the last drain (0: none) | error: the fd is not readable after.
napi_value wake_fd_drain(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  NEED(arg_int(env, argv[0], &fd, "fd"));
  uint64_t n = 0;
  if (read(fd, &n, sizeof n) < 0) return ret_int(env, errno == EAGAIN ? 0 : VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, (int64_t)(n > INT32_MAX ? INT32_MAX : n));
}
