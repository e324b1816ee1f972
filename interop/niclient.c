/*
 * niclient.c -- scripted NETINFO (program 200100000 v2) client built on
 * rpcgen-generated stubs from netinfo_prot.x and libtirpc.  It is an
 * independent interop oracle for the Python netinfod.
 *
 * Build (in a directory holding a copy of netinfo_prot.x):
 *   rpcgen -N -h -o netinfo_prot.h      netinfo_prot.x
 *   rpcgen -N -c -o netinfo_prot_xdr.c  netinfo_prot.x
 *   rpcgen -N -l -o netinfo_prot_clnt.c netinfo_prot.x
 *   gcc -I/usr/include/tirpc -I. -o niclient niclient.c \
 *       netinfo_prot_clnt.c netinfo_prot_xdr.c -ltirpc
 *
 * Usage:
 *   niclient [-u] HOST PORT
 *
 * The server is addressed directly at HOST:PORT (UDP and TCP); no
 * portmapper is consulted.
 *
 * Default ("full") scenario: the TCP and UDP sockets are bound to a
 * reserved source port (needs root), which a NetInfo master treats as the
 * local superuser, and every one of the 29 procedures is exercised over
 * TCP, including all writes, on a subtree /people that is created and
 * destroyed again.
 *
 * -u ("anon") scenario: ordinary ephemeral source ports, so the caller is
 * anonymous.  Only reads, replication/binding calls and write probes that
 * must fail (NI_STALE with an old instance, NI_PERM otherwise) are made.
 *
 * Output: one line per call, space separated, first token the procedure
 * name, then key=value tokens.  Always present: step=<name> and either
 * rpc=ok or rpc=<RPC error name>.  Strings are escaped: every byte
 * outside [A-Za-z0-9._/@+-] is written as %XX, an empty string as "".
 * Formats:  id=OBJ,INST   idlist=1,2,3   namelist=[a,b]
 *           proplist=name:[a];uid:[501]   entries=4:[a];5:-
 * Lines starting with UNEXPECTED describe results that differ from the
 * protocol specification; the last line is "DONE failures=N".
 * Exit status: 0 = everything as expected, 1 = some UNEXPECTED result,
 * 2 = could not connect / usage error.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <errno.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <rpc/rpc.h>

#include "netinfo_prot.h"

#define CALL_TIMEOUT     10   /* seconds, ordinary calls */
#define READALL_TIMEOUT  30   /* seconds */
#define BIND_TIMEOUT      3   /* seconds; BIND may never be answered */
#define MAX_WALK       8192

static struct sockaddr_in server;
static int failures = 0;
static FILE *out;             /* value printers write here (stdout) */
static u_int root_nprops;     /* properties of the root directory */

/* ------------------------------------------------------------------ */
/* Output helpers                                                      */
/* ------------------------------------------------------------------ */

static void
out_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (s == NULL) {
		fputs("(null)", out);
		return;
	}
	if (*p == '\0') {
		fputs("\"\"", out);
		return;
	}
	for (; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._/@+-", *p) != NULL)
			fputc(*p, out);
		else
			fprintf(out, "%%%02X", *p);
	}
}

static void
out_id(const char *key, ni_id id)
{
	fprintf(out, " %s=%u,%u", key, id.object, id.instance);
}

static void
out_namelist_body(const ni_namelist *nl)
{
	u_int i;

	fputc('[', out);
	for (i = 0; i < nl->ni_namelist_len; i++) {
		if (i)
			fputc(',', out);
		out_str(nl->ni_namelist_val[i]);
	}
	fputc(']', out);
}

static void
out_namelist(const char *key, const ni_namelist *nl)
{
	fprintf(out, " %s=", key);
	out_namelist_body(nl);
}

static void
out_proplist(const char *key, const ni_proplist *pl)
{
	u_int i;

	fprintf(out, " %s=", key);
	for (i = 0; i < pl->ni_proplist_len; i++) {
		if (i)
			fputc(';', out);
		out_str(pl->ni_proplist_val[i].name);
		fputc(':', out);
		out_namelist_body(&pl->ni_proplist_val[i].values);
	}
}

static void
out_idlist(const char *key, const ni_idlist *il)
{
	u_int i;

	fprintf(out, " %s=", key);
	for (i = 0; i < il->ni_idlist_len; i++)
		fprintf(out, i ? ",%u" : "%u", il->ni_idlist_val[i]);
}

static void
begin(const char *proc, const char *step)
{
	printf("%s step=%s", proc, step);
}

static void
end_line(void)
{
	putchar('\n');
	fflush(stdout);
}

