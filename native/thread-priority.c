// The calling thread's scheduling priority (nice), for the datapath worker: woken by a lone packet,
// it preempts the task running on its CPU instead of waiting up to a scheduler tick behind it (the
// kernel's own datapath runs in softirq, above every thread).
#include "common.h"
#include <errno.h>
#include <sched.h>
#include <sys/prctl.h>
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


// threadSetName(name) -> 0 | error: the calling thread's name (/proc/<pid>/task/<tid>/comm, top -H,
// schedstat by thread): at most 15 bytes. Threads started later keep their own (pthreads copy it at
// creation, so the datapath worker names itself, not the agent's threads after it).
napi_value thread_set_name(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  char name[64]; // room to see a name too long (the copy is cut at the buffer's size)
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "veil_datapath: a thread name is a string");
    return NULL;
  }
  if (len == 0 || len > 15) return throw_range(env, "veil_datapath: a thread name is 1..15 bytes");
  if (prctl(PR_SET_NAME, name, 0, 0, 0) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
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

// threadPinFirstCpu(pin) -> 0 | error: with true, the calling thread to the first CPU of the set it
// may run on (kept, per thread); with false, back to that set. For the realtime worker: the RT
// scheduler wakes it on its last CPU, so it stays on one CPU anyway; this chooses which, the same
// on every node (idle-realtime.ts).
static __thread cpu_set_t allowed;
static __thread int pinned;
napi_value thread_pin_first_cpu(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  bool pin;
  if (napi_get_value_bool(env, argv[0], &pin) != napi_ok) {
    napi_throw_type_error(env, NULL, "veil_datapath: pin must be a boolean");
    return NULL;
  }
  if (pin == (pinned != 0)) return ret_int(env, 0);
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (pin) {
    if (sched_getaffinity(tid, sizeof allowed, &allowed) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
    int first = 0;
    while (first < CPU_SETSIZE && !CPU_ISSET(first, &allowed)) first++;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(tid, sizeof one, &one) < 0) return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  } else if (sched_setaffinity(tid, sizeof allowed, &allowed) < 0) {
    return ret_int(env, VEIL_ERR(STAGE_IO, errno));
  }
  pinned = pin;
  return ret_int(env, 0);
}

// threadYield() -> 0: sched_yield(). For the realtime worker: a thread of its priority on its CPU
// that it woke (the other node's worker in a lab, woken by the packet just sent) runs first; with
// none waiting it returns at once (idle-realtime.ts yieldToWoken).
napi_value thread_yield(napi_env env, napi_callback_info info) {
  (void)info;
  sched_yield();
  return ret_int(env, 0);
}
