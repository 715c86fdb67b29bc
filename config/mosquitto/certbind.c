/*
 * certbind: a Mosquitto 2.0 plugin that ties a TLS client certificate to the MQTT login.
 *
 * Why: Mosquitto 2.0 checks a client EITHER by user name + password (password_file) OR, with
 * use_identity_as_username, by certificate alone (the certificate's CN becomes the user name and
 * no password is checked). With mutual TLS (require_certificate true) and a password file, the
 * two are independent: any valid client certificate plus any valid user/password pair gets in,
 * so a stolen "viewer" certificate plus the operator's password logs in as operator. This plugin
 * adds the tie: when a client presents a certificate, its subject CN must equal the CONNECT user
 * name, and the password is still checked by Mosquitto's password_file afterwards.
 *
 * What it does, on every basic-auth check (MOSQ_EVT_BASIC_AUTH: each CONNECT, and again for
 * every connected client when the broker reloads on SIGHUP):
 *   - no client certificate (plain loopback listener, TLS listener without require_certificate,
 *     an offline persistent session on reload): MOSQ_ERR_PLUGIN_DEFER, the password_file decides;
 *   - certificate whose single subject CN equals the user name: MOSQ_ERR_PLUGIN_DEFER, the
 *     password_file decides (so a login needs BOTH the right certificate and the right password);
 *   - certificate without a CN, with more than one CN, with a CN that is not plain text, no user
 *     name, or a user name different from the CN: MOSQ_ERR_AUTH (connection refused, or the client
 *     disconnected on reload), and one warning line in the broker log, e.g.
 *       certbind: refused client 'viewer': certificate CN 'viewer' does not match username 'operator'
 *     (the password is never logged; control characters in names are logged as '?').
 * It never accepts a login by itself, it only refuses more. It relies on Mosquitto 2.0.x running
 * plugin basic-auth callbacks before its own password_file check (src/security.c
 * mosquitto_unpwd_check: plugins are loaded, and register their callbacks, before the
 * password_file callback is registered, also after a reload, and the first callback that does
 * not return MOSQ_ERR_PLUGIN_DEFER decides). The certificate itself was already verified
 * against cafile by the TLS handshake. Listeners with use_identity_as_username or
 * use_subject_as_username skip basic auth altogether, so this plugin has no effect there.
 *
 * Build (needs Debian packages gcc, mosquitto-dev, libmosquitto-dev, libssl-dev):
 *   scripts/build-certbind.sh .build          (or: make certbind; make install-certbind)
 * which runs
 *   gcc -Wall -Wextra -Werror -O2 -fPIC -shared -o mosquitto_certbind.so certbind.c -lcrypto
 *
 * Enable: install it as /usr/local/lib/swapstation/mosquitto_certbind.so (mode 644) and add
 *   plugin /usr/local/lib/swapstation/mosquitto_certbind.so
 * to mosquitto.conf (with per_listener_settings false it applies to every listener). Plugins are
 * loaded only when the broker starts: restart Mosquitto (systemctl restart mosquitto); a reload
 * (SIGHUP) does not load, unload or replace a plugin.
 */

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* Longest name (CN, user name, client id) written to the log; longer ones are cut. */
#define LOG_NAME_MAX 128

static mosquitto_plugin_id_t *plugin_id = NULL;

/* Copy s into buf (size LOG_NAME_MAX + 4) for logging: control characters become '?', and a
 * name longer than LOG_NAME_MAX bytes is cut and ends in "...". */
static const char *log_name(const char *s, char *buf)
{
	size_t i;

	if(s == NULL){
		return "(none)";
	}
	for(i = 0; s[i] != '\0' && i < LOG_NAME_MAX; i++){
		unsigned char c = (unsigned char)s[i];
		buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if(s[i] != '\0'){
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* One warning line: why (when there is no usable CN), or the CN and the user name. */
static void log_refusal(struct mosquitto *client, const char *why, const char *cn, const char *username)
{
	char id_buf[LOG_NAME_MAX + 4], cn_buf[LOG_NAME_MAX + 4], user_buf[LOG_NAME_MAX + 4];
	const char *id = log_name(mosquitto_client_id(client), id_buf);

	if(cn == NULL){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "certbind: refused client '%s': %s", id, why);
	}else if(username == NULL){
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"certbind: refused client '%s': certificate CN '%s' but no username",
				id, log_name(cn, cn_buf));
	}else{
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"certbind: refused client '%s': certificate CN '%s' does not match username '%s'",
				id, log_name(cn, cn_buf), log_name(username, user_buf));
	}
}

/* The certificate's subject CN as a NUL-terminated UTF-8 string (free with OPENSSL_free), or
 * NULL with *why set when there is not exactly one CN or it is not plain text. */
static char *certificate_cn(X509 *cert, const char **why)
{
	X509_NAME *name;
	X509_NAME_ENTRY *entry;
	ASN1_STRING *data;
	unsigned char *utf8 = NULL;
	int idx, len;

	name = X509_get_subject_name(cert);
	idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if(idx < 0){
		*why = "certificate has no CN";
		return NULL;
	}
	if(X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0){
		*why = "certificate has more than one CN";
		return NULL;
	}
	entry = X509_NAME_get_entry(name, idx);
	data = entry ? X509_NAME_ENTRY_get_data(entry) : NULL;
	len = data ? ASN1_STRING_to_UTF8(&utf8, data) : -1;
	if(len <= 0 || utf8 == NULL || strlen((char *)utf8) != (size_t)len){
		/* empty, not convertible, or with an embedded NUL */
		OPENSSL_free(utf8);
		*why = "certificate CN is empty or not plain text";
		return NULL;
	}
	return (char *)utf8;
}

static int basic_auth_callback(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	X509 *cert;
	char *cn;
	const char *why = NULL;
	int rc;

	(void)event;
	(void)userdata;

	/* A new reference (SSL_get_peer_certificate), or NULL when the client has no TLS or sent no
	 * certificate. */
	cert = mosquitto_client_certificate(ed->client);
	if(cert == NULL){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	cn = certificate_cn(cert, &why);
	X509_free(cert);
	if(cn == NULL){
		log_refusal(ed->client, why, NULL, NULL);
		return MOSQ_ERR_AUTH;
	}
	if(ed->username == NULL || strcmp(cn, ed->username) != 0){
		log_refusal(ed->client, NULL, cn, ed->username);
		rc = MOSQ_ERR_AUTH;
	}else{
		rc = MOSQ_ERR_PLUGIN_DEFER; /* the password_file check decides */
	}
	OPENSSL_free(cn);
	return rc;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	int rc;

	(void)userdata;
	(void)options;
	(void)option_count;

	plugin_id = identifier;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, basic_auth_callback, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR, "certbind: could not register the basic-auth callback (%d)", rc);
		return rc;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "certbind: client certificate CN must match the username");
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;

	if(plugin_id != NULL){
		mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, basic_auth_callback, NULL);
		plugin_id = NULL;
	}
	return MOSQ_ERR_SUCCESS;
}