static void
unexpected(const char *step, const char *fmt, ...)
{
	va_list ap;

	failures++;
	printf("UNEXPECTED step=%s ", step);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static const char *
stat_name(enum clnt_stat st)
{
	switch (st) {
	case RPC_SUCCESS:          return "ok";
	case RPC_CANTENCODEARGS:   return "RPC_CANTENCODEARGS";
	case RPC_CANTDECODERES:    return "RPC_CANTDECODERES";
	case RPC_CANTSEND:         return "RPC_CANTSEND";
	case RPC_CANTRECV:         return "RPC_CANTRECV";
	case RPC_TIMEDOUT:         return "RPC_TIMEDOUT";
	case RPC_VERSMISMATCH:     return "RPC_VERSMISMATCH";
	case RPC_AUTHERROR:        return "RPC_AUTHERROR";
	case RPC_PROGUNAVAIL:      return "RPC_PROGUNAVAIL";
	case RPC_PROGVERSMISMATCH: return "RPC_PROGVERSMISMATCH";
	case RPC_PROCUNAVAIL:      return "RPC_PROCUNAVAIL";
	case RPC_CANTDECODEARGS:   return "RPC_CANTDECODEARGS";
	case RPC_SYSTEMERROR:      return "RPC_SYSTEMERROR";
	case RPC_UNKNOWNHOST:      return "RPC_UNKNOWNHOST";
	case RPC_UNKNOWNPROTO:     return "RPC_UNKNOWNPROTO";
	case RPC_PMAPFAILURE:      return "RPC_PMAPFAILURE";
	case RPC_PROGNOTREGISTERED:return "RPC_PROGNOTREGISTERED";
	case RPC_FAILED:           return "RPC_FAILED";
	default:                   return "RPC_OTHER";
	}
}

/*
 * Print " rpc=<error>" (plus details) for a failed call and return the
 * clnt_stat.  Does not end the line.
 */
static enum clnt_stat
out_rpcerr(CLIENT *cl)
{
	struct rpc_err e;

	memset(&e, 0, sizeof(e));
	clnt_geterr(cl, &e);
	printf(" rpc=%s", stat_name(e.re_status));
	if (e.re_status == RPC_AUTHERROR)
		printf(" why=%d", (int)e.re_why);
	else if (e.re_status == RPC_PROGVERSMISMATCH ||
	    e.re_status == RPC_VERSMISMATCH)
		printf(" low=%lu high=%lu", (unsigned long)e.re_vers.low,
		    (unsigned long)e.re_vers.high);
	else if (e.re_status == RPC_CANTSEND || e.re_status == RPC_CANTRECV)
		printf(" errno=%d", e.re_errno);
	return e.re_status;
}

/* A call that should have succeeded at the RPC level failed. */
static void
rpc_failed(CLIENT *cl, const char *proc, const char *step)
{
	enum clnt_stat st;

	begin(proc, step);
	st = out_rpcerr(cl);
	end_line();
	unexpected(step, "rpc=%s", stat_name(st));
}

static void
set_timeout(CLIENT *cl, int seconds)
{
	struct timeval tv;

	tv.tv_sec = seconds;
	tv.tv_usec = 0;
	clnt_control(cl, CLSET_TIMEOUT, (char *)&tv);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/*
 * Create a client for program `prog` version `vers` on `server`.  When
 * `privileged`, the socket is bound to a reserved port first (only works
 * as root); otherwise to an ordinary ephemeral port.  sendsz / recvsz are
 * libtirpc's record buffer sizes (0 = default); on TCP a call larger than
 * sendsz goes out as several record fragments.
 */
static CLIENT *
mk_client(int tcp, int privileged, u_long prog, u_long vers, u_int sendsz,
    u_int recvsz)
{
	int fd, reserved = 0;
	struct sockaddr_in local;
	socklen_t len;
	struct netbuf nb;
	CLIENT *cl;

	fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return NULL;
	}
	memset(&local, 0, sizeof(local));
	local.sin_family = AF_INET;
	if (privileged && bindresvport(fd, &local) == 0) {
		reserved = 1;
	} else {
		memset(&local, 0, sizeof(local));
		local.sin_family = AF_INET;
		local.sin_port = 0;
		(void)bind(fd, (struct sockaddr *)&local, sizeof(local));
	}
	if (tcp && connect(fd, (struct sockaddr *)&server,
	    sizeof(server)) < 0) {
		printf("CONNECT proto=tcp rpc=RPC_CANTSEND errno=%d\n", errno);
		fflush(stdout);
		close(fd);
		return NULL;
	}
	len = sizeof(local);
	getsockname(fd, (struct sockaddr *)&local, &len);

	nb.maxlen = nb.len = sizeof(server);
	nb.buf = (char *)&server;
	if (tcp)
		cl = clnt_vc_create(fd, &nb, prog, vers, sendsz, recvsz);
	else
		cl = clnt_dg_create(fd, &nb, prog, vers, sendsz, recvsz);
	if (cl == NULL) {
		printf("CONNECT proto=%s rpc=%s\n", tcp ? "tcp" : "udp",
		    stat_name(rpc_createerr.cf_stat));
		fflush(stdout);
		close(fd);
		return NULL;
	}
	clnt_control(cl, CLSET_FD_CLOSE, NULL);
	set_timeout(cl, CALL_TIMEOUT);
	if (!tcp) {
		struct timeval rt = { 1, 0 };
		clnt_control(cl, CLSET_RETRY_TIMEOUT, (char *)&rt);
	}
	printf("CONNECT proto=%s prog=%lu vers=%lu sport=%u reserved=%d sendsz=%u "
	    "recvsz=%u\n", tcp ? "tcp" : "udp", (unsigned long)prog,
	    (unsigned long)vers,
	    ntohs(local.sin_port), reserved, sendsz, recvsz);
	fflush(stdout);
	return cl;
}

/* ------------------------------------------------------------------ */
/* Small constructors                                                  */
/* ------------------------------------------------------------------ */

static ni_id
mkid(u_int object, u_int instance)
{
	ni_id id;

	id.object = object;
	id.instance = instance;
	return id;
}

static ni_namelist
mknl(int n, char **vals)
{
	ni_namelist nl;

	nl.ni_namelist_len = (u_int)n;
	nl.ni_namelist_val = vals;
	return nl;
}

static ni_property
mkprop(char *name, int n, char **vals)
{
	ni_property p;

	p.name = name;
	p.values = mknl(n, vals);
	return p;
}

static ni_proplist
mkpl(int n, ni_property *props)
{
	ni_proplist pl;

	pl.ni_proplist_len = (u_int)n;
	pl.ni_proplist_val = props;
	return pl;
}

/* Render a proplist the same way out_proplist does, for comparisons. */
static void
render_proplist(const ni_proplist *pl, char *buf, size_t size)
{
	FILE *f = fmemopen(buf, size, "w");
	FILE *saved = out;

	buf[0] = '\0';
	if (f == NULL)
		return;
	out = f;
	out_proplist("p", pl);
	fflush(f);
	out = saved;
	fclose(f);
	/* strip the leading " p=" */
	memmove(buf, buf + 3, strlen(buf + 3) + 1);
}

/* ------------------------------------------------------------------ */
/* Per-result printers and checks                                      */
/* ------------------------------------------------------------------ */

/*
 * ni_id_res returned by a write procedure (or SELF / ROOT).
 * `want` is the expected status.  When `track` is given and the call
 * succeeded, the returned id must be track->object with instance
 * track->instance + bump, and *track is updated.  Returns the status or -1
 * on an RPC failure.
 */
static int
chk_idres(CLIENT *cl, const char *proc, const char *step, ni_id_res *r,
    int want, ni_id *track, int bump)
{
	if (r == NULL) {
		rpc_failed(cl, proc, step);
		return -1;
	}
	begin(proc, step);
	printf(" rpc=ok status=%d", (int)r->status);
	if (r->status == NI_OK)
		out_id("id", r->ni_id_res_u.id);
	end_line();
	if ((int)r->status != want) {
		unexpected(step, "status=%d want=%d", (int)r->status, want);
	} else if (r->status == NI_OK && track != NULL) {
		ni_id got = r->ni_id_res_u.id;
		if (got.object != track->object ||
		    got.instance != track->instance + (u_int)bump)
			unexpected(step, "id=%u,%u want=%u,%u", got.object,
			    got.instance, track->object,
			    track->instance + (u_int)bump);
		*track = got;
	}
	return (int)r->status;
}

static int
status_only(const char *step, int status, int want)
{
	if (status != want)
		unexpected(step, "status=%d want=%d", status, want);
	return status;
}

/* STATISTICS: print summary plus one STATPROP line per property. */
static int
do_statistics(CLIENT *cl, const char *step, int verbose,
    unsigned long *checksum)
{
	ni_proplist *pl;
	u_int i;
	int have = 0;

	pl = ni_statistics_2(cl);
	if (pl == NULL) {
		rpc_failed(cl, "STATISTICS", step);
		return -1;
	}
	begin("STATISTICS", step);
	printf(" rpc=ok nprops=%u", pl->ni_proplist_len);
	if (pl->ni_proplist_len > 0) {
		printf(" first=");
		out_str(pl->ni_proplist_val[0].name);
	}
	if (pl->ni_proplist_len > 0 &&
	    strcmp(pl->ni_proplist_val[0].name, "checksum") == 0 &&
	    pl->ni_proplist_val[0].values.ni_namelist_len >= 1) {
		char *end;
		const char *v = pl->ni_proplist_val[0].values.ni_namelist_val[0];
		*checksum = strtoul(v, &end, 10);
		have = (*v != '\0' && *end == '\0');
		printf(" checksum=");
		out_str(v);
	}
	end_line();
	if (verbose) {
		for (i = 0; i < pl->ni_proplist_len; i++) {
			begin("STATPROP", step);
			printf(" index=%u name=", i);
			out_str(pl->ni_proplist_val[i].name);
			out_namelist("values", &pl->ni_proplist_val[i].values);
			end_line();
		}
	}
	if (!have)
		unexpected(step, "first property is not checksum=[decimal]");
	xdr_free((xdrproc_t)xdr_ni_proplist, (char *)pl);
	return have ? 0 : -1;
}

/* Recursive CHILDREN walk from `obj`, recording pre-order object numbers */
static u_int walk_ids[MAX_WALK];
static u_int walk_n;

static int
walk(CLIENT *cl, u_int obj, int depth)
{
	ni_children_res *r;
	ni_idlist kids;
	u_int i, *copy;
	int rc = 0;

	if (walk_n >= MAX_WALK || depth > 64)
		return -1;
	walk_ids[walk_n++] = obj;
	r = ni_children_2(mkid(obj, 0), cl);
	if (r == NULL) {
		rpc_failed(cl, "CHILDREN", "walk");
		return -1;
	}
	if (r->status != NI_OK) {
		begin("CHILDREN", "walk");
		printf(" rpc=ok status=%d object=%u", (int)r->status, obj);
		end_line();
		unexpected("walk", "CHILDREN(%u) status=%d", obj,
		    (int)r->status);
		return -1;
	}
	kids = r->ni_children_res_u.stuff.children;
	copy = calloc(kids.ni_idlist_len + 1, sizeof(u_int));
	memcpy(copy, kids.ni_idlist_val, kids.ni_idlist_len * sizeof(u_int));
	kids.ni_idlist_val = copy;
	xdr_free((xdrproc_t)xdr_ni_children_res, (char *)r);
	for (i = 0; i < kids.ni_idlist_len && rc == 0; i++)
		rc = walk(cl, copy[i], depth + 1);
	free(copy);
	return rc;
}

static u_int
do_walk(CLIENT *cl, const char *step, u_int *maxid)
{
	u_int i;

	walk_n = 0;
	*maxid = 0;
	walk(cl, 0, 0);
	begin("WALK", step);
	printf(" dirs=%u", walk_n);
	for (i = 0; i < walk_n; i++)
		if (walk_ids[i] > *maxid)
			*maxid = walk_ids[i];
	printf(" maxid=%u order=", *maxid);
	for (i = 0; i < walk_n; i++)
		printf(i ? ",%u" : "%u", walk_ids[i]);
	end_line();
	return walk_n;
}

/*
 * READALL(arg).  With `full`, the object stream must match the
 * CHILDREN walk (same objects, depth-first pre-order) and the checksum
 * must equal sum((object+1)*instance) over the objects and `expect_ck`.
 * Without `full`, checksum 0 and an empty list are expected.
 */
static void
do_readall(CLIENT *cl, const char *step, u_int arg, int full,
    unsigned long expect_ck, u_int walk_count, int want)
{
	ni_readall_res *r;
	ni_objlist_node *n;
	u_int count = 0, sum = 0, order_ok = 1, parents_ok = 1;

	set_timeout(cl, READALL_TIMEOUT);
	r = ni_readall_2(arg, cl);
	set_timeout(cl, CALL_TIMEOUT);
	if (r == NULL) {
		rpc_failed(cl, "READALL", step);
		return;
	}
	begin("READALL", step);
	printf(" rpc=ok arg=%u status=%d", arg, (int)r->status);
	if (r->status != NI_OK || want != NI_OK) {
		end_line();
		if ((int)r->status != want)
			unexpected(step, "status=%d want=%d", (int)r->status, want);
		xdr_free((xdrproc_t)xdr_ni_readall_res, (char *)r);
		return;
	}
	for (n = r->ni_readall_res_u.stuff.list; n != NULL; n = n->next) {
		u_int obj = n->obj.id.object;
		sum += (obj + 1) * n->obj.id.instance;
		if (count >= walk_count || walk_ids[count] != obj)
			order_ok = 0;
		if (count == 0 && (obj != 0 || n->obj.parent != 0))
			parents_ok = 0;
		count++;
	}
	printf(" checksum=%u highest_id=%u objects=%u sum=%u order=%s",
	    r->ni_readall_res_u.stuff.checksum,
	    r->ni_readall_res_u.stuff.highest_id, count, sum,
	    !full ? "-" : order_ok && count == walk_count ? "preorder" : "other");
	printf(" objlist=");
	for (n = r->ni_readall_res_u.stuff.list; n != NULL; n = n->next)
		printf("%s%u,%u", n == r->ni_readall_res_u.stuff.list ? "" : ";",
		    n->obj.id.object, n->obj.id.instance);
	end_line();
	if (full) {
		if (r->ni_readall_res_u.stuff.checksum != (u_int)expect_ck)
			unexpected(step, "checksum=%u want=%lu (STATISTICS)",
			    r->ni_readall_res_u.stuff.checksum, expect_ck);
		if (r->ni_readall_res_u.stuff.checksum != sum)
			unexpected(step, "checksum=%u but sum((obj+1)*inst)=%u",
			    r->ni_readall_res_u.stuff.checksum, sum);
		if (count != walk_count)
			unexpected(step, "objects=%u want=%u (CHILDREN walk)",
			    count, walk_count);
		else if (!order_ok)
			unexpected(step, "object order is not depth-first pre-order");
		if (!parents_ok)
			unexpected(step, "first object is not the root with parent 0");
	} else {
		if (r->ni_readall_res_u.stuff.checksum != 0 || count != 0)
			unexpected(step, "checksum=%u objects=%u want 0 and 0",
			    r->ni_readall_res_u.stuff.checksum, count);
	}
	xdr_free((xdrproc_t)xdr_ni_readall_res, (char *)r);
}

/* BIND for a binding that is not served: an error or no answer. */
static int
do_bind(CLIENT *cl, const char *step)
{
	ni_binding b;
	void *r;
	enum clnt_stat st;

	b.tag = "no-such-child-tag";
	b.addr = 0x7f000001;  /* 127.0.0.1 as a numeric uint */
	set_timeout(cl, BIND_TIMEOUT);
	r = ni_bind_2(b, cl);
	set_timeout(cl, CALL_TIMEOUT);
	begin("BIND", step);
	if (r != NULL) {
		printf(" rpc=ok");
		end_line();
		unexpected(step, "BIND of an unserved binding was answered");
		return 0;
	}
	st = out_rpcerr(cl);
	end_line();
	return (int)st;
}

/* A raw call of a procedure number that does not exist. */
static void
do_proc(CLIENT *cl, const char *step, u_long proc)
{
	struct timeval tv = { CALL_TIMEOUT, 0 };
	enum clnt_stat st;

	st = clnt_call(cl, proc, (xdrproc_t)xdr_void, NULL,
	    (xdrproc_t)xdr_void, NULL, tv);
	begin("PROC", step);
	printf(" proc=%lu", proc);
	if (st == RPC_SUCCESS)
		printf(" rpc=ok");
	else
		out_rpcerr(cl);
	end_line();
	if (st != RPC_PROCUNAVAIL)
		unexpected(step, "rpc=%s want=RPC_PROCUNAVAIL", stat_name(st));
}

static void
do_vers3(int privileged)
{
	CLIENT *cl = mk_client(1, privileged, NI_PROG, 3, 0, 0);
	void *r;
	struct rpc_err e;

	if (cl == NULL) {
		unexpected("vers3", "cannot connect");
		return;
	}
	r = ni_ping_2(cl);
	begin("PING", "vers3");
	if (r != NULL) {
		printf(" rpc=ok");
		end_line();
		unexpected("vers3", "version 3 PING answered");
	} else {
		out_rpcerr(cl);
		end_line();
		clnt_geterr(cl, &e);
		if (e.re_status != RPC_PROGVERSMISMATCH ||
		    e.re_vers.low != 2 || e.re_vers.high != 2)
			unexpected("vers3", "want RPC_PROGVERSMISMATCH low=2 high=2");
	}
	clnt_destroy(cl);
}

/* SELF with no argument body: the server must answer GARBAGE_ARGS. */
static void
do_garbage(CLIENT *cl)
{
	struct timeval tv = { CALL_TIMEOUT, 0 };
	enum clnt_stat st;
	ni_id_res res;

	memset(&res, 0, sizeof(res));
	st = clnt_call(cl, NI_SELF, (xdrproc_t)xdr_void, NULL,
	    (xdrproc_t)xdr_ni_id_res, (char *)&res, tv);
	begin("SELF", "garbage_args");
	if (st == RPC_SUCCESS)
		printf(" rpc=ok status=%d", (int)res.status);
	else
		out_rpcerr(cl);
	end_line();
	if (st != RPC_CANTDECODEARGS)
		unexpected("garbage_args", "rpc=%s want=RPC_CANTDECODEARGS",
		    stat_name(st));
}

/* A program other than NETINFO on netinfod's port: PROG_UNAVAIL. */
static void
do_otherprog(int privileged)
{
	CLIENT *cl = mk_client(1, privileged, NI_PROG + 1, 1, 0, 0);
	struct timeval tv = { CALL_TIMEOUT, 0 };
	enum clnt_stat st;

	if (cl == NULL) {
		unexpected("otherprog", "cannot connect");
		return;
	}
	st = clnt_call(cl, 0, (xdrproc_t)xdr_void, NULL, (xdrproc_t)xdr_void,
	    NULL, tv);
	begin("PING", "otherprog");
	if (st == RPC_SUCCESS)
		printf(" rpc=ok");
	else
		out_rpcerr(cl);
	end_line();
	if (st != RPC_PROGUNAVAIL)
		unexpected("otherprog", "rpc=%s want=RPC_PROGUNAVAIL",
		    stat_name(st));
	clnt_destroy(cl);
}

static void
do_ping(CLIENT *cl, const char *step)
{
	if (ni_ping_2(cl) == NULL) {
		rpc_failed(cl, "PING", step);
		return;
	}
	begin("PING", step);
	printf(" rpc=ok");
	end_line();
}

/* UDP: PING must work; other procedures are normally refused with
 * AUTH_TOOWEAK (NeXT/Apple) or answered (Previous-style lenient mode);
 * BIND of an unserved binding gets an error or no answer. */
static void
udp_part(int privileged)
{
	CLIENT *u = mk_client(0, privileged, NI_PROG, NI_VERS, 0, 0);
	ni_proplist *pl;

	if (u == NULL) {
		unexpected("udp", "cannot create UDP client");
		return;
	}
	do_ping(u, "ping_udp");

	set_timeout(u, 3);
	pl = ni_statistics_2(u);
	begin("STATISTICS", "stats_udp");
	if (pl != NULL) {
		printf(" rpc=ok nprops=%u", pl->ni_proplist_len);
		end_line();
		xdr_free((xdrproc_t)xdr_ni_proplist, (char *)pl);
	} else {
		struct rpc_err e;
		out_rpcerr(u);
		end_line();
		clnt_geterr(u, &e);
		if (e.re_status != RPC_AUTHERROR || e.re_why != AUTH_TOOWEAK)
			unexpected("stats_udp",
			    "STATISTICS over UDP neither answered nor AUTH_TOOWEAK");
	}
	do_bind(u, "bind_udp");
	clnt_destroy(u);
}

/* ------------------------------------------------------------------ */
/* Read-only part shared by both scenarios                             */
/* ------------------------------------------------------------------ */

static ni_id root_id;

static void
read_root_part(CLIENT *cl)
{
	ni_id_res *ir;
	ni_parent_res *pr;
	ni_proplist_res *rr;
	ni_namelist_res *nr;
	ni_readname_res *rn;
	ni_lookup_res *lr;
	ni_list_res *li;
	ni_listall_res *la;
	ni_rparent_res *rp;
	ni_lookup_args la_args;
	ni_name_args na;
	ni_prop_args pa;
	ni_nameindex_args nia;
	u_int nprops = 0, nvals = 0, i;
	int have_machines = 0;

	ir = ni_root_2(cl);
	if (chk_idres(cl, "ROOT", "root", ir, NI_OK, NULL, 0) == NI_OK) {
		root_id = ir->ni_id_res_u.id;
		if (root_id.object != 0)
			unexpected("root", "root object is %u, want 0",
			    root_id.object);
	}

	ir = ni_self_2(mkid(0, 12345), cl);  /* instance ignored by reads */
	if (chk_idres(cl, "SELF", "self_root", ir, NI_OK, NULL, 0) == NI_OK &&
	    (ir->ni_id_res_u.id.object != 0 ||
	    ir->ni_id_res_u.id.instance != root_id.instance))
		unexpected("self_root", "SELF(root) differs from ROOT");

	ir = ni_self_2(mkid(987654, 0), cl);
	if (ir == NULL)
		rpc_failed(cl, "SELF", "self_badid");
	else {
		begin("SELF", "self_badid");
		printf(" rpc=ok status=%d", (int)ir->status);
		end_line();
		if (ir->status == NI_OK)
			unexpected("self_badid", "nonexistent object found");
	}

	pr = ni_parent_2(root_id, cl);
	if (pr == NULL)
		rpc_failed(cl, "PARENT", "parent_root");
	else {
		begin("PARENT", "parent_root");
		printf(" rpc=ok status=%d", (int)pr->status);
		if (pr->status == NI_OK) {
			printf(" parent=%u", pr->ni_parent_res_u.stuff.parent_object);
			out_id("self", pr->ni_parent_res_u.stuff.self_id);
		}
		end_line();
		if (pr->status != NI_OK)
			unexpected("parent_root", "status=%d want=0",
			    (int)pr->status);
		else if (pr->ni_parent_res_u.stuff.parent_object != 0 ||
		    pr->ni_parent_res_u.stuff.self_id.object != 0)
			unexpected("parent_root", "want parent=0 self=0,*");
	}

	rr = ni_read_2(root_id, cl);
	if (rr == NULL)
		rpc_failed(cl, "READ", "read_root");
	else {
		begin("READ", "read_root");
		printf(" rpc=ok status=%d", (int)rr->status);
		if (rr->status == NI_OK) {
			out_id("id", rr->ni_proplist_res_u.stuff.id);
			out_proplist("props", &rr->ni_proplist_res_u.stuff.props);
		}
		end_line();
		status_only("read_root", (int)rr->status, NI_OK);
		xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)rr);
	}

	nr = ni_listprops_2(root_id, cl);
	if (nr == NULL)
		rpc_failed(cl, "LISTPROPS", "listprops_root");
	else {
		begin("LISTPROPS", "listprops_root");
		printf(" rpc=ok status=%d", (int)nr->status);
		if (nr->status == NI_OK) {
			nprops = nr->ni_namelist_res_u.stuff.values.ni_namelist_len;
			root_nprops = nprops;
			out_namelist("names", &nr->ni_namelist_res_u.stuff.values);
			out_id("self", nr->ni_namelist_res_u.stuff.self_id);
		}
		end_line();
		status_only("listprops_root", (int)nr->status, NI_OK);
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	/* READPROP 0 (or NI_NOPROP when the root has no properties) */
	pa.dir = root_id;
	pa.prop_index = 0;
	nr = ni_readprop_2(pa, cl);
	if (nr == NULL)
		rpc_failed(cl, "READPROP", "readprop_root");
	else {
		begin("READPROP", "readprop_root");
		printf(" rpc=ok index=0 status=%d", (int)nr->status);
		if (nr->status == NI_OK) {
			nvals = nr->ni_namelist_res_u.stuff.values.ni_namelist_len;
			out_namelist("values", &nr->ni_namelist_res_u.stuff.values);
			out_id("self", nr->ni_namelist_res_u.stuff.self_id);
		}
		end_line();
		status_only("readprop_root", (int)nr->status,
		    nprops > 0 ? NI_OK : NI_NOPROP);
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	pa.prop_index = nprops + 100;
	nr = ni_readprop_2(pa, cl);
	if (nr == NULL)
		rpc_failed(cl, "READPROP", "readprop_noprop");
	else {
		begin("READPROP", "readprop_noprop");
		printf(" rpc=ok index=%u status=%d", pa.prop_index,
		    (int)nr->status);
		end_line();
		status_only("readprop_noprop", (int)nr->status, NI_NOPROP);
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	if (nprops > 0) {
		nia.dir = root_id;
		nia.prop_index = 0;
		nia.name_index = 0;
		rn = ni_readname_2(nia, cl);
		if (rn == NULL)
			rpc_failed(cl, "READNAME", "readname_root");
		else {
			begin("READNAME", "readname_root");
			printf(" rpc=ok status=%d", (int)rn->status);
			if (rn->status == NI_OK) {
				out_id("id", rn->ni_readname_res_u.stuff.id);
				printf(" name=");
				out_str(rn->ni_readname_res_u.stuff.name);
			}
			end_line();
			status_only("readname_root", (int)rn->status,
			    nvals > 0 ? NI_OK : NI_NONAME);
			xdr_free((xdrproc_t)xdr_ni_readname_res, (char *)rn);
		}
		nia.name_index = nvals + 100;
		rn = ni_readname_2(nia, cl);
		if (rn == NULL)
			rpc_failed(cl, "READNAME", "readname_noname");
		else {
			begin("READNAME", "readname_noname");
			printf(" rpc=ok status=%d", (int)rn->status);
			end_line();
			status_only("readname_noname", (int)rn->status, NI_NONAME);
			xdr_free((xdrproc_t)xdr_ni_readname_res, (char *)rn);
		}
	}

	/* LIST root "name" */
	na.dir = root_id;
	na.name = "name";
	li = ni_list_2(na, cl);
	if (li == NULL)
		rpc_failed(cl, "LIST", "list_root");
	else {
		begin("LIST", "list_root");
		printf(" rpc=ok status=%d", (int)li->status);
		if (li->status == NI_OK) {
			ni_entrylist *el = &li->ni_list_res_u.stuff.entries;
			printf(" entries=");
			for (i = 0; i < el->ni_entrylist_len; i++) {
				ni_entry *e = &el->ni_entrylist_val[i];
				printf(i ? ";%u:" : "%u:", e->id);
				if (e->names == NULL)
					putchar('-');
				else {
					out_namelist_body(e->names);
					if (e->names->ni_namelist_len > 0 &&
					    strcmp(e->names->ni_namelist_val[0],
					    "machines") == 0)
						have_machines = 1;
				}
			}
			out_id("self", li->ni_list_res_u.stuff.self_id);
		}
		end_line();
		status_only("list_root", (int)li->status, NI_OK);
		xdr_free((xdrproc_t)xdr_ni_list_res, (char *)li);
	}

	/* LOOKUP root name=machines */
	la_args.dir = root_id;
	la_args.key = "name";
	la_args.value = "machines";
	lr = ni_lookup_2(la_args, cl);
	if (lr == NULL)
		rpc_failed(cl, "LOOKUP", "lookup_machines");
	else {
		begin("LOOKUP", "lookup_machines");
		printf(" rpc=ok status=%d", (int)lr->status);
		if (lr->status == NI_OK) {
			out_idlist("ids", &lr->ni_lookup_res_u.stuff.ids);
			out_id("self", lr->ni_lookup_res_u.stuff.self_id);
		}
		end_line();
		status_only("lookup_machines", (int)lr->status,
		    have_machines ? NI_OK : NI_NODIR);
		xdr_free((xdrproc_t)xdr_ni_lookup_res, (char *)lr);
	}

	rr = ni_lookupread_2(la_args, cl);
	if (rr == NULL)
		rpc_failed(cl, "LOOKUPREAD", "lookupread_machines");
	else {
		begin("LOOKUPREAD", "lookupread_machines");
		printf(" rpc=ok status=%d", (int)rr->status);
		if (rr->status == NI_OK) {
			out_id("id", rr->ni_proplist_res_u.stuff.id);
			out_proplist("props", &rr->ni_proplist_res_u.stuff.props);
		}
		end_line();
		status_only("lookupread_machines", (int)rr->status,
		    have_machines ? NI_OK : NI_NODIR);
		if (rr->status == NI_OK &&
		    rr->ni_proplist_res_u.stuff.id.object != 0)
			unexpected("lookupread_machines",
			    "id must be the searched directory (0)");
		xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)rr);
	}

	la = ni_listall_2(root_id, cl);
	if (la == NULL)
		rpc_failed(cl, "LISTALL", "listall_root");
	else {
		begin("LISTALL", "listall_root");
		printf(" rpc=ok status=%d", (int)la->status);
		if (la->status == NI_OK) {
			ni_proplist_list *pll = &la->ni_listall_res_u.stuff.entries;
			out_id("self", la->ni_listall_res_u.stuff.self_id);
			printf(" count=%u", pll->ni_proplist_list_len);
			end_line();
			for (i = 0; i < pll->ni_proplist_list_len; i++) {
				begin("LISTALLENTRY", "listall_root");
				printf(" index=%u", i);
				out_proplist("props", &pll->ni_proplist_list_val[i]);
				end_line();
			}
		} else
			end_line();
		status_only("listall_root", (int)la->status, NI_OK);
		xdr_free((xdrproc_t)xdr_ni_listall_res, (char *)la);
	}

	rp = ni_rparent_2(cl);
	if (rp == NULL)
		rpc_failed(cl, "RPARENT", "rparent");
	else {
		begin("RPARENT", "rparent");
		printf(" rpc=ok status=%d", (int)rp->status);
		if (rp->status == NI_OK) {
			printf(" tag=");
			out_str(rp->ni_rparent_res_u.binding.tag);
			printf(" addr=%u", rp->ni_rparent_res_u.binding.addr);
		}
		end_line();
		/* a fresh master with no ../ entries is the network root */
		status_only("rparent", (int)rp->status, NI_NETROOT);
		xdr_free((xdrproc_t)xdr_ni_rparent_res, (char *)rp);
	}
}

