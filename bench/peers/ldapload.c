/*
 * ldapload.c -- LDAP backend of the bench/run.py load client (see loadcore.h).
 *
 * libldap (OpenLDAP, package libldap-dev), LDAPv3, anonymous.  Each call is one
 * synchronous search, scope one level under BASE, filter (uid=NAME), all attributes,
 * checked to return exactly one entry: the "equality search" of slapd's rows.
 *
 * Backend args: BASE (e.g. ou=users,dc=bench,dc=test) [FILTER], FILTER a printf format
 * with one %s for the name (default "(uid=%s)"; nslcd's is
 * "(&(objectClass=posixAccount)(uid=%s))").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ldap.h>

#include "ldapconn.h"
#include "loadcore.h"

static char *g_base;
static const char *g_filter = "(uid=%s)";

int backend_init(int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "ldapload: backend args: BASE [FILTER]\n");
		return 1;
	}
	g_base = argv[0];
	if (argc >= 2) {
		const char *pct = strstr(argv[1], "%s");
		if (!pct || strchr(pct + 2, '%') || strchr(argv[1], '%') != pct) {
			fprintf(stderr, "ldapload: FILTER needs exactly one %%s\n");
			return 1;
		}
		g_filter = argv[1];
	}
	return 0;
}

void *backend_connect(const char *host, int port, int verbose)
{
	return ldap_open_anonymous("ldap", host, port, verbose);
}

int backend_call(void *conn, const char *name)
{
	char filter[256];
	snprintf(filter, sizeof filter, g_filter, name);
	LDAPMessage *res = NULL;
	struct timeval tv = {60, 0};
	int rc = ldap_search_ext_s((LDAP *)conn, g_base, LDAP_SCOPE_ONELEVEL, filter, NULL, 0,
				   NULL, NULL, &tv, 0, &res);
	int bad = rc != LDAP_SUCCESS || ldap_count_entries((LDAP *)conn, res) != 1;
	if (res)
		ldap_msgfree(res);
	return bad;
}

void backend_close(void *conn)
{
	ldap_unbind_ext_s((LDAP *)conn, NULL, NULL);
}
