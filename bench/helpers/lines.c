/* A job that writes COUNT lines of SIZE bytes (newline included) to its
 * stdout as fast as it can, in 64 KiB writes, then reports its pid on
 * $READY_FIFO and waits: for bench/output.py. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long count = atol(argv[1]);
  int size = atoi(argv[2]);
  if (size < 2 || size > 4096) return 2;
  static char buffer[65536];
  setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
  char line[4096];
  memset(line, 'x', size - 1);
  line[size - 1] = '\n';
  for (long i = 0; i < count; i++) {
    int n = snprintf(line, 12, "%010ld", i);
    line[n] = ' ';
    if (fwrite(line, 1, size, stdout) != (size_t)size) return 1;
  }
  fflush(stdout);
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