/* READALL / CRASHED / RESYNC block, preceded by STATISTICS + walk. */
static void
replication_part(CLIENT *cl, const char *suffix)
{
	unsigned long ck = 0;
	u_int count, maxid;
	char s1[64], s2[64], s3[64], s4[64], s5[64], s6[64];
	ni_status *rs;
	int want;

	snprintf(s1, sizeof s1, "stats_%s", suffix);
	snprintf(s2, sizeof s2, "walk_%s", suffix);
	snprintf(s3, sizeof s3, "readall_full_%s", suffix);
	snprintf(s4, sizeof s4, "readall_same_%s", suffix);
	snprintf(s5, sizeof s5, "crashed_%s", suffix);
	snprintf(s6, sizeof s6, "resync_%s", suffix);

	do_statistics(cl, s1, 0, &ck);
	count = do_walk(cl, s2, &maxid);
	/* checksum argument 0: never equal to a non-empty database's. The whole
	 * database goes only to the superuser and the domain's clones: an anonymous
	 * caller gets NI_PERM (our security rule; the originals sent it to anyone). */
	want = strcmp(suffix, "anon") == 0 ? NI_PERM : NI_OK;
	do_readall(cl, s3, 0, 1, ck, count, want);
	do_readall(cl, s4, (u_int)ck, 0, 0, 0, want);

	if (ni_crashed_2((u_int)ck, cl) == NULL)
		rpc_failed(cl, "CRASHED", s5);
	else {
		begin("CRASHED", s5);
		printf(" rpc=ok arg=%lu", ck);
		end_line();
	}

	rs = ni_resync_2(cl);
	if (rs == NULL)
		rpc_failed(cl, "RESYNC", s6);
	else {
		begin("RESYNC", s6);
		printf(" rpc=ok status=%d", (int)*rs);
		end_line();
		status_only(s6, (int)*rs, NI_OK);
	}
}

