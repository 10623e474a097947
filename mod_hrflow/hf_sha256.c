/*
 * hf_sha256.c - SHA-256 and HMAC-SHA256 (RFC 2104) over OpenSSL's SHA256_*.
 *
 * OpenSSL 3 marks these functions deprecated in favour of EVP, but the first
 * EVP call of a process loads openssl.cnf and builds the provider tables:
 * about 1 ms, which a CGI pays on every request (hrflow.cgi ran at 0.4 times
 * a trivial CGI's rate with HMAC()).  The hash itself is the same code.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "hrflow.h"

#define BLOCK 64   /* SHA-256 block size, the HMAC key pad length */

void hf_sha256(const void *data, apr_size_t len, unsigned char out[32])
{
    SHA256_CTX c;

    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof c);
}

void hf_sha256_hmac(const char *key, const void *data, apr_size_t len,
                    unsigned char mac[32])
{
    unsigned char k[BLOCK], pad[BLOCK], inner[32];
    apr_size_t klen = strlen(key), i;
    SHA256_CTX c;

    memset(k, 0, sizeof k);
    if (klen > BLOCK)
        hf_sha256(key, klen, k);           /* long keys are hashed first */
    else
        memcpy(k, key, klen);
    for (i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    SHA256_Init(&c);
    SHA256_Update(&c, pad, BLOCK);
    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    for (i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    SHA256_Init(&c);
    SHA256_Update(&c, pad, BLOCK);
    SHA256_Update(&c, inner, sizeof inner);
    SHA256_Final(mac, &c);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(&c, sizeof c);
}
