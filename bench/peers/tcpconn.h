/* tcpconn.h -- a TCP socket to HOST:PORT with TCP_NODELAY, for clnttcp_create():
 * the load clients name the port themselves, so no portmapper is asked. */
#ifndef TCPCONN_H
#define TCPCONN_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tcp_connect(const char *host, int port, struct sockaddr_in *sa, int verbose)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
		fprintf(stderr, "bad IPv4 address %s\n", host);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)sa, sizeof *sa) != 0) {
		if (verbose)
			perror("connect");
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

#ifdef CLSET_FD_CLOSE
/* An RPC client of PROG/VERS over a new TCP connection to HOST:PORT (it owns the
 * socket; calls time out after 60 s); NULL when either step fails. */
static CLIENT *tcp_rpc_client(const char *host, int port, unsigned long prog,
			      unsigned long vers, int verbose)
{
	struct sockaddr_in sa;
	int fd = tcp_connect(host, port, &sa, verbose);
	if (fd < 0)
		return NULL;
	CLIENT *c = clnttcp_create(&sa, prog, vers, &fd, 0, 0);
	if (!c) {
		if (verbose)
			clnt_pcreateerror("clnttcp_create");
		close(fd);
		return NULL;
	}
	clnt_control(c, CLSET_FD_CLOSE, NULL);
	struct timeval tv = {60, 0};
	clnt_control(c, CLSET_TIMEOUT, (char *)&tv);
	return c;
}
#endif
#endif
