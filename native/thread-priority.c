// The calling thread's scheduling priority (nice), for the datapath worker: woken by a lone packet,
// it preempts the task running on its CPU instead of waiting up to a scheduler tick behind it (the
// kernel's own datapath runs in softirq, above every thread).
#include "common.h"
#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// threadSetNice(nice) -> 0 | error. Linux applies PRIO_PROCESS to one thread when given its tid.
napi_value thread_set_nice(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t nice;
  NEED(arg_int(env, argv[0], &nice, "nice"));
  if (nice < -20 || nice > 19) return throw_range(env, "veil_datapath: nice must be -20..19");
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, 0);
}


// threadSetRealtime(priority) -> 0 | error: the calling thread to SCHED_FIFO at priority 1..99, or
// with 0 back to SCHED_OTHER (its nice is kept: the kernel holds it apart from the RT priority).
// SCHED_RESET_ON_FORK: a thread it starts while realtime (a crypto helper, a writer) starts normal.
napi_value thread_set_realtime(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t prio;
  NEED(arg_int(env, argv[0], &prio, "priority"));
  if (prio < 0 || prio > 99) return throw_range(env, "veil_datapath: realtime priority must be 0..99");
  struct sched_param sp = { .sched_priority = prio };
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (sched_setscheduler(tid, prio > 0 ? (SCHED_FIFO | SCHED_RESET_ON_FORK) : SCHED_OTHER, &sp) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  return ret_int(env, 0);
}