/* ------------------------------------------------------------------ */
/* Anonymous scenario: writes must be refused                          */
/* ------------------------------------------------------------------ */

static void
anon_write_probes(CLIENT *cl)
{
	ni_create_args ca;
	ni_writeprop_args wa;
	ni_create_res *cr;
	ni_id_res *ir;
	ni_property props[1];
	char *v_name[] = { "anon" };
	char *v_x[] = { "x" };
	ni_id cur = root_id;

	/* refresh the root id */
	ir = ni_self_2(mkid(0, 0), cl);
	if (ir != NULL && ir->status == NI_OK)
		cur = ir->ni_id_res_u.id;

	props[0] = mkprop("name", 1, v_name);
	ca.parent = cur;
	ca.props = mkpl(1, props);
	ca.where = NI_INDEX_NULL;
	ca.target_id = NULL;
	cr = ni_create_2(ca, cl);
	if (cr == NULL)
		rpc_failed(cl, "CREATE", "create_anon");
	else {
		begin("CREATE", "create_anon");
		printf(" rpc=ok status=%d", (int)cr->status);
		end_line();
		status_only("create_anon", (int)cr->status, NI_PERM);
	}

	/* stale instance: NI_STALE comes before the permission check */
	ca.parent = mkid(0, cur.instance + 1000);
	cr = ni_create_2(ca, cl);
	if (cr == NULL)
		rpc_failed(cl, "CREATE", "create_anon_stale");
	else {
		begin("CREATE", "create_anon_stale");
		printf(" rpc=ok status=%d", (int)cr->status);
		end_line();
		status_only("create_anon_stale", (int)cr->status, NI_STALE);
	}

	wa.dir = cur;
	wa.prop_index = 0;
	wa.values = mknl(1, v_x);
	ir = ni_writeprop_2(wa, cl);
	/* index range checks come before the permission check */
	chk_idres(cl, "WRITEPROP", "writeprop_anon", ir,
	    root_nprops > 0 ? NI_PERM : NI_NOPROP, NULL, 0);

	/* nothing may have changed */
	ir = ni_self_2(mkid(0, 0), cl);
	if (ir != NULL && ir->status == NI_OK &&
	    ir->ni_id_res_u.id.instance != cur.instance)
		unexpected("anon_writes", "root instance changed %u -> %u",
		    cur.instance, ir->ni_id_res_u.id.instance);
}

