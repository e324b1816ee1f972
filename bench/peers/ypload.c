/*
 * ypload.c -- NIS backend of the bench/run.py load client (see loadcore.h).
 *
 * Stubs: rpcgen -M from /usr/include/rpcsvc/yp.x (package libnsl-dev).  Each call is
 * one YPPROC_MATCH(DOMAIN, MAP, NAME) over TCP, checked to answer YP_TRUE with a
 * passwd line that starts with "NAME:".
 *
 * Backend args: DOMAIN MAP (e.g. nibench passwd.byname).
 */
#include <stdlib.h>
#include <string.h>
#include <rpc/rpc.h>

#include "loadcore.h"
#include "yp.h"
#include "tcpconn.h"

static char *g_domain, *g_map;

int backend_init(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "ypload: backend args: DOMAIN MAP\n");
		return 1;
	}
	g_domain = argv[0];
	g_map = argv[1];
	return 0;
}

void *backend_connect(const char *host, int port, int verbose)
{
	CLIENT *c = tcp_rpc_client(host, port, YPPROG, YPVERS, verbose);
	if (!c)
		return NULL;
	return c;
}

int backend_call(void *conn, const char *name)
{
	ypreq_key k;
	k.domain = g_domain;
	k.map = g_map;
	k.key.keydat_len = strlen(name);
	k.key.keydat_val = (char *)name;
	ypresp_val r;
	memset(&r, 0, sizeof r);
	if (ypproc_match_2(&k, &r, (CLIENT *)conn) != RPC_SUCCESS)
		return -1;
	size_t n = strlen(name);
	int bad = !(r.stat == YP_TRUE && r.val.valdat_len > n &&
		    memcmp(r.val.valdat_val, name, n) == 0 && r.val.valdat_val[n] == ':');
	xdr_free((xdrproc_t)xdr_ypresp_val, (char *)&r);
	return bad;
}

void backend_close(void *conn)
{
	clnt_destroy((CLIENT *)conn);
}
