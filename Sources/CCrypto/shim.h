#ifndef CCRYPTO_SHIM_H
#define CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>

/* BIO_get_mem_data is a macro. */
static inline long ccrypto_bio_get_mem_data(BIO *bio, char **out) { return BIO_get_mem_data(bio, out); }
#endif
