/* How long the parent waits in one start, with and without a new cgroup
 * per child, and with and without waiting for the child's exec (vfork,
 * as pmtr does): N children of /bin/sleep, each made by clone3 — in a new
 * cgroup under CGROUP_DIR (mkdir, CLONE_INTO_CGROUP) if given — with
 * CLONE_VFORK if VFORK is set in the environment; with PREMADE set, every
 * cgroup is made before the clock starts (as a second thread making them
 * ahead of the starts would); with THREADS=2, two threads make half the
 * starts each, side by side (as pmtr makes a batch). Prints the total and
 * the median and 90th percentile of clone3's return time, then kills and
 * reaps the children and removes the cgroups it made.
 *
 *     clone_latency N [CGROUP_DIR] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double micros(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int n, wait_exec, premade, threads = 1;
static const char *base;
static pid_t *pids;
static double *waits;

/* Makes the starts i = first, first + threads, ... */
static void *starts(void *arg) {
  char path[4096];
  for (int i = (int)(long)arg; i < n; i += threads) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    args.flags = wait_exec ? CLONE_VFORK : 0;
    int dir = -1;
    if (base) {
      snprintf(path, sizeof path, "%s/child.%d", base, i);
      if (!premade) mkdir(path, 0755);
      dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = dir;
    }
    double before = micros();
    pid_t pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
      setpgid(0, 0);
      char *child[] = {"/bin/sleep", "1000", NULL};
      execv(child[0], child);
      _exit(127);
    }
    waits[i] = micros() - before;
    pids[i] = pid;
    if (dir >= 0) close(dir);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  n = atoi(argv[1]);
  base = argc > 2 ? argv[2] : NULL;
  wait_exec = getenv("VFORK") != NULL;
  threads = getenv("THREADS") && atoi(getenv("THREADS")) == 2 ? 2 : 1;
  pids = calloc(n, sizeof *pids);
  waits = calloc(n, sizeof *waits);
  char path[4096];
  premade = base && getenv("PREMADE") != NULL;
  for (int i = 0; premade && i < n; i++) {
    snprintf(path, sizeof path, "%s/child.%d", base, i);
    mkdir(path, 0755);
  }
  double started = micros();
  pthread_t helper;
  int helped = threads == 2 && pthread_create(&helper, NULL, starts, (void *)1L) == 0;
  if (threads == 2 && !helped) threads = 1;
  starts((void *)0L);
  if (helped) pthread_join(helper, NULL);
  double total = (micros() - started) / 1000;
  qsort(waits, n, sizeof *waits, by_value);
  printf("%s%s%s%s: %d starts in %.0f ms; clone3 returned after %.0f us (median), %.0f us (90th percentile)\n",
         base ? "a new cgroup each" : "no cgroup", premade ? " (made ahead)" : "", wait_exec ? ", waiting for exec (vfork)" : ", fork",
         threads == 2 ? ", two threads" : "",
         n, total, waits[n / 2], waits[n * 9 / 10]);
  fflush(stdout);
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) kill(pids[i], SIGKILL);
  while (wait(NULL) > 0) {
  }
  for (int i = 0; base && i < n; i++) {
    snprintf(path, sizeof path, "%s/child.%d", base, i);
    for (int tries = 0; rmdir(path) != 0 && errno == EBUSY && tries < 1000; tries++)
      usleep(1000);
  }
  return 0;
}
