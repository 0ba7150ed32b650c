#ifndef CLIBSSH2_SHIM_H
#define CLIBSSH2_SHIM_H
/* libssh2 wrapped for Swift. Only ApplianceSSH imports this module (`internal import CLibSSH2`).
 * Many libssh2 entry points are function-like macros that Swift cannot call; the cssh2_* inline
 * functions below wrap them, and the cssh2_* constants expose the macro constants with fixed types. */
#include <libssh2.h>
#include <string.h>

/* Return codes and flags. */
static inline int cssh2_error_none(void) { return LIBSSH2_ERROR_NONE; }
static inline int cssh2_error_eagain(void) { return LIBSSH2_ERROR_EAGAIN; }
static inline int cssh2_session_block_inbound(void) { return LIBSSH2_SESSION_BLOCK_INBOUND; }
static inline int cssh2_session_block_outbound(void) { return LIBSSH2_SESSION_BLOCK_OUTBOUND; }
static inline int cssh2_hostkey_hash_sha256(void) { return LIBSSH2_HOSTKEY_HASH_SHA256; }
static inline unsigned int cssh2_channel_window_default(void) { return LIBSSH2_CHANNEL_WINDOW_DEFAULT; }
static inline unsigned int cssh2_channel_packet_default(void) { return LIBSSH2_CHANNEL_PACKET_DEFAULT; }

/* Sessions. */
static inline LIBSSH2_SESSION *cssh2_session_init(void) { return libssh2_session_init_ex(NULL, NULL, NULL, NULL); }
static inline int cssh2_session_disconnect(LIBSSH2_SESSION *s, const char *reason) {
    return libssh2_session_disconnect_ex(s, SSH_DISCONNECT_BY_APPLICATION, reason, "");
}
/* Reads the last error without copying (want_buf = 0): the pointer stays valid until the next call. */
static inline int cssh2_session_last_error(LIBSSH2_SESSION *s, const char **msg) {
    char *m = NULL;
    int len = 0;
    int rc = libssh2_session_last_error(s, &m, &len, 0);
    *msg = m;
    return rc;
}

/* Authentication. */
static inline int cssh2_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user,
                                                    const char *pub, const char *priv, const char *pass) {
    return libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned int)strlen(user), pub, priv, pass);
}

/* Channels. */
static inline LIBSSH2_CHANNEL *cssh2_channel_open_session(LIBSSH2_SESSION *s, unsigned int window, unsigned int packet) {
    return libssh2_channel_open_ex(s, "session", sizeof("session") - 1, window, packet, NULL, 0);
}
static inline LIBSSH2_CHANNEL *cssh2_channel_direct_tcpip(LIBSSH2_SESSION *s, const char *host, int port) {
    return libssh2_channel_direct_tcpip_ex(s, host, port, "127.0.0.1", 22);
}
static inline int cssh2_channel_exec(LIBSSH2_CHANNEL *c, const char *command) {
    return libssh2_channel_process_startup(c, "exec", sizeof("exec") - 1, command, (unsigned int)strlen(command));
}
static inline ssize_t cssh2_channel_read(LIBSSH2_CHANNEL *c, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, 0, buf, len);
}
static inline ssize_t cssh2_channel_read_stderr(LIBSSH2_CHANNEL *c, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, SSH_EXTENDED_DATA_STDERR, buf, len);
}
static inline ssize_t cssh2_channel_write(LIBSSH2_CHANNEL *c, const char *buf, size_t len) {
    return libssh2_channel_write_ex(c, 0, buf, len);
}
static inline int cssh2_channel_get_exit_signal(LIBSSH2_CHANNEL *c, char **signal, size_t *signal_len) {
    return libssh2_channel_get_exit_signal(c, signal, signal_len, NULL, NULL, NULL, NULL);
}

/* Known hosts. */
static inline int cssh2_knownhost_readfile(LIBSSH2_KNOWNHOSTS *h, const char *path) {
    return libssh2_knownhost_readfile(h, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
}
/* Maps a LIBSSH2_HOSTKEY_TYPE_* to the LIBSSH2_KNOWNHOST_KEY_* bits (0: unknown). */
static inline int cssh2_knownhost_key_bits(int hostkey_type) {
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return 0;
    }
}
/* key_bits 0 matches entries of any key type; otherwise only entries of that type are compared. */
static inline int cssh2_knownhost_checkp(LIBSSH2_KNOWNHOSTS *h, const char *host, int port,
                                         const char *key, size_t keylen, int key_bits,
                                         struct libssh2_knownhost **found) {
    return libssh2_knownhost_checkp(h, host, port, key, keylen,
                                    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_bits, found);
}
static inline int cssh2_knownhost_check_match(void) { return LIBSSH2_KNOWNHOST_CHECK_MATCH; }
static inline int cssh2_knownhost_check_mismatch(void) { return LIBSSH2_KNOWNHOST_CHECK_MISMATCH; }
static inline int cssh2_knownhost_check_notfound(void) { return LIBSSH2_KNOWNHOST_CHECK_NOTFOUND; }

#endif
