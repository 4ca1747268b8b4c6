/* A stand-in job that speaks sd_notify, for bench/readiness.py.
 *   notify ready        send READY=1, report the pid on $READY_FIFO, wait
 *   notify flood RATE   send READY=1, report, then a STATUS= datagram RATE
 *                       times a second, forever
 * The datagram goes to $NOTIFY_SOCKET (`@name`: the abstract namespace),
 * as sd_notify(3) sends it; the kernel adds the sender's credentials. */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int sock = -1;
static struct sockaddr_un addr;
static socklen_t addr_len;

static void send_text(const char *text) {
  (void)sendto(sock, text, strlen(text), MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len);
}

int main(int argc, char **argv) {
  const char *target = getenv("NOTIFY_SOCKET");
  if (!target || argc < 2) return 2;
  sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t len = strlen(target);
  if (len >= sizeof addr.sun_path) return 2;
  memcpy(addr.sun_path, target, len);
  if (target[0] == '@') addr.sun_path[0] = 0;
  addr_len = offsetof(struct sockaddr_un, sun_path) + len;
  send_text("READY=1");
  const char *fifo = getenv("READY_FIFO");
  if (fifo) {
    int fd = open(fifo, O_WRONLY | O_NONBLOCK);
    if (fd >= 0) {
      pid_t pid = getpid();
      (void)write(fd, &pid, sizeof pid);
      close(fd);
    }
  }
  if (strcmp(argv[1], "flood") == 0 && argc > 2) {
    long rate = atol(argv[2]);
    struct timespec gap = {0, rate > 0 ? 1000000000L / rate : 1000000L};
    char text[64];
    for (unsigned long n = 0;; n++) {
      snprintf(text, sizeof text, "STATUS=flood %lu", n);
      send_text(text);
      nanosleep(&gap, NULL);
    }
  }
  for (;;) pause();
}
