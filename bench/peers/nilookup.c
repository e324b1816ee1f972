/*
 * nilookup.c -- NetInfo backend of the bench/run.py load client (see loadcore.h).
 *
 * Stubs: rpcgen -M -N from interop/netinfo_prot.x.  Per connection it finds /users
 * (ROOT, then LOOKUP name=users, then SELF for its instance); each call is one
 * LOOKUPREAD(/users, "name", NAME) over TCP, checked to return a proplist whose
 * "name" property is NAME.
 *
 * Backend args: none.
 */
#include <stdlib.h>
#include <string.h>
#include <rpc/rpc.h>

#include "loadcore.h"
#include "netinfo_prot.h"
#include "tcpconn.h"

struct niconn {
	CLIENT *clnt;
	ni_id users;
};

int backend_init(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static int has_name(const ni_proplist *pl, const char *name)
{
	for (u_int i = 0; i < pl->ni_proplist_len; i++) {
		const ni_property *p = &pl->ni_proplist_val[i];
		if (strcmp(p->name, "name") == 0)
			return p->values.ni_namelist_len > 0 &&
			       strcmp(p->values.ni_namelist_val[0], name) == 0;
	}
	return 0;
}

void *backend_connect(const char *host, int port, int verbose)
{
	CLIENT *c = tcp_rpc_client(host, port, NI_PROG, NI_VERS, verbose);
	if (!c)
		return NULL;

	ni_id_res root;
	memset(&root, 0, sizeof root);
	if (ni_root_2(&root, c) != RPC_SUCCESS || root.status != NI_OK) {
		if (verbose)
			fprintf(stderr, "ROOT failed\n");
		clnt_destroy(c);
		return NULL;
	}
	ni_lookup_args la = {root.ni_id_res_u.id, "name", "users"};
	ni_lookup_res lr;
	memset(&lr, 0, sizeof lr);
	if (ni_lookup_2(la, &lr, c) != RPC_SUCCESS || lr.status != NI_OK ||
	    lr.ni_lookup_res_u.stuff.ids.ni_idlist_len < 1) {
		if (verbose)
			fprintf(stderr, "LOOKUP /users failed\n");
		clnt_destroy(c);
		return NULL;
	}
	ni_id users = {lr.ni_lookup_res_u.stuff.ids.ni_idlist_val[0], 0};
	xdr_free((xdrproc_t)xdr_ni_lookup_res, (char *)&lr);
	ni_id_res self;
	memset(&self, 0, sizeof self);
	if (ni_self_2(users, &self, c) != RPC_SUCCESS || self.status != NI_OK) {
		clnt_destroy(c);
		return NULL;
	}
	struct niconn *n = malloc(sizeof *n);
	n->clnt = c;
	n->users = self.ni_id_res_u.id;
	return n;
}

int backend_call(void *conn, const char *name)
{
	struct niconn *n = conn;
	ni_lookup_args a = {n->users, "name", (char *)name};
	ni_proplist_res r;
	memset(&r, 0, sizeof r);
	if (ni_lookupread_2(a, &r, n->clnt) != RPC_SUCCESS)
		return -1;
	int bad = !(r.status == NI_OK && has_name(&r.ni_proplist_res_u.stuff.props, name));
	xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)&r);
	return bad;
}

void backend_close(void *conn)
{
	struct niconn *n = conn;
	clnt_destroy(n->clnt);
	free(n);
}
