/* The floor of the start benchmark: a bare loop that fork+execs N copies
 * of a program, as fast as a supervisor could possibly start them, then
 * waits to be killed. With a third argument, a cgroup v2 directory, each
 * child is made in a new cgroup of its own under it (mkdir, then clone3
 * with CLONE_INTO_CGROUP): the floor of containment. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t start_in(const char *base, int i) {
  char path[4096];
  snprintf(path, sizeof path, "%s/job.%d", base, i);
  mkdir(path, 0755);
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = dir;
  pid_t pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid != 0) close(dir);
  return pid;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[1]);
  const char *cgroups = argc > 3 ? argv[3] : NULL;
  for (int i = 0; i < n; i++) {
    pid_t pid = cgroups ? start_in(cgroups, i) : fork();
    if (pid == 0) {
      setpgid(0, 0);
      char *args[] = {argv[2], NULL};
      execv(argv[2], args);
      _exit(127);
    }
  }
  for (;;) pause();
}