/* ------------------------------------------------------------------ */
/* Full (superuser) scenario                                           */
/* ------------------------------------------------------------------ */

static void
print_read(CLIENT *cl, const char *step, ni_id id, const char *want_props)
{
	ni_proplist_res *rr = ni_read_2(id, cl);
	char buf[4096];

	if (rr == NULL) {
		rpc_failed(cl, "READ", step);
		return;
	}
	begin("READ", step);
	printf(" rpc=ok status=%d", (int)rr->status);
	if (rr->status == NI_OK) {
		out_id("id", rr->ni_proplist_res_u.stuff.id);
		out_proplist("props", &rr->ni_proplist_res_u.stuff.props);
	}
	end_line();
	if (status_only(step, (int)rr->status, NI_OK) == NI_OK) {
		render_proplist(&rr->ni_proplist_res_u.stuff.props, buf,
		    sizeof buf);
		if (want_props != NULL && strcmp(buf, want_props) != 0)
			unexpected(step, "props=%s want=%s", buf, want_props);
		if (rr->ni_proplist_res_u.stuff.id.object != id.object ||
		    rr->ni_proplist_res_u.stuff.id.instance != id.instance)
			unexpected(step, "id=%u,%u want=%u,%u",
			    rr->ni_proplist_res_u.stuff.id.object,
			    rr->ni_proplist_res_u.stuff.id.instance,
			    id.object, id.instance);
	}
	xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)rr);
}

/* CREATE a child of *parent; returns the child's id, updates *parent. */
static ni_id
create_child(CLIENT *cl, const char *step, ni_id *parent, ni_proplist pl,
    ni_index where)
{
	ni_create_args ca;
	ni_create_res *cr;
	ni_id child = mkid(NI_INDEX_NULL, 0);

	ca.parent = *parent;
	ca.props = pl;
	ca.where = where;
	ca.target_id = NULL;
	cr = ni_create_2(ca, cl);
	if (cr == NULL) {
		rpc_failed(cl, "CREATE", step);
		return child;
	}
	begin("CREATE", step);
	printf(" rpc=ok status=%d", (int)cr->status);
	if (cr->status == NI_OK) {
		out_id("child", cr->ni_create_res_u.stuff.child_id);
		out_id("parent", cr->ni_create_res_u.stuff.parent_self_id);
	}
	end_line();
	if (status_only(step, (int)cr->status, NI_OK) == NI_OK) {
		ni_id p = cr->ni_create_res_u.stuff.parent_self_id;
		child = cr->ni_create_res_u.stuff.child_id;
		if (p.object != parent->object ||
		    p.instance != parent->instance + 1)
			unexpected(step, "parent=%u,%u want=%u,%u", p.object,
			    p.instance, parent->object, parent->instance + 1);
		*parent = p;
	}
	return child;
}

/* PARENT of a non-root directory, `where` positions of CREATE and
 * CREATEPROP (insertion at an index instead of appending). */
