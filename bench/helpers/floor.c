/* The floor of the start benchmark: a bare loop that fork+execs N copies
 * of a program, as fast as a supervisor could possibly start them, then
 * waits to be killed. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[1]);
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      char *args[] = {argv[2], NULL};
      execv(argv[2], args);
      _exit(127);
    }
  }
  for (;;) pause();
}
