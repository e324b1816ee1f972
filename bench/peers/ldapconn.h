/*
 * ldapconn.h -- the connection the LDAP backends of the bench/run.py load client share
 * (ldapload.c, ldapbind.c): LDAPv3 to SCHEME://HOST:PORT/, opened by an anonymous simple
 * bind (which also makes the TLS session of an ldaps:// connection, reused by every call).
 */
#ifndef LDAPCONN_H
#define LDAPCONN_H

#include <stdio.h>
#include <ldap.h>

static inline LDAP *ldap_open_anonymous(const char *scheme, const char *host, int port,
					int verbose)
{
	char uri[256];
	snprintf(uri, sizeof uri, "%s://%s:%d/", scheme, host, port);
	LDAP *ld = NULL;
	if (ldap_initialize(&ld, uri) != LDAP_SUCCESS)
		return NULL;
	int v3 = LDAP_VERSION3;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	struct berval cred = {0, NULL};
	int rc = ldap_sasl_bind_s(ld, NULL, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	if (rc != LDAP_SUCCESS) {
		if (verbose)
			fprintf(stderr, "%s bind: %s\n", scheme, ldap_err2string(rc));
		ldap_unbind_ext_s(ld, NULL, NULL);
		return NULL;
	}
	return ld;
}

#endif
