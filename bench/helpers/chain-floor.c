/* The floor of a readiness chain, for bench/readiness.py: N times in a
 * row, fork + exec the sd_notify job (helpers/notify) and wait for its
 * READY=1 before starting the next — what any supervisor must do at least
 * for a chain of `after` with `ready notify`, with no bookkeeping at all.
 *   chain-floor N PROGRAM     prints nothing; the jobs report on the FIFO
 * The jobs are left running in their own process groups; the benchmark
 * kills them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int count = atoi(argv[1]);
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  char name[64];
  int len = snprintf(name, sizeof name, "pmtr-chain-floor/%d", getpid());
  memcpy(addr.sun_path + 1, name, len);
  if (bind(sock, (struct sockaddr *)&addr, sizeof(sa_family_t) + 1 + len) != 0) return 1;
  char env[80];
  snprintf(env, sizeof env, "@%s", name);
  setenv("NOTIFY_SOCKET", env, 1);
  signal(SIGCHLD, SIG_IGN);
  char *child_argv[] = {argv[2], "ready", NULL};
  char buffer[256];
  for (int i = 0; i < count; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      execv(argv[2], child_argv);
      _exit(127);
    }
    if (pid < 0) return 1;
    if (recv(sock, buffer, sizeof buffer, 0) < 0) return 1;
  }
  for (;;) pause();
}