static void
where_block(CLIENT *cl, ni_id *people, ni_id *alice, ni_id nameless)
{
	ni_property pp[1];
	char *v_first[] = { "first" };
	char *v_ins[] = { "inserted" };
	ni_parent_res *pr;
	ni_children_res *chr;
	ni_namelist_res *nr;
	ni_createprop_args cpa;
	ni_prop_args pa;
	ni_destroy_args da;
	ni_id_res *ir;
	ni_id first;

	pr = ni_parent_2(*alice, cl);
	if (pr == NULL)
		rpc_failed(cl, "PARENT", "parent_alice");
	else {
		begin("PARENT", "parent_alice");
		printf(" rpc=ok status=%d", (int)pr->status);
		if (pr->status == NI_OK) {
			printf(" parent=%u", pr->ni_parent_res_u.stuff.parent_object);
			out_id("self", pr->ni_parent_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("parent_alice", (int)pr->status, NI_OK) == NI_OK &&
		    (pr->ni_parent_res_u.stuff.parent_object != people->object ||
		    pr->ni_parent_res_u.stuff.self_id.object != alice->object ||
		    pr->ni_parent_res_u.stuff.self_id.instance != alice->instance))
			unexpected("parent_alice", "want parent=%u self=%u,%u",
			    people->object, alice->object, alice->instance);
	}

	/* CREATE at position 0 of the child list */
	pp[0] = mkprop("name", 1, v_first);
	first = create_child(cl, "create_first", people, mkpl(1, pp), 0);
	chr = ni_children_2(*people, cl);
	if (chr == NULL)
		rpc_failed(cl, "CHILDREN", "children_where0");
	else {
		begin("CHILDREN", "children_where0");
		printf(" rpc=ok status=%d", (int)chr->status);
		if (chr->status == NI_OK) {
			out_idlist("children", &chr->ni_children_res_u.stuff.children);
			out_id("self", chr->ni_children_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("children_where0", (int)chr->status, NI_OK) ==
		    NI_OK) {
			ni_idlist *k = &chr->ni_children_res_u.stuff.children;
			if (k->ni_idlist_len != 3 ||
			    k->ni_idlist_val[0] != first.object ||
			    k->ni_idlist_val[1] != alice->object ||
			    k->ni_idlist_val[2] != nameless.object)
				unexpected("children_where0", "want children=%u,%u,%u",
				    first.object, alice->object, nameless.object);
		}
		xdr_free((xdrproc_t)xdr_ni_children_res, (char *)chr);
	}
	da.parent = *people;
	da.child = first;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_first", ir, NI_OK, people, 1);

	/* CREATEPROP at index 1 */
	cpa.dir = *alice;
	cpa.prop = mkprop("inserted", 1, v_ins);
	cpa.where = 1;
	ir = ni_createprop_2(cpa, cl);
	chk_idres(cl, "CREATEPROP", "createprop_where1", ir, NI_OK, alice, 1);
	nr = ni_listprops_2(*alice, cl);
	if (nr == NULL)
		rpc_failed(cl, "LISTPROPS", "listprops_where1");
	else {
		char b[512] = "";
		ni_proplist tmp;
		begin("LISTPROPS", "listprops_where1");
		printf(" rpc=ok status=%d", (int)nr->status);
		if (nr->status == NI_OK) {
			ni_property one;
			out_namelist("names", &nr->ni_namelist_res_u.stuff.values);
			one = mkprop("n", 0, NULL);
			one.values = nr->ni_namelist_res_u.stuff.values;
			tmp = mkpl(1, &one);
			render_proplist(&tmp, b, sizeof b);
		}
		end_line();
		if (status_only("listprops_where1", (int)nr->status, NI_OK) ==
		    NI_OK && strcmp(b, "n:[name,inserted,uid,shell]") != 0)
			unexpected("listprops_where1",
			    "want names=[name,inserted,uid,shell]");
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}
	pa.dir = *alice;
	pa.prop_index = 1;
	ir = ni_destroyprop_2(pa, cl);
	chk_idres(cl, "DESTROYPROP", "destroyprop_where1", ir, NI_OK, alice, 1);
}

/*
 * Multi-fragment records (spec section 1.3): a second TCP connection with
 * the buffer sizes of the original NeXT library (1024-byte send, 512-byte
 * receive), so a ~5 KB CREATEPROP call is sent as several record
 * fragments and the READPROP reply is read back through a small buffer.
 */
#define BIG_NVALS 48
#define BIG_VLEN  100

static void
fragment_block(ni_id *alice)
{
	static char vals[BIG_NVALS][BIG_VLEN + 1];
	char *vp[BIG_NVALS];
	ni_createprop_args cpa;
	ni_prop_args pa;
	ni_namelist_res *nr;
	ni_id_res *ir;
	CLIENT *small;
	int i, match;
	u_int bytes = 0;

	small = mk_client(1, 1, NI_PROG, NI_VERS, 1024, 512);
	if (small == NULL) {
		unexpected("fragments", "cannot open the small-buffer connection");
		return;
	}
	for (i = 0; i < BIG_NVALS; i++) {
		memset(vals[i], 'a' + i % 26, BIG_VLEN);
		snprintf(vals[i], 8, "v%02d-", i);
		vals[i][strlen(vals[i])] = 'x';
		vals[i][BIG_VLEN] = '\0';
		vp[i] = vals[i];
		bytes += BIG_VLEN;
	}
	cpa.dir = *alice;
	cpa.prop = mkprop("bigprop", BIG_NVALS, vp);
	cpa.where = NI_INDEX_NULL;
	ir = ni_createprop_2(cpa, small);
	chk_idres(small, "CREATEPROP", "createprop_big", ir, NI_OK, alice, 1);

	pa.dir = *alice;
	pa.prop_index = 3;
	nr = ni_readprop_2(pa, small);
	if (nr == NULL)
		rpc_failed(small, "READPROP", "readprop_big");
	else {
		begin("READPROP", "readprop_big");
		printf(" rpc=ok index=3 status=%d", (int)nr->status);
		match = 0;
		if (nr->status == NI_OK) {
			ni_namelist *n = &nr->ni_namelist_res_u.stuff.values;
			match = n->ni_namelist_len == BIG_NVALS;
			for (i = 0; match && i < BIG_NVALS; i++)
				match = strcmp(n->ni_namelist_val[i], vals[i]) == 0;
			printf(" nvalues=%u valuebytes=%u match=%d",
			    n->ni_namelist_len, bytes, match);
		}
		end_line();
		if (status_only("readprop_big", (int)nr->status, NI_OK) == NI_OK &&
		    !match)
			unexpected("readprop_big", "values differ from those written");
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	pa.dir = *alice;
	pa.prop_index = 3;
	ir = ni_destroyprop_2(pa, small);
	chk_idres(small, "DESTROYPROP", "destroyprop_big", ir, NI_OK, alice, 1);
	clnt_destroy(small);
}

static void
full_scenario(CLIENT *cl)
{
	ni_id people, alice, nameless, stale;
	ni_property pp[4];
	char *v_people[] = { "people" };
	char *v_alice[] = { "alice" };
	char *v_501[] = { "501" };
	char *v_502[] = { "502" };
	char *v_sh[] = { "/bin/sh" };
	char *v_home1[] = { "/Users/alice" };
	char *v_home2[] = { "/home/alice" };
	ni_id_res *ir;
	ni_children_res *chr;
	ni_lookup_res *lr;
	ni_list_res *li;
	ni_namelist_res *nr;
	ni_readname_res *rn;
	ni_listall_res *la;
	ni_proplist_res *rr;
	ni_lookup_args lka;
	ni_name_args na;
	ni_proplist_stuff ws;
	ni_createprop_args cpa;
	ni_prop_args pa;
	ni_writeprop_args wpa;
	ni_propname_args pna;
	ni_createname_args cna;
	ni_nameindex_args nia;
	ni_writename_args wna;
	ni_destroy_args da;
	u_int i;

	/* refresh root */
	ir = ni_self_2(mkid(0, 0), cl);
	if (ir != NULL && ir->status == NI_OK)
		root_id = ir->ni_id_res_u.id;

	/* --- CREATE /people, /people/alice, /people/<nameless> --- */
	pp[0] = mkprop("name", 1, v_people);
	people = create_child(cl, "create_people", &root_id, mkpl(1, pp),
	    NI_INDEX_NULL);

	pp[0] = mkprop("name", 1, v_alice);
	pp[1] = mkprop("uid", 1, v_501);
	alice = create_child(cl, "create_alice", &people, mkpl(2, pp),
	    NI_INDEX_NULL);

	/* a child whose only "name" property is empty: LIST must report
	 * it with absent names */
	pp[0] = mkprop("name", 0, NULL);
	pp[1] = mkprop("uid", 1, v_502);
	nameless = create_child(cl, "create_nameless", &people, mkpl(2, pp),
	    NI_INDEX_NULL);

	ir = ni_self_2(alice, cl);
	chk_idres(cl, "SELF", "self_alice", ir, NI_OK, &alice, 0);

	ir = ni_self_2(people, cl);
	chk_idres(cl, "SELF", "self_people", ir, NI_OK, &people, 0);

	print_read(cl, "read_alice", alice, "name:[alice];uid:[501]");

	/* --- WRITE: replace the whole proplist --- */
	pp[0] = mkprop("name", 1, v_alice);
	pp[1] = mkprop("uid", 1, v_501);
	pp[2] = mkprop("shell", 1, v_sh);
	ws.id = alice;
	ws.props = mkpl(3, pp);
	ir = ni_write_2(ws, cl);
	chk_idres(cl, "WRITE", "write_alice", ir, NI_OK, &alice, 1);
	print_read(cl, "read_alice_written", alice,
	    "name:[alice];uid:[501];shell:[/bin/sh]");

	/* --- CHILDREN / LOOKUP / LIST --- */
	chr = ni_children_2(people, cl);
	if (chr == NULL)
		rpc_failed(cl, "CHILDREN", "children_people");
	else {
		begin("CHILDREN", "children_people");
		printf(" rpc=ok status=%d", (int)chr->status);
		if (chr->status == NI_OK) {
			out_idlist("children", &chr->ni_children_res_u.stuff.children);
			out_id("self", chr->ni_children_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("children_people", (int)chr->status, NI_OK) ==
		    NI_OK) {
			ni_idlist *k = &chr->ni_children_res_u.stuff.children;
			if (k->ni_idlist_len != 2 ||
			    k->ni_idlist_val[0] != alice.object ||
			    k->ni_idlist_val[1] != nameless.object)
				unexpected("children_people", "want children=%u,%u",
				    alice.object, nameless.object);
		}
		xdr_free((xdrproc_t)xdr_ni_children_res, (char *)chr);
	}

	lka.dir = mkid(people.object, 0);  /* instance ignored for reads */
	lka.key = "name";
	lka.value = "alice";
	lr = ni_lookup_2(lka, cl);
	if (lr == NULL)
		rpc_failed(cl, "LOOKUP", "lookup_alice");
	else {
		begin("LOOKUP", "lookup_alice");
		printf(" rpc=ok status=%d", (int)lr->status);
		if (lr->status == NI_OK) {
			out_idlist("ids", &lr->ni_lookup_res_u.stuff.ids);
			out_id("self", lr->ni_lookup_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("lookup_alice", (int)lr->status, NI_OK) == NI_OK) {
			ni_lookup_stuff *s = &lr->ni_lookup_res_u.stuff;
			if (s->ids.ni_idlist_len != 1 ||
			    s->ids.ni_idlist_val[0] != alice.object)
				unexpected("lookup_alice", "want ids=%u", alice.object);
			if (s->self_id.object != people.object ||
			    s->self_id.instance != people.instance)
				unexpected("lookup_alice", "want self=%u,%u",
				    people.object, people.instance);
		}
		xdr_free((xdrproc_t)xdr_ni_lookup_res, (char *)lr);
	}

	lka.key = "uid";
	lka.value = "502";
	lr = ni_lookup_2(lka, cl);
	if (lr == NULL)
		rpc_failed(cl, "LOOKUP", "lookup_uid502");
	else {
		begin("LOOKUP", "lookup_uid502");
		printf(" rpc=ok status=%d", (int)lr->status);
		if (lr->status == NI_OK)
			out_idlist("ids", &lr->ni_lookup_res_u.stuff.ids);
		end_line();
		if (status_only("lookup_uid502", (int)lr->status, NI_OK) == NI_OK &&
		    (lr->ni_lookup_res_u.stuff.ids.ni_idlist_len != 1 ||
		    lr->ni_lookup_res_u.stuff.ids.ni_idlist_val[0] !=
		    nameless.object))
			unexpected("lookup_uid502", "want ids=%u", nameless.object);
		xdr_free((xdrproc_t)xdr_ni_lookup_res, (char *)lr);
	}

	lka.key = "name";
	lka.value = "nobody-here";
	lr = ni_lookup_2(lka, cl);
	if (lr == NULL)
		rpc_failed(cl, "LOOKUP", "lookup_missing");
	else {
		begin("LOOKUP", "lookup_missing");
		printf(" rpc=ok status=%d", (int)lr->status);
		end_line();
		status_only("lookup_missing", (int)lr->status, NI_NODIR);
		xdr_free((xdrproc_t)xdr_ni_lookup_res, (char *)lr);
	}

	na.dir = people;
	na.name = "name";
	li = ni_list_2(na, cl);
	if (li == NULL)
		rpc_failed(cl, "LIST", "list_people");
	else {
		begin("LIST", "list_people");
		printf(" rpc=ok status=%d", (int)li->status);
		if (li->status == NI_OK) {
			ni_entrylist *el = &li->ni_list_res_u.stuff.entries;
			printf(" entries=");
			for (i = 0; i < el->ni_entrylist_len; i++) {
				printf(i ? ";%u:" : "%u:", el->ni_entrylist_val[i].id);
				if (el->ni_entrylist_val[i].names == NULL)
					putchar('-');
				else
					out_namelist_body(el->ni_entrylist_val[i].names);
			}
			out_id("self", li->ni_list_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("list_people", (int)li->status, NI_OK) == NI_OK) {
			ni_entrylist *el = &li->ni_list_res_u.stuff.entries;
			if (el->ni_entrylist_len != 2 ||
			    el->ni_entrylist_val[0].id != alice.object ||
			    el->ni_entrylist_val[0].names == NULL ||
			    el->ni_entrylist_val[0].names->ni_namelist_len != 1 ||
			    strcmp(el->ni_entrylist_val[0].names->ni_namelist_val[0],
			    "alice") != 0 ||
			    el->ni_entrylist_val[1].id != nameless.object ||
			    el->ni_entrylist_val[1].names != NULL)
				unexpected("list_people",
				    "want entries=%u:[alice];%u:-", alice.object,
				    nameless.object);
		}
		xdr_free((xdrproc_t)xdr_ni_list_res, (char *)li);
	}

	where_block(cl, &people, &alice, nameless);

	/* --- property procedures on alice --- */
	cpa.dir = alice;
	cpa.prop = mkprop("home", 1, v_home1);
	cpa.where = NI_INDEX_NULL;
	ir = ni_createprop_2(cpa, cl);
	chk_idres(cl, "CREATEPROP", "createprop_alice", ir, NI_OK, &alice, 1);

	nr = ni_listprops_2(mkid(alice.object, 0), cl);
	if (nr == NULL)
		rpc_failed(cl, "LISTPROPS", "listprops_alice");
	else {
		begin("LISTPROPS", "listprops_alice");
		printf(" rpc=ok status=%d", (int)nr->status);
		if (nr->status == NI_OK) {
			out_namelist("names", &nr->ni_namelist_res_u.stuff.values);
			out_id("self", nr->ni_namelist_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("listprops_alice", (int)nr->status, NI_OK) == NI_OK) {
			ni_namelist *n = &nr->ni_namelist_res_u.stuff.values;
			if (n->ni_namelist_len != 4 ||
			    strcmp(n->ni_namelist_val[3], "home") != 0)
				unexpected("listprops_alice",
				    "want names=[name,uid,shell,home]");
			if (nr->ni_namelist_res_u.stuff.self_id.instance !=
			    alice.instance)
				unexpected("listprops_alice", "self instance %u want %u",
				    nr->ni_namelist_res_u.stuff.self_id.instance,
				    alice.instance);
		}
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	pa.dir = alice;
	pa.prop_index = 3;
	nr = ni_readprop_2(pa, cl);
	if (nr == NULL)
		rpc_failed(cl, "READPROP", "readprop_alice");
	else {
		begin("READPROP", "readprop_alice");
		printf(" rpc=ok index=3 status=%d", (int)nr->status);
		if (nr->status == NI_OK) {
			out_namelist("values", &nr->ni_namelist_res_u.stuff.values);
			out_id("self", nr->ni_namelist_res_u.stuff.self_id);
		}
		end_line();
		if (status_only("readprop_alice", (int)nr->status, NI_OK) == NI_OK) {
			ni_namelist *n = &nr->ni_namelist_res_u.stuff.values;
			if (n->ni_namelist_len != 1 ||
			    strcmp(n->ni_namelist_val[0], "/Users/alice") != 0)
				unexpected("readprop_alice", "want values=[/Users/alice]");
		}
		xdr_free((xdrproc_t)xdr_ni_namelist_res, (char *)nr);
	}

	wpa.dir = alice;
	wpa.prop_index = 3;
	wpa.values = mknl(1, v_home2);
	ir = ni_writeprop_2(wpa, cl);
	chk_idres(cl, "WRITEPROP", "writeprop_alice", ir, NI_OK, &alice, 1);

	wpa.dir = alice;
	wpa.prop_index = 42;
	ir = ni_writeprop_2(wpa, cl);
	chk_idres(cl, "WRITEPROP", "writeprop_noprop", ir, NI_NOPROP, NULL, 0);

	pna.dir = alice;
	pna.prop_index = 3;
	pna.name = "homedir";
	ir = ni_renameprop_2(pna, cl);
	chk_idres(cl, "RENAMEPROP", "renameprop_alice", ir, NI_OK, &alice, 1);

	print_read(cl, "read_alice_props", alice,
	    "name:[alice];uid:[501];shell:[/bin/sh];homedir:[/home/alice]");

	cna.dir = alice;
	cna.prop_index = 0;
	cna.name = "alias1";
	cna.where = NI_INDEX_NULL;
	ir = ni_createname_2(cna, cl);
	chk_idres(cl, "CREATENAME", "createname_alice", ir, NI_OK, &alice, 1);

	nia.dir = alice;
	nia.prop_index = 0;
	nia.name_index = 1;
	rn = ni_readname_2(nia, cl);
	if (rn == NULL)
		rpc_failed(cl, "READNAME", "readname_alice");
	else {
		begin("READNAME", "readname_alice");
		printf(" rpc=ok status=%d", (int)rn->status);
		if (rn->status == NI_OK) {
			out_id("id", rn->ni_readname_res_u.stuff.id);
			printf(" name=");
			out_str(rn->ni_readname_res_u.stuff.name);
		}
		end_line();
		if (status_only("readname_alice", (int)rn->status, NI_OK) == NI_OK &&
		    strcmp(rn->ni_readname_res_u.stuff.name, "alias1") != 0)
			unexpected("readname_alice", "want name=alias1");
		xdr_free((xdrproc_t)xdr_ni_readname_res, (char *)rn);
	}

	wna.dir = alice;
	wna.prop_index = 0;
	wna.name_index = 1;
	wna.name = "alias2";
	ir = ni_writename_2(wna, cl);
	chk_idres(cl, "WRITENAME", "writename_alice", ir, NI_OK, &alice, 1);

	wna.dir = alice;     /* current instance: only the index is wrong */
	wna.name_index = 7;
	ir = ni_writename_2(wna, cl);
	chk_idres(cl, "WRITENAME", "writename_noname", ir, NI_NONAME, NULL, 0);

	print_read(cl, "read_alice_names", alice,
	    "name:[alice,alias2];uid:[501];shell:[/bin/sh];homedir:[/home/alice]");

	nia.dir = alice;
	nia.prop_index = 0;
	nia.name_index = 1;
	ir = ni_destroyname_2(nia, cl);
	chk_idres(cl, "DESTROYNAME", "destroyname_alice", ir, NI_OK, &alice, 1);

	pa.dir = alice;
	pa.prop_index = 3;
	ir = ni_destroyprop_2(pa, cl);
	chk_idres(cl, "DESTROYPROP", "destroyprop_alice", ir, NI_OK, &alice, 1);

	pa.dir = alice;      /* current instance: only the index is wrong */
	pa.prop_index = 3;   /* now out of range */
	ir = ni_destroyprop_2(pa, cl);
	chk_idres(cl, "DESTROYPROP", "destroyprop_noprop", ir, NI_NOPROP, NULL, 0);

	fragment_block(&alice);

	print_read(cl, "read_alice_final", alice,
	    "name:[alice];uid:[501];shell:[/bin/sh]");

	/* --- LISTALL / LOOKUPREAD --- */
	la = ni_listall_2(people, cl);
	if (la == NULL)
		rpc_failed(cl, "LISTALL", "listall_people");
	else {
		char b0[1024] = "", b1[1024] = "";
		begin("LISTALL", "listall_people");
		printf(" rpc=ok status=%d", (int)la->status);
		if (la->status == NI_OK) {
			ni_proplist_list *pll = &la->ni_listall_res_u.stuff.entries;
			out_id("self", la->ni_listall_res_u.stuff.self_id);
			printf(" count=%u", pll->ni_proplist_list_len);
			end_line();
			for (i = 0; i < pll->ni_proplist_list_len; i++) {
				begin("LISTALLENTRY", "listall_people");
				printf(" index=%u", i);
				out_proplist("props", &pll->ni_proplist_list_val[i]);
				end_line();
			}
			if (pll->ni_proplist_list_len == 2) {
				render_proplist(&pll->ni_proplist_list_val[0], b0, sizeof b0);
				render_proplist(&pll->ni_proplist_list_val[1], b1, sizeof b1);
			}
		} else
			end_line();
		if (status_only("listall_people", (int)la->status, NI_OK) == NI_OK &&
		    (strcmp(b0, "name:[alice];uid:[501];shell:[/bin/sh]") != 0 ||
		    strcmp(b1, "name:[];uid:[502]") != 0))
			unexpected("listall_people", "entries differ from the "
			    "children's proplists");
		xdr_free((xdrproc_t)xdr_ni_listall_res, (char *)la);
	}

	lka.dir = mkid(people.object, 0);
	lka.key = "name";
	lka.value = "alice";
	rr = ni_lookupread_2(lka, cl);
	if (rr == NULL)
		rpc_failed(cl, "LOOKUPREAD", "lookupread_alice");
	else {
		char b[1024] = "";
		begin("LOOKUPREAD", "lookupread_alice");
		printf(" rpc=ok status=%d", (int)rr->status);
		if (rr->status == NI_OK) {
			out_id("id", rr->ni_proplist_res_u.stuff.id);
			out_proplist("props", &rr->ni_proplist_res_u.stuff.props);
			render_proplist(&rr->ni_proplist_res_u.stuff.props, b, sizeof b);
		}
		end_line();
		if (status_only("lookupread_alice", (int)rr->status, NI_OK) ==
		    NI_OK) {
			if (rr->ni_proplist_res_u.stuff.id.object != people.object ||
			    rr->ni_proplist_res_u.stuff.id.instance != people.instance)
				unexpected("lookupread_alice",
				    "id must be the searched directory %u,%u",
				    people.object, people.instance);
			if (strcmp(b, "name:[alice];uid:[501];shell:[/bin/sh]") != 0)
				unexpected("lookupread_alice", "props differ");
		}
		xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)rr);
	}

	lka.value = "nobody-here";
	rr = ni_lookupread_2(lka, cl);
	if (rr == NULL)
		rpc_failed(cl, "LOOKUPREAD", "lookupread_missing");
	else {
		begin("LOOKUPREAD", "lookupread_missing");
		printf(" rpc=ok status=%d", (int)rr->status);
		end_line();
		status_only("lookupread_missing", (int)rr->status, NI_NODIR);
		xdr_free((xdrproc_t)xdr_ni_proplist_res, (char *)rr);
	}

	/* --- replication procedures with the subtree present --- */
	replication_part(cl, "populated");

	/* --- stale writes --- */
	stale = mkid(alice.object, alice.instance - 1);
	pp[0] = mkprop("name", 1, v_alice);
	ws.id = stale;
	ws.props = mkpl(1, pp);
	ir = ni_write_2(ws, cl);
	chk_idres(cl, "WRITE", "write_stale", ir, NI_STALE, NULL, 0);

	cpa.dir = stale;
	cpa.prop = mkprop("x", 0, NULL);
	cpa.where = 0;
	ir = ni_createprop_2(cpa, cl);
	chk_idres(cl, "CREATEPROP", "createprop_stale", ir, NI_STALE, NULL, 0);

	da.parent = people;
	da.child = stale;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_stale_child", ir, NI_STALE, NULL, 0);

	da.parent = mkid(people.object, people.instance + 5);
	da.child = alice;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_stale_parent", ir, NI_STALE, NULL, 0);

	/* --- DESTROY error cases --- */
	da.parent = root_id;
	da.child = people;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_notempty", ir, NI_NOTEMPTY, NULL, 0);

	da.parent = root_id;
	da.child = alice;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_unrelated", ir, NI_UNRELATED, NULL, 0);

	/* nothing above may have modified anything */
	ir = ni_self_2(alice, cl);
	chk_idres(cl, "SELF", "self_alice_after_errors", ir, NI_OK, &alice, 0);
	ir = ni_self_2(people, cl);
	chk_idres(cl, "SELF", "self_people_after_errors", ir, NI_OK, &people, 0);

	/* --- DESTROY for real --- */
	da.parent = people;
	da.child = alice;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_alice", ir, NI_OK, &people, 1);

	da.parent = people;
	da.child = nameless;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_nameless", ir, NI_OK, &people, 1);

	da.parent = root_id;
	da.child = people;
	ir = ni_destroy_2(da, cl);
	chk_idres(cl, "DESTROY", "destroy_people", ir, NI_OK, &root_id, 1);

	ir = ni_self_2(alice, cl);
	if (ir == NULL)
		rpc_failed(cl, "SELF", "self_destroyed");
	else {
		begin("SELF", "self_destroyed");
		printf(" rpc=ok status=%d", (int)ir->status);
		end_line();
		if (ir->status == NI_OK)
			unexpected("self_destroyed", "destroyed directory still found");
	}

	replication_part(cl, "cleaned");
}

/* ------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr, "usage: niclient [-u] HOST PORT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int opt, anon = 0;
	CLIENT *cl;
	unsigned long ck;

	while ((opt = getopt(argc, argv, "u")) != -1) {
		switch (opt) {
		case 'u':
			anon = 1;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	memset(&server, 0, sizeof(server));
	server.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[optind], &server.sin_addr) != 1)
		usage();
	server.sin_port = htons((unsigned short)atoi(argv[optind + 1]));

	out = stdout;
	printf("SCENARIO mode=%s\n", anon ? "anon" : "full");
	fflush(stdout);

	cl = mk_client(1, !anon, NI_PROG, NI_VERS, 0, 0);
	if (cl == NULL)
		return 2;

	do_ping(cl, "ping_tcp");
	udp_part(!anon);
	do_statistics(cl, "stats", 1, &ck);
	read_root_part(cl);

	if (do_bind(cl, "bind_tcp") != (int)RPC_SYSTEMERROR) {
		/* no answer (or a broken connection): start a fresh one */
		clnt_destroy(cl);
		cl = mk_client(1, !anon, NI_PROG, NI_VERS, 0, 0);
		if (cl == NULL)
			return 2;
	}

	if (anon) {
		anon_write_probes(cl);
		replication_part(cl, "anon");
	} else {
		full_scenario(cl);
	}

	do_proc(cl, "proc29", 29);
	do_proc(cl, "proc_huge", 0x7fffffff);
	do_garbage(cl);
	do_vers3(!anon);
	do_otherprog(!anon);

	clnt_destroy(cl);
	printf("DONE failures=%d\n", failures);
	return failures ? 1 : 0;
}
