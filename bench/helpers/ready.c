/* A stand-in job for the benchmarks: as cheap to start as `sleep`, but it
 * tells the benchmark it runs by writing its pid to the FIFO named by
 * $READY_FIFO, then waits for a signal. Built with -DSTUBBORN it ignores
 * SIGTERM, like a job that will not stop. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
#ifdef STUBBORN
  signal(SIGTERM, SIG_IGN);
#endif
  const char *fifo = getenv("READY_FIFO");
  if (fifo) {
    int fd = open(fifo, O_WRONLY | O_NONBLOCK);
    if (fd >= 0) {
      pid_t pid = getpid();
      (void)write(fd, &pid, sizeof pid);
      close(fd);
    }
  }
  for (;;) pause();
}
