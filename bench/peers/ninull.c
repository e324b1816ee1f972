/*
 * ninull.c -- a do-nothing NetInfo server: the ceiling row of bench/run.py.
 *
 * The dispatcher is rpcgen's (rpcgen -M -N -m from interop/netinfo_prot.x), run by
 * libtirpc's single-threaded svc_run() on one TCP port, registered with no
 * portmapper.  It holds no data: ROOT answers {0,1}, LOOKUP answers [2], SELF echoes
 * its argument and LOOKUPREAD answers a canned user record (7 properties, the shape
 * of bench/run.py's users) named after the value asked for.  What this server
 * reaches is the price of the RPC layer alone, the same libtirpc the clients use.
 *
 *   ninull PORT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <rpc/rpc.h>

#include "netinfo_prot.h"

extern void ni_prog_2(struct svc_req *, SVCXPRT *);

static char *v_star[] = {"*"}, *v_uid[] = {"10000"}, *v_gid[] = {"20"},
	    *v_real[] = {"Bench User"}, *v_home[] = {"/home/user"}, *v_sh[] = {"/bin/sh"};
static char *v_name[1];
static ni_property user[7] = {
	{"name", {1, v_name}}, {"passwd", {1, v_star}}, {"uid", {1, v_uid}},
	{"gid", {1, v_gid}}, {"realname", {1, v_real}}, {"home", {1, v_home}},
	{"shell", {1, v_sh}},
};

bool_t ni_ping_2_svc(void *r, struct svc_req *q) { (void)r; (void)q; return TRUE; }

bool_t ni_root_2_svc(ni_id_res *r, struct svc_req *q)
{
	(void)q;
	r->status = NI_OK;
	r->ni_id_res_u.id.object = 0;
	r->ni_id_res_u.id.instance = 1;
	return TRUE;
}

bool_t ni_self_2_svc(ni_id a, ni_id_res *r, struct svc_req *q)
{
	(void)q;
	r->status = NI_OK;
	r->ni_id_res_u.id = a;
	return TRUE;
}

static ni_index two = 2;

bool_t ni_lookup_2_svc(ni_lookup_args a, ni_lookup_res *r, struct svc_req *q)
{
	(void)q;
	r->status = NI_OK;
	r->ni_lookup_res_u.stuff.ids.ni_idlist_len = 1;
	r->ni_lookup_res_u.stuff.ids.ni_idlist_val = &two;
	r->ni_lookup_res_u.stuff.self_id = a.dir;
	return TRUE;
}

bool_t ni_lookupread_2_svc(ni_lookup_args a, ni_proplist_res *r, struct svc_req *q)
{
	(void)q;
	v_name[0] = a.value;  /* still allocated while the reply is encoded */
	r->status = NI_OK;
	r->ni_proplist_res_u.stuff.id = a.dir;
	r->ni_proplist_res_u.stuff.props.ni_proplist_len = 7;
	r->ni_proplist_res_u.stuff.props.ni_proplist_val = user;
	return TRUE;
}

/* Everything else: no reply (a benchmark client never calls them). */
#define NOPE1(n, R) bool_t n(R *r, struct svc_req *q) { (void)r; (void)q; return FALSE; }
#define NOPE2(n, A, R) bool_t n(A a, R *r, struct svc_req *q) { (void)a; (void)r; (void)q; return FALSE; }
NOPE1(ni_statistics_2_svc, ni_proplist)
NOPE2(ni_parent_2_svc, ni_id, ni_parent_res)
NOPE2(ni_create_2_svc, ni_create_args, ni_create_res)
NOPE2(ni_destroy_2_svc, ni_destroy_args, ni_id_res)
NOPE2(ni_read_2_svc, ni_id, ni_proplist_res)
NOPE2(ni_write_2_svc, ni_proplist_stuff, ni_id_res)
NOPE2(ni_children_2_svc, ni_id, ni_children_res)
NOPE2(ni_list_2_svc, ni_name_args, ni_list_res)
NOPE2(ni_createprop_2_svc, ni_createprop_args, ni_id_res)
NOPE2(ni_destroyprop_2_svc, ni_prop_args, ni_id_res)
NOPE2(ni_readprop_2_svc, ni_prop_args, ni_namelist_res)
NOPE2(ni_writeprop_2_svc, ni_writeprop_args, ni_id_res)
NOPE2(ni_renameprop_2_svc, ni_propname_args, ni_id_res)
NOPE2(ni_listprops_2_svc, ni_id, ni_namelist_res)
NOPE2(ni_createname_2_svc, ni_createname_args, ni_id_res)
NOPE2(ni_destroyname_2_svc, ni_nameindex_args, ni_id_res)
NOPE2(ni_readname_2_svc, ni_nameindex_args, ni_readname_res)
NOPE2(ni_writename_2_svc, ni_writename_args, ni_id_res)
NOPE1(ni_rparent_2_svc, ni_rparent_res)
NOPE2(ni_listall_2_svc, ni_id, ni_listall_res)
NOPE2(ni_bind_2_svc, ni_binding, void)
NOPE2(ni_readall_2_svc, u_int, ni_readall_res)
NOPE2(ni_crashed_2_svc, u_int, void)
NOPE1(ni_resync_2_svc, ni_status)

/* Replies point at static data or at the arguments: nothing to free. */
int ni_prog_2_freeresult(SVCXPRT *t, xdrproc_t x, caddr_t r)
{
	(void)t;
	(void)x;
	(void)r;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ninull PORT\n");
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
		perror("ninull: bind");
		return 1;
	}
	SVCXPRT *x = svctcp_create(fd, 0, 0);
	if (!x || !svc_register(x, NI_PROG, NI_VERS, ni_prog_2, 0)) {
		fprintf(stderr, "ninull: cannot create the TCP service\n");
		return 1;
	}
	fprintf(stderr, "ninull: serving tcp=%s\n", argv[1]);
	svc_run();
	return 1;
}
