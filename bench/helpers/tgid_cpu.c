/* CPU time of a whole process — every thread, live or exited — in
 * milliseconds, from the kernel's taskstats (netlink, per thread group):
 * /proc/PID/task/ lists only the threads alive now, and /proc/PID/stat
 * counts in clock ticks.
 *
 *     tgid_cpu PID */
#define _GNU_SOURCE
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/taskstats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ATTR_DATA(na) ((void *)((char *)(na) + NLA_HDRLEN))

struct message {
  struct nlmsghdr n;
  struct genlmsghdr g;
  char buf[1024];
};

static int ask(int sock, unsigned short family, unsigned char command, unsigned short type,
               const void *data, int length) {
  struct message m;
  memset(&m, 0, sizeof m);
  m.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
  m.n.nlmsg_type = family;
  m.n.nlmsg_flags = NLM_F_REQUEST;
  m.n.nlmsg_pid = getpid();
  m.g.cmd = command;
  m.g.version = 1;
  struct nlattr *na = (struct nlattr *)((char *)&m + m.n.nlmsg_len);
  na->nla_type = type;
  na->nla_len = NLA_HDRLEN + length;
  memcpy(ATTR_DATA(na), data, length);
  m.n.nlmsg_len += NLMSG_ALIGN(na->nla_len);
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  return sendto(sock, &m, m.n.nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0 ? -1 : 0;
}

/* The attributes of a reply, from after the generic header. */
static struct nlattr *first(struct message *m) {
  return (struct nlattr *)((char *)m + NLMSG_LENGTH(GENL_HDRLEN));
}

static struct nlattr *next(struct nlattr *na) {
  return (struct nlattr *)((char *)na + NLA_ALIGN(na->nla_len));
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  unsigned int tgid = atoi(argv[1]);
  int sock = socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
  if (sock < 0) return perror("socket"), 1;
  struct message r;
  if (ask(sock, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, TASKSTATS_GENL_NAME,
          strlen(TASKSTATS_GENL_NAME) + 1) < 0)
    return perror("send"), 1;
  int got = recv(sock, &r, sizeof r, 0);
  if (got < 0 || r.n.nlmsg_type == NLMSG_ERROR) return fprintf(stderr, "no taskstats\n"), 1;
  unsigned short family = 0;
  for (struct nlattr *na = first(&r); (char *)na < (char *)&r + got; na = next(na))
    if (na->nla_type == CTRL_ATTR_FAMILY_ID) family = *(unsigned short *)ATTR_DATA(na);
  if (!family) return fprintf(stderr, "no taskstats family\n"), 1;
  if (ask(sock, family, TASKSTATS_CMD_GET, TASKSTATS_CMD_ATTR_TGID, &tgid, sizeof tgid) < 0)
    return perror("send"), 1;
  got = recv(sock, &r, sizeof r, 0);
  if (got < 0 || r.n.nlmsg_type == NLMSG_ERROR) return fprintf(stderr, "no such process\n"), 1;
  for (struct nlattr *na = first(&r); (char *)na < (char *)&r + got; na = next(na)) {
    if (na->nla_type != TASKSTATS_TYPE_AGGR_TGID) continue;
    for (struct nlattr *in = ATTR_DATA(na); (char *)in < (char *)na + na->nla_len; in = next(in)) {
      if (in->nla_type != TASKSTATS_TYPE_STATS) continue;
      struct taskstats *t = ATTR_DATA(in);
      printf("%.3f\n", (t->ac_utime + t->ac_stime) / 1000.0);
      return 0;
    }
  }
  return fprintf(stderr, "no stats in the reply\n"), 1;
}
