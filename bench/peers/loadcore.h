/*
 * loadcore.h -- the part every load client of bench/run.py shares.
 *
 * A backend (niload.c, ypload.c, ldapload.c) supplies four functions; loadcore.c
 * supplies main(): K threads, each with its own connection, each looking up random
 * user names ("user<k>", k uniform in [0, users)) one call at a time for a fixed
 * time, recording every call's latency.
 *
 *   PROG load  HOST PORT USERS SECONDS THREADS [backend args...]
 *   PROG probe HOST PORT USERS TIMEOUT 1       [backend args...]
 *
 * "load" prints one JSON line: calls, errors, seconds, rate (calls/s summed over the
 * threads), p50_us, p99_us, p999_us, max_us.  "probe" connects and calls again every
 * 5 ms until one lookup answers correctly (exit 0) or TIMEOUT seconds pass (exit 1):
 * bench/run.py times a server's start until its first answer with it.
 */
#ifndef LOADCORE_H
#define LOADCORE_H

/* Parse the backend's own arguments (argv after THREADS); 0 on success. */
int backend_init(int argc, char **argv);
/* One connection to HOST:PORT (or NULL, with a message on stderr when verbose). */
void *backend_connect(const char *host, int port, int verbose);
/* Look up user "name"; 0 when the answer is that user's record, else nonzero. */
int backend_call(void *conn, const char *name);
void backend_close(void *conn);

#endif
