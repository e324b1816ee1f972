/*
 * ldapbind.c -- LDAP simple binds over TLS, a backend of the bench/run.py load client
 * (see loadcore.h): the bind rate of issue 22's "Measure".
 *
 * libldap (OpenLDAP), LDAPv3 over LDAPS.  Each connection makes its TLS session once
 * (an anonymous bind opens it) and then reuses it for every call: one call is one simple
 * bind as uid=NAME,BASE with PASSWORD, checked to succeed (the server verifies the crypt
 * string it holds).  The certificate is not checked (a test certificate on loopback).
 *
 * Backend args: BASE PASSWORD.  The port given is the server's LDAPS port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ldap.h>

#include "ldapconn.h"
#include "loadcore.h"

static char *g_base;
static char *g_password;

int backend_init(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "ldapbind: backend args: BASE PASSWORD\n");
		return 1;
	}
	g_base = argv[0];
	g_password = argv[1];
	int never = LDAP_OPT_X_TLS_NEVER;
	ldap_set_option(NULL, LDAP_OPT_X_TLS_REQUIRE_CERT, &never);
	return 0;
}

void *backend_connect(const char *host, int port, int verbose)
{
	return ldap_open_anonymous("ldaps", host, port, verbose);
}

int backend_call(void *conn, const char *name)
{
	char dn[256];
	snprintf(dn, sizeof dn, "uid=%s,%s", name, g_base);
	struct berval cred = {strlen(g_password), g_password};
	int rc = ldap_sasl_bind_s((LDAP *)conn, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	return rc != LDAP_SUCCESS;
}

void backend_close(void *conn)
{
	ldap_unbind_ext_s((LDAP *)conn, NULL, NULL);
}
