/*
 * asherah_django.core._speedups: the per-value work of Session.encrypt / Session.decrypt
 * in one C call each way (CPython C API + OpenSSL libcrypto, nothing else; on OpenSSL 3 the
 * AES-256-GCM provider is called through the public provider interface, see "One AES-256-GCM
 * context" below).
 *
 *   encrypt_record(ik_key: bytes, data: Buffer, created: int | float, parent_meta_json: str) -> str
 *   decrypt_record(ik_key: bytes, record: str, middle_end: int) -> bytes
 *   encrypt_row(ik_key: bytes, data: Buffer) -> tuple[str, str]
 *   decrypt_row(ik_key: bytes, wrapped_drk_b64: str, data_b64: str) -> bytes
 *   canonical_created(record: str, middle: str) -> int;  forget_key, b64encode, b64decode
 *
 * Byte layout of every AES-256-GCM blob, as every Asherah implementation writes it:
 * ciphertext || tag(16) || nonce(12), no AAD. encrypt_row draws a fresh data row key (DRK)
 * and two nonces from the random pools (OpenSSL's DRBGs, see "Random pools"), wraps the DRK
 * under the intermediate key (IK), seals the data under the DRK and returns both blobs as
 * standard padded base64; encrypt_record returns the whole DataRowRecord JSON around them.
 * decrypt_row is the inverse (decrypt_record takes the blobs from a canonical record); it
 * accepts only canonical base64 (RFC 4648 section 4: a multiple of 4 characters, padding
 * only at the end, zero trailing bits), a strict subset of what Python's
 * binascii.a2b_base64(s, strict_mode=True) accepts, with identical output on that subset.
 * Anything else raises Base64Error, and the caller (session.py) then takes its reference
 * Python path, so records are accepted and rejected exactly as before.
 *
 * Contexts and thread safety: two module-level cipher contexts are reused (OpenSSL 3 makes
 * a fresh context and its key schedule cost more than the AES-GCM work on a small value):
 * ik_ctx keeps the key schedule of the last intermediate key used (compared in constant
 * time with the key of each call; forget_key() scrubs it when that key is wiped), and
 * data_ctx gets each fresh data row key. Both are used only while the GIL is held and no
 * Python API is called between a context's init and its final (every Python object is
 * allocated first), and a busy flag sends any re-entrant use to a fresh context. Values of
 * NOGIL_THRESHOLD bytes or more are processed with the GIL released, on contexts of their
 * own (created and freed in the call), into buffers allocated beforehand. A free-threaded
 * Python re-enables the GIL for this module (it does not declare Py_mod_gil).
 *
 * Secrets: data row keys live in stack buffers that are OPENSSL_cleanse()d before the call
 * returns (and, before they are drawn, in the key pool, which wipes each byte it hands out); contexts made for one call are freed, which cleanses their key schedules. data_ctx
 * holds the key schedule of the last data row key until the next call (that key opens only
 * the one value, and the intermediate key that wraps it is in memory anyway). Error messages
 * are fixed strings that never contain key bytes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#endif
#include <openssl/rand.h>

#ifdef FORCE_ERROR
#error "FORCE_ERROR is defined: failing on purpose to test the pure-Python fallback"
#endif

#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "asherah_django.core._speedups needs OpenSSL 1.1.1 or newer"
#endif

#define KEY_SIZE 32
#define NONCE_SIZE 12
#define TAG_SIZE 16
#define OVERHEAD (TAG_SIZE + NONCE_SIZE)
#define WRAPPED_SIZE (KEY_SIZE + OVERHEAD)
/* Blobs up to this size are decoded into / sealed from a stack buffer. */
#define STACK_BUF 2048
/* Values at least this large are processed with the GIL released. */
#define NOGIL_THRESHOLD (32 * 1024)
/* EVP_*Update take an int length: feed at most this much per call. */
#define CHUNK (1 << 30)
/* AES-GCM's own limit, as Go and the Rust core enforce it: (2^32 - 2) blocks of 16 bytes. */
#define GCM_MAX_PLAINTEXT (((long long)UINT32_MAX - 1) * 16)

enum status {
    ST_OK = 0,
    ST_BASE64,   /* not canonical standard padded base64 */
    ST_AUTH,     /* authentication failed or a blob is too short */
    ST_DRK_SIZE, /* the wrapped key opened, but it is not 32 bytes */
    ST_OPENSSL,  /* OpenSSL itself failed (allocation, init) */
    ST_NOMEM,
};

static PyObject *AuthenticationError;
static PyObject *Base64Error;
static EVP_CIPHER *aes_gcm_fetched; /* OpenSSL 3: fetched once, so no implicit fetch per init */
static const EVP_CIPHER *aes_gcm;
/* Only with the GIL held; see the header comment. */
static void *data_ctx; /* cipher_ctx (defined below) */
static int data_ctx_busy;
static void *ik_ctx;
static int ik_ctx_busy;
static int ik_ctx_keyed; /* ik_ctx holds the key schedule of ik_cached */
static unsigned char ik_cached[KEY_SIZE];

/* ------------------------------------------------------------------------------------ */
/* Random pools                                                                         */

/*
 * OpenSSL 3's RAND_bytes costs about 0.7 us per call on a small request (locking, a fork
 * check and a CTR-DRBG generate that re-keys AES each time): more than both AES-GCM
 * operations of a small value together. So the random bytes come from two pools, each
 * refilled with one call when it runs short: data row keys from RAND_priv_bytes (OpenSSL's
 * DRBG for private values), nonces from RAND_bytes. Every byte is handed out once and
 * cleansed from the pool as it is handed out, so the pool holds only bytes that no key or
 * nonce has used yet. A child process must never hand out its parent's bytes (two
 * processes would then share data row keys and nonces): a pthread_atfork child handler,
 * registered when the module is first imported, empties both pools in every child that
 * fork() makes (os.fork, multiprocessing, gunicorn and Celery prefork all fork this way).
 * (A getpid() check per draw would cost a system call, as much as the pool saves.)
 * Used only with the GIL held.
 */
#define POOL_SIZE 4096

struct pool {
    unsigned char bytes[POOL_SIZE];
    size_t next; /* bytes[next:] are unread; POOL_SIZE when empty */
    int (*fill)(unsigned char *, int);
};

static struct pool key_pool = {{0}, POOL_SIZE, RAND_priv_bytes};
static struct pool nonce_pool = {{0}, POOL_SIZE, RAND_bytes};

static void
pool_empty(struct pool *pool)
{
    OPENSSL_cleanse(pool->bytes, sizeof(pool->bytes));
    pool->next = POOL_SIZE;
}

#ifndef _WIN32
static void
pools_empty_in_child(void)
{
    pool_empty(&key_pool);
    pool_empty(&nonce_pool);
}
#endif

/* n (<= POOL_SIZE) fresh random bytes into out: 1, or 0 when OpenSSL fails. */
static int
pool_draw(struct pool *pool, unsigned char *out, size_t n)
{
    if (POOL_SIZE - pool->next < n) {
        if (pool->fill(pool->bytes, POOL_SIZE) != 1) {
            pool_empty(pool);
            return 0;
        }
        pool->next = 0;
    }
    memcpy(out, pool->bytes + pool->next, n);
    OPENSSL_cleanse(pool->bytes + pool->next, n);
    pool->next += n;
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* base64                                                                               */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0x80 for everything else (including '=' and non-ASCII). */
static unsigned char b64_values[256];
/* The two alphabet characters of every 12-bit value, in memory order (encoder). */
static uint16_t b64_pairs[4096];
/* Each character's 6 bits already shifted to its place in a quad's 24 bits (decoder), or
 * B64_BAD for a character outside the alphabet. */
#define B64_BAD (1u << 24)
static uint32_t b64_quad[4][256];

static void
b64_init(void)
{
    memset(b64_values, 0x80, sizeof(b64_values));
    for (int i = 0; i < 64; i++) {
        b64_values[(unsigned char)b64_alphabet[i]] = (unsigned char)i;
    }
    for (int i = 0; i < 4096; i++) {
        unsigned char pair[2] = {(unsigned char)b64_alphabet[i >> 6],
                                 (unsigned char)b64_alphabet[i & 63]};
        memcpy(&b64_pairs[i], pair, 2);
    }
    for (int c = 0; c < 256; c++) {
        for (int place = 0; place < 4; place++) {
            b64_quad[place][c] = b64_values[c] == 0x80
                                     ? B64_BAD
                                     : (uint32_t)b64_values[c] << (6 * (3 - place));
        }
    }
}

static inline Py_ssize_t
b64_encoded_size(Py_ssize_t n)
{
    return (n + 2) / 3 * 4;
}

static void
b64_encode(const unsigned char *in, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) { /* 3 bytes -> two 12-bit halves -> two character pairs */
        unsigned int v = ((unsigned int)in[i] << 16) | ((unsigned int)in[i + 1] << 8) | in[i + 2];
        memcpy(out, &b64_pairs[v >> 12], 2);
        memcpy(out + 2, &b64_pairs[v & 0xFFF], 2);
        out += 4;
    }
    if (n - i == 1) {
        unsigned int v = (unsigned int)in[i] << 16;
        *out++ = (unsigned char)b64_alphabet[v >> 18];
        *out++ = (unsigned char)b64_alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    }
    else if (n - i == 2) {
        unsigned int v = ((unsigned int)in[i] << 16) | ((unsigned int)in[i + 1] << 8);
        *out++ = (unsigned char)b64_alphabet[v >> 18];
        *out++ = (unsigned char)b64_alphabet[(v >> 12) & 63];
        *out++ = (unsigned char)b64_alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
}

/* The decoded size of canonical base64 text, or -1 when its length or padding is wrong. */
static Py_ssize_t
b64_decoded_size(const unsigned char *s, Py_ssize_t n)
{
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    Py_ssize_t pads = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    return n / 4 * 3 - pads;
}

/* Decode canonical base64 (length already checked by b64_decoded_size). 0 on success. */
static int
b64_decode(const unsigned char *s, Py_ssize_t n, unsigned char *out)
{
    if (n == 0) {
        return 0;
    }
    const unsigned char *last = s + n - 4;
    unsigned int bad = 0;
    uint32_t quads_bad = 0;
    for (; s < last; s += 4) { /* every quad but the last: no padding allowed */
        uint32_t v = b64_quad[0][s[0]] | b64_quad[1][s[1]] | b64_quad[2][s[2]] | b64_quad[3][s[3]];
        quads_bad |= v;
        out[0] = (unsigned char)(v >> 16);
        out[1] = (unsigned char)(v >> 8);
        out[2] = (unsigned char)v;
        out += 3;
    }
    bad |= (quads_bad & B64_BAD) ? 0x80 : 0;
    unsigned int a = b64_values[s[0]], b = b64_values[s[1]];
    bad |= a | b;
    if (s[3] != '=') {
        unsigned int c = b64_values[s[2]], d = b64_values[s[3]];
        bad |= c | d;
        unsigned int v = (a << 18) | (b << 12) | (c << 6) | d;
        out[0] = (unsigned char)(v >> 16);
        out[1] = (unsigned char)(v >> 8);
        out[2] = (unsigned char)v;
    }
    else if (s[2] != '=') { /* xxx= : two bytes, the last 2 bits must be zero */
        unsigned int c = b64_values[s[2]];
        bad |= c | ((c & 3) ? 0x80 : 0);
        unsigned int v = (a << 18) | (b << 12) | (c << 6);
        out[0] = (unsigned char)(v >> 16);
        out[1] = (unsigned char)(v >> 8);
    }
    else { /* xx== : one byte, the last 4 bits must be zero */
        bad |= (b & 15) ? 0x80 : 0;
        out[0] = (unsigned char)((a << 2) | (b >> 4));
    }
    return (bad & 0x80) ? -1 : 0;
}

/* ------------------------------------------------------------------------------------ */
/* One AES-256-GCM context: OpenSSL 3's provider implementation called directly, or EVP */

/*
 * OpenSSL 3.0's EVP layer asks the provider for the key and nonce lengths through OSSL_PARAM
 * name lookups on every init, and turns each tag ctrl into another lookup: together more
 * than the AES-GCM work on a small value. When the provider that EVP_CIPHER_fetch chose
 * publishes AES-256-GCM through the provider interface (OSSL_PROVIDER_query_operation,
 * core_dispatch.h: public API), its functions are called directly: the very code EVP would
 * run, without that bookkeeping. A known-answer test at import checks the direct calls
 * against EVP (a sealed and an opened vector, a refused forgery); on any difference, or
 * with OpenSSL 1.1.1, every call goes through EVP.
 */
typedef void cipher_ctx; /* an EVP_CIPHER_CTX, or the provider's context when direct */
static int direct;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static void *provider_ctx;
static OSSL_FUNC_cipher_newctx_fn *p_newctx;
static OSSL_FUNC_cipher_freectx_fn *p_freectx;
static OSSL_FUNC_cipher_encrypt_init_fn *p_einit;
static OSSL_FUNC_cipher_decrypt_init_fn *p_dinit;
static OSSL_FUNC_cipher_update_fn *p_update;
static OSSL_FUNC_cipher_final_fn *p_final;
static OSSL_FUNC_cipher_get_ctx_params_fn *p_get_ctx_params;
static OSSL_FUNC_cipher_set_ctx_params_fn *p_set_ctx_params;
#endif

static cipher_ctx *
cctx_new(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        return p_newctx(provider_ctx);
    }
#endif
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL && EVP_EncryptInit_ex(ctx, aes_gcm, NULL, NULL, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Frees NULL too; either way the provider cleanses the key schedule it held. */
static void
cctx_free(cipher_ctx *ctx)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        if (ctx != NULL) {
            p_freectx(ctx);
        }
        return;
    }
#endif
    EVP_CIPHER_CTX_free(ctx);
}

/* Start a message with this 12-byte nonce; key NULL keeps the context's key schedule. */
static int
cctx_init(cipher_ctx *ctx, int enc, const unsigned char *key, const unsigned char *nonce)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        size_t key_size = key ? KEY_SIZE : 0;
        return (enc ? p_einit(ctx, key, key_size, nonce, NONCE_SIZE, NULL)
                    : p_dinit(ctx, key, key_size, nonce, NONCE_SIZE, NULL)) == 1;
    }
#endif
    return (enc ? EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce)
                : EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce)) == 1;
}

static int
cctx_update(cipher_ctx *ctx, int enc, unsigned char *out, const unsigned char *in, int n)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        size_t written = 0;
        return p_update(ctx, out, &written, (size_t)n, in, (size_t)n) == 1 &&
               written == (size_t)n;
    }
#endif
    int written = 0;
    int ok = enc ? EVP_EncryptUpdate(ctx, out, &written, in, n)
                 : EVP_DecryptUpdate(ctx, out, &written, in, n);
    return ok == 1 && written == n;
}

/* Finish a sealed message and write its 16-byte tag. */
static int
cctx_seal_final(cipher_ctx *ctx, unsigned char *tag)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        size_t written = 0;
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, TAG_SIZE),
            OSSL_PARAM_construct_end(),
        };
        return p_final(ctx, tag, &written, 0) == 1 && written == 0 &&
               p_get_ctx_params(ctx, params) == 1 && params[0].return_size == TAG_SIZE;
    }
#endif
    int written = 0;
    return EVP_EncryptFinal_ex(ctx, tag, &written) == 1 && written == 0 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, tag) == 1;
}

/* Finish an opened message against its 16-byte tag: ST_OK, ST_AUTH or ST_OPENSSL. */
static int
cctx_open_final(cipher_ctx *ctx, const unsigned char *tag)
{
    unsigned char tag_copy[TAG_SIZE]; /* both APIs take a non-const pointer */
    memcpy(tag_copy, tag, TAG_SIZE);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (direct) {
        size_t written = 0;
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag_copy, TAG_SIZE),
            OSSL_PARAM_construct_end(),
        };
        if (p_set_ctx_params(ctx, params) != 1) {
            return ST_OPENSSL;
        }
        return p_final(ctx, tag_copy, &written, 0) == 1 && written == 0 ? ST_OK : ST_AUTH;
    }
#endif
    int written = 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, tag_copy) != 1) {
        return ST_OPENSSL;
    }
    return EVP_DecryptFinal_ex(ctx, tag_copy, &written) == 1 && written == 0 ? ST_OK : ST_AUTH;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/* Whether a provider's "NAME:ALIAS:OID" list names AES-256-GCM. */
static int
names_aes_256_gcm(const char *names)
{
    static const char wanted[] = "AES-256-GCM";
    const size_t length = sizeof(wanted) - 1;
    for (const char *name = names; name != NULL && *name != '\0';) {
        const char *end = strchr(name, ':');
        size_t size = end ? (size_t)(end - name) : strlen(name);
        if (size == length && OPENSSL_strncasecmp(name, wanted, length) == 0) {
            return 1;
        }
        name = end ? end + 1 : NULL;
    }
    return 0;
}

/* Look up the provider functions of the fetched AES-256-GCM: 1 when all are there. */
static int
find_provider_functions(void)
{
    const OSSL_PROVIDER *provider = EVP_CIPHER_get0_provider(aes_gcm_fetched);
    if (provider == NULL) {
        return 0;
    }
    int no_cache = 0;
    const OSSL_ALGORITHM *algorithms =
        OSSL_PROVIDER_query_operation(provider, OSSL_OP_CIPHER, &no_cache);
    const OSSL_DISPATCH *functions = NULL;
    for (const OSSL_ALGORITHM *a = algorithms; a != NULL && a->algorithm_names != NULL; a++) {
        if (names_aes_256_gcm(a->algorithm_names)) {
            functions = a->implementation;
            break;
        }
    }
    for (; functions != NULL && functions->function_id != 0; functions++) {
        switch (functions->function_id) {
        case OSSL_FUNC_CIPHER_NEWCTX: p_newctx = OSSL_FUNC_cipher_newctx(functions); break;
        case OSSL_FUNC_CIPHER_FREECTX: p_freectx = OSSL_FUNC_cipher_freectx(functions); break;
        case OSSL_FUNC_CIPHER_ENCRYPT_INIT: p_einit = OSSL_FUNC_cipher_encrypt_init(functions); break;
        case OSSL_FUNC_CIPHER_DECRYPT_INIT: p_dinit = OSSL_FUNC_cipher_decrypt_init(functions); break;
        case OSSL_FUNC_CIPHER_UPDATE: p_update = OSSL_FUNC_cipher_update(functions); break;
        case OSSL_FUNC_CIPHER_FINAL: p_final = OSSL_FUNC_cipher_final(functions); break;
        case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
            p_get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(functions);
            break;
        case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
            p_set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(functions);
            break;
        default: break;
        }
    }
    provider_ctx = OSSL_PROVIDER_get0_provider_ctx(provider);
    if (algorithms != NULL) {
        OSSL_PROVIDER_unquery_operation(provider, OSSL_OP_CIPHER, algorithms);
    }
    return p_newctx && p_freectx && p_einit && p_dinit && p_update && p_final &&
           p_get_ctx_params && p_set_ctx_params;
}
#endif

/* Seal (with a fresh context) 40 fixed bytes; 1 on success. */
static int
known_answer_seal(unsigned char *sealed, unsigned char *tag)
{
    static const unsigned char key[KEY_SIZE] = "known-answer test key, 32 bytes";
    static const unsigned char nonce[NONCE_SIZE] = "known nonce";
    static const unsigned char plaintext[40] = "asherah_django known-answer plaintext..";
    cipher_ctx *ctx = cctx_new();
    int ok = ctx != NULL && cctx_init(ctx, 1, key, nonce) &&
             cctx_update(ctx, 1, sealed, plaintext, (int)sizeof(plaintext)) &&
             cctx_seal_final(ctx, tag);
    if (ok) { /* and it opens again, and a changed tag is refused */
        unsigned char opened[40], bad_tag[TAG_SIZE];
        memcpy(bad_tag, tag, TAG_SIZE);
        bad_tag[0] ^= 1;
        ok = cctx_init(ctx, 0, key, nonce) &&
             cctx_update(ctx, 0, opened, sealed, (int)sizeof(opened)) &&
             cctx_open_final(ctx, tag) == ST_OK && memcmp(opened, plaintext, 40) == 0 &&
             cctx_init(ctx, 0, NULL, nonce) &&
             cctx_update(ctx, 0, opened, sealed, (int)sizeof(opened)) &&
             cctx_open_final(ctx, bad_tag) == ST_AUTH;
    }
    cctx_free(ctx);
    return ok;
}

/* At import: call the provider directly when it gives exactly EVP's answers. */
static void
choose_direct(void)
{
    direct = 0;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    unsigned char by_evp[40 + TAG_SIZE], by_provider[40 + TAG_SIZE];
    if (getenv("ASHERAH_DJANGO_SPEEDUPS_EVP") == NULL && find_provider_functions() &&
        known_answer_seal(by_evp, by_evp + 40)) {
        direct = 1;
        if (!known_answer_seal(by_provider, by_provider + 40) ||
            memcmp(by_evp, by_provider, sizeof(by_evp)) != 0) {
            direct = 0;
        }
    }
    ERR_clear_error();
#endif
}

/* ------------------------------------------------------------------------------------ */
/* AES-256-GCM in Asherah's layout                                                      */

static int
gcm_update(cipher_ctx *ctx, int enc, const unsigned char *in, Py_ssize_t n,
           unsigned char *out)
{
    while (n > 0) {
        int part = n > CHUNK ? CHUNK : (int)n;
        if (!cctx_update(ctx, enc, out, in, part)) {
            return 0;
        }
        in += part;
        out += part;
        n -= part;
    }
    return 1;
}

/*
 * out (n + 28 bytes) = AES-256-GCM(key, nonce, in) || tag || nonce. 1 on success. key NULL:
 * keep the context's key. *keyed = whether the context holds a key schedule afterwards.
 */
static int
gcm_seal(cipher_ctx *ctx, const unsigned char *key, const unsigned char *nonce,
         const unsigned char *in, Py_ssize_t n, unsigned char *out, int *keyed)
{
    *keyed = cctx_init(ctx, 1, key, nonce);
    if (!*keyed || !gcm_update(ctx, 1, in, n, out) || !cctx_seal_final(ctx, out + n)) {
        return 0;
    }
    memcpy(out + n + TAG_SIZE, nonce, NONCE_SIZE);
    return 1;
}

/* out (n - 28 bytes) = plaintext of the blob (n >= 28 bytes): ST_OK, ST_AUTH or ST_OPENSSL.
 * key and *keyed as for gcm_seal. */
static int
gcm_open(cipher_ctx *ctx, const unsigned char *key, const unsigned char *blob, Py_ssize_t n,
         unsigned char *out, int *keyed)
{
    Py_ssize_t size = n - OVERHEAD;
    unsigned char tag[TAG_SIZE], nonce[NONCE_SIZE];
    /* Copies first: opening in place (out == blob) overwrites the ciphertext only, but the
     * tag and nonce are read after the update. */
    memcpy(tag, blob + size, TAG_SIZE);
    memcpy(nonce, blob + size + TAG_SIZE, NONCE_SIZE);
    *keyed = cctx_init(ctx, 0, key, nonce);
    if (!*keyed || !gcm_update(ctx, 0, blob, size, out)) {
        return ST_OPENSSL;
    }
    return cctx_open_final(ctx, tag);
}

static cipher_ctx *
new_ctx(void)
{
    return cctx_new();
}

/* data_ctx when free (GIL held), else a fresh context; NULL when OpenSSL fails. */
static cipher_ctx *
acquire_ctx(int with_gil)
{
    if (with_gil && !data_ctx_busy && data_ctx != NULL) {
        data_ctx_busy = 1;
        return data_ctx;
    }
    return new_ctx();
}

static void
release_ctx(cipher_ctx *ctx)
{
    if (ctx == data_ctx) {
        data_ctx_busy = 0;
    }
    else {
        cctx_free(ctx); /* frees NULL too; the provider cleanses its key schedule */
    }
}

/*
 * A context for the intermediate key (GIL held): ik_ctx when free, with *key set to NULL when
 * it already holds this key's schedule (the init then sets only the nonce); else a fresh
 * context and *key = ik. Pass the result to release_ik_ctx with whether the operation's
 * init succeeded.
 */
static cipher_ctx *
acquire_ik_ctx(const unsigned char *ik, const unsigned char **key)
{
    *key = ik;
    if (ik_ctx == NULL || ik_ctx_busy) {
        return new_ctx();
    }
    ik_ctx_busy = 1;
    if (ik_ctx_keyed && CRYPTO_memcmp(ik_cached, ik, KEY_SIZE) == 0) {
        *key = NULL;
    }
    else {
        ik_ctx_keyed = 0;
        memcpy(ik_cached, ik, KEY_SIZE);
    }
    return ik_ctx;
}

static void
release_ik_ctx(cipher_ctx *ctx, int keyed)
{
    if (ctx == ik_ctx) {
        ik_ctx_keyed = keyed;
        if (!keyed) {
            OPENSSL_cleanse(ik_cached, sizeof(ik_cached));
        }
        ik_ctx_busy = 0;
    }
    else {
        cctx_free(ctx);
    }
}

/* ------------------------------------------------------------------------------------ */
/* The two row operations, without Python API calls (may run with the GIL released).    */

/* Seal data under drk into blob (n + 28 bytes) and base64 it into out. */
static int
seal_data(int with_gil, const unsigned char *drk, const unsigned char *nonce,
          const unsigned char *data, Py_ssize_t n, unsigned char *blob, unsigned char *out)
{
    cipher_ctx *ctx = acquire_ctx(with_gil);
    int keyed;
    int ok = ctx != NULL && gcm_seal(ctx, drk, nonce, data, n, blob, &keyed);
    release_ctx(ctx);
    if (!ok) {
        return ST_OPENSSL;
    }
    b64_encode(blob, n + OVERHEAD, out);
    return ST_OK;
}

/*
 * Decode both blobs, open the DRK with the IK (it must be 32 bytes), then open the data into
 * out. Errors in the order of the Python path: base64 of either blob, then the DRK, then the
 * data. key_buf must hold the decoded wrapped key; blob must hold the decoded data.
 */
static int
open_row(int with_gil, const unsigned char *ik, const unsigned char *key_b64, Py_ssize_t key_len,
         Py_ssize_t wrapped_size, unsigned char *key_buf, const unsigned char *data_b64,
         Py_ssize_t data_len, Py_ssize_t blob_size, unsigned char *blob, unsigned char *out)
{
    if (b64_decode(key_b64, key_len, key_buf) != 0 || b64_decode(data_b64, data_len, blob) != 0) {
        return ST_BASE64;
    }
    if (wrapped_size < OVERHEAD) {
        return ST_AUTH;
    }
    /* The DRK opens in place: key_buf then holds the DRK and is cleansed by the caller. */
    int status, keyed = 0;
    if (with_gil) {
        const unsigned char *key;
        cipher_ctx *ctx = acquire_ik_ctx(ik, &key);
        status = ctx == NULL ? ST_OPENSSL : gcm_open(ctx, key, key_buf, wrapped_size, key_buf, &keyed);
        release_ik_ctx(ctx, keyed);
    }
    else {
        cipher_ctx *ctx = new_ctx();
        status = ctx == NULL ? ST_OPENSSL : gcm_open(ctx, ik, key_buf, wrapped_size, key_buf, &keyed);
        cctx_free(ctx);
    }
    if (status == ST_OK && wrapped_size != WRAPPED_SIZE) {
        status = ST_DRK_SIZE;
    }
    if (status == ST_OK) {
        if (blob_size < OVERHEAD) {
            status = ST_AUTH;
        }
        else {
            cipher_ctx *ctx = acquire_ctx(with_gil);
            status = ctx == NULL ? ST_OPENSSL : gcm_open(ctx, key_buf, blob, blob_size, out, &keyed);
            release_ctx(ctx);
        }
    }
    return status;
}

/* ------------------------------------------------------------------------------------ */
/* Python wrappers                                                                      */

static int
check_ik(PyObject *ik)
{
    if (!PyBytes_Check(ik)) {
        PyErr_Format(PyExc_TypeError, "ik_key must be bytes, not %.100s", Py_TYPE(ik)->tp_name);
        return -1;
    }
    if (PyBytes_GET_SIZE(ik) != KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "ik_key must be 32 bytes");
        return -1;
    }
    return 0;
}

static PyObject *
raise_status(int status)
{
    ERR_clear_error();
    switch (status) {
    case ST_BASE64:
        PyErr_SetString(Base64Error, "not canonical standard padded base64");
        break;
    case ST_AUTH:
        PyErr_SetString(AuthenticationError, "authentication failed (tampered or corrupted record)");
        break;
    case ST_DRK_SIZE:
        PyErr_SetString(AuthenticationError, "data row key is not 32 bytes");
        break;
    case ST_NOMEM:
        PyErr_NoMemory();
        break;
    default:
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-256-GCM operation failed");
        break;
    }
    return NULL;
}

/* A new ASCII str of the given length whose characters the caller fills in. */
static PyObject *
new_ascii(Py_ssize_t length, unsigned char **data)
{
    PyObject *text = PyUnicode_New(length, 127);
    if (text != NULL) {
        *data = (unsigned char *)PyUnicode_1BYTE_DATA(text);
    }
    return text;
}

/* The ASCII characters of a str argument; NULL (no error set) if it is not ASCII. */
static const unsigned char *
ascii_of(PyObject *text, const char *name, Py_ssize_t *length, int *failed)
{
    *failed = 0;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", name, Py_TYPE(text)->tp_name);
        *failed = 1;
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        *failed = 1;
        return NULL;
    }
#endif
    if (!PyUnicode_IS_ASCII(text)) {
        return NULL;
    }
    *length = PyUnicode_GET_LENGTH(text);
    return (const unsigned char *)PyUnicode_1BYTE_DATA(text);
}

/*
 * Draw a fresh data row key and two nonces, wrap the key under ik (32 bytes), seal the n
 * bytes at data under it, and write the base64 of the wrapped key (80 characters) to
 * key_out and that of the data blob (b64_encoded_size(n + 28)) to data_out. Called with the
 * GIL held and every Python object already made (key_out and data_out may point into new
 * str objects); values of NOGIL_THRESHOLD bytes or more are sealed with the GIL released.
 * 0, or -1 with a Python exception set.
 */
static int
seal_row(const unsigned char *ik, const unsigned char *data, Py_ssize_t n, unsigned char *key_out,
         unsigned char *data_out)
{
    unsigned char stack_blob[STACK_BUF];
    unsigned char *blob = stack_blob;
    unsigned char drk[KEY_SIZE], nonces[2 * NONCE_SIZE], wrapped[WRAPPED_SIZE];
    const unsigned char *ik_arg;
    Py_ssize_t blob_size = n + OVERHEAD;
    int status = ST_OPENSSL, keyed = 0;

    if (blob_size > STACK_BUF) {
        blob = PyMem_RawMalloc((size_t)blob_size);
        if (blob == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (!pool_draw(&key_pool, drk, KEY_SIZE) || !pool_draw(&nonce_pool, nonces, sizeof(nonces))) {
        ERR_clear_error();
        OPENSSL_cleanse(drk, sizeof(drk));
        if (blob != stack_blob) {
            PyMem_RawFree(blob);
        }
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL RAND_bytes failed to produce a data key");
        return -1;
    }
    cipher_ctx *ctx = acquire_ik_ctx(ik, &ik_arg);
    if (ctx != NULL && gcm_seal(ctx, ik_arg, nonces, drk, KEY_SIZE, wrapped, &keyed)) {
        status = ST_OK;
    }
    release_ik_ctx(ctx, keyed);
    if (status == ST_OK) {
        b64_encode(wrapped, WRAPPED_SIZE, key_out);
        if (n < NOGIL_THRESHOLD) {
            status = seal_data(1, drk, nonces + NONCE_SIZE, data, n, blob, data_out);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            status = seal_data(0, drk, nonces + NONCE_SIZE, data, n, blob, data_out);
            Py_END_ALLOW_THREADS
        }
    }
    OPENSSL_cleanse(drk, sizeof(drk));
    if (blob != stack_blob) {
        PyMem_RawFree(blob);
    }
    if (status != ST_OK) {
        raise_status(status);
        return -1;
    }
    return 0;
}

/* The buffer of a plaintext argument, or -1 with an exception set (also when too large). */
static int
plaintext_of(PyObject *data, Py_buffer *view)
{
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if ((long long)view->len > GCM_MAX_PLAINTEXT ||
        view->len > (PY_SSIZE_T_MAX - OVERHEAD) / 4 * 3 - 4) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_OverflowError, "data is too large for AES-256-GCM");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(encrypt_row_doc,
"encrypt_row(ik_key, data, /)\n--\n\n"
"Seal data under a fresh data row key and wrap that key under ik_key (32 bytes).\n\n"
"Returns (base64 of the wrapped key, base64 of the data blob): standard padded base64\n"
"of AES-256-GCM blobs laid out ciphertext || tag || nonce, no AAD.");

static PyObject *
encrypt_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "encrypt_row() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_buffer view;
    if (check_ik(args[0]) < 0 || plaintext_of(args[1], &view) < 0) {
        return NULL;
    }
    unsigned char *key_out = NULL, *data_out = NULL;
    PyObject *result = NULL;
    PyObject *key_text = new_ascii(b64_encoded_size(WRAPPED_SIZE), &key_out);
    PyObject *data_text = key_text ? new_ascii(b64_encoded_size(view.len + OVERHEAD), &data_out)
                                   : NULL;
    if (data_text != NULL &&
        seal_row((const unsigned char *)PyBytes_AS_STRING(args[0]), view.buf, view.len, key_out,
                 data_out) == 0) {
        result = PyTuple_Pack(2, key_text, data_text);
    }
    Py_XDECREF(key_text);
    Py_XDECREF(data_text);
    PyBuffer_Release(&view);
    return result;
}

/* The Created argument of encrypt_record: an int, or a finite float (truncated, as int()). */
static int
created_of(PyObject *value, long long *created)
{
    if (PyLong_Check(value)) {
        *created = PyLong_AsLongLong(value);
        return *created == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (PyFloat_Check(value)) {
        double seconds = PyFloat_AS_DOUBLE(value);
        if (seconds > -9.2e18 && seconds < 9.2e18) { /* false for NaN and infinities */
            *created = (long long)seconds;
            return 0;
        }
        PyErr_SetString(PyExc_ValueError, "created must be a finite number of seconds");
        return -1;
    }
    PyErr_Format(PyExc_TypeError, "created must be int or float, not %.100s",
                 Py_TYPE(value)->tp_name);
    return -1;
}

/* The decimal text of value in out (24 bytes are enough); its length. (snprintf costs more
 * than the rest of building the record.) */
static Py_ssize_t
decimal(long long value, char *out)
{
    char reversed[20];
    unsigned long long magnitude =
        value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    Py_ssize_t count = 0, length = 0;
    do {
        reversed[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    if (value < 0) {
        out[length++] = '-';
    }
    while (count > 0) {
        out[length++] = reversed[--count];
    }
    return length;
}

static const char record_head[] = "{\"Key\":{\"Created\":";
static const char record_key[] = ",\"Key\":\"";
static const char record_parent[] = "\",\"ParentKeyMeta\":";
static const char record_data[] = "},\"Data\":\"";
static const char record_end[] = "\"}";
#define LITERAL_LENGTH(text) ((Py_ssize_t)sizeof(text) - 1)

static unsigned char *
put(unsigned char *out, const void *text, Py_ssize_t length)
{
    memcpy(out, text, (size_t)length);
    return out + length;
}

PyDoc_STRVAR(encrypt_record_doc,
"encrypt_record(ik_key, data, created, parent_meta_json, /)\n--\n\n"
"The whole DataRowRecord JSON of data sealed as encrypt_row does:\n"
"{\"Key\":{\"Created\":created,\"Key\":\"...\",\"ParentKeyMeta\":parent_meta_json},\"Data\":\"...\"}\n"
"(compact, in the key order every Asherah writes). created is the data row key's Created,\n"
"int or float seconds (truncated); parent_meta_json is the intermediate key's KeyMeta JSON.");

static PyObject *
encrypt_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "encrypt_record() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    long long created;
    if (check_ik(args[0]) < 0 || created_of(args[2], &created) < 0) {
        return NULL;
    }
    PyObject *meta = args[3];
    if (!PyUnicode_Check(meta)) {
        PyErr_Format(PyExc_TypeError, "parent_meta_json must be str, not %.100s",
                     Py_TYPE(meta)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(meta) < 0) {
        return NULL;
    }
#endif
    Py_buffer view;
    if (plaintext_of(args[1], &view) < 0) {
        return NULL;
    }
    const unsigned char *ik = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t data_size = b64_encoded_size(view.len + OVERHEAD);
    PyObject *result = NULL;
    unsigned char *key_out = NULL, *data_out = NULL;
    if (PyUnicode_IS_ASCII(meta)) { /* the usual case: one ASCII str, written in place */
        char digits[24];
        Py_ssize_t digits_length = decimal(created, digits);
        Py_ssize_t meta_length = PyUnicode_GET_LENGTH(meta);
        Py_ssize_t fixed = LITERAL_LENGTH(record_head) + digits_length +
                           LITERAL_LENGTH(record_key) + b64_encoded_size(WRAPPED_SIZE) +
                           LITERAL_LENGTH(record_parent) + LITERAL_LENGTH(record_data) +
                           LITERAL_LENGTH(record_end);
        unsigned char *out;
        if (meta_length > PY_SSIZE_T_MAX - fixed - data_size) {
            PyErr_NoMemory();
        }
        else if ((result = new_ascii(fixed + meta_length + data_size, &out)) != NULL) {
            out = put(out, record_head, LITERAL_LENGTH(record_head));
            out = put(out, digits, digits_length);
            out = put(out, record_key, LITERAL_LENGTH(record_key));
            key_out = out;
            out += b64_encoded_size(WRAPPED_SIZE);
            out = put(out, record_parent, LITERAL_LENGTH(record_parent));
            out = put(out, PyUnicode_1BYTE_DATA(meta), meta_length);
            out = put(out, record_data, LITERAL_LENGTH(record_data));
            data_out = out;
            put(out + data_size, record_end, LITERAL_LENGTH(record_end));
            if (seal_row(ik, view.buf, view.len, key_out, data_out) < 0) {
                Py_CLEAR(result);
            }
        }
    }
    else { /* a partition id with non-ASCII characters: format the pieces */
        PyObject *key_text = new_ascii(b64_encoded_size(WRAPPED_SIZE), &key_out);
        PyObject *data_text = key_text ? new_ascii(data_size, &data_out) : NULL;
        if (data_text != NULL && seal_row(ik, view.buf, view.len, key_out, data_out) == 0) {
            result = PyUnicode_FromFormat("%s%lld%s%U%s%U%s%U%s", record_head, created, record_key,
                                          key_text, record_parent, meta, record_data, data_text,
                                          record_end);
        }
        Py_XDECREF(key_text);
        Py_XDECREF(data_text);
    }
    PyBuffer_Release(&view);
    return result;
}

/*
 * The plaintext of the two canonical base64 blobs (key_b64, data_b64: ASCII characters;
 * either NULL when its argument was not ASCII), opened with ik: a new bytes, or NULL with
 * Base64Error, AuthenticationError or another exception set.
 */
static PyObject *
open_b64(const unsigned char *ik, const unsigned char *key_b64, Py_ssize_t key_len,
         const unsigned char *data_b64, Py_ssize_t data_len)
{
    Py_ssize_t wrapped_size = key_b64 ? b64_decoded_size(key_b64, key_len) : -1;
    Py_ssize_t blob_size = data_b64 ? b64_decoded_size(data_b64, data_len) : -1;
    if (wrapped_size < 0 || blob_size < 0) {
        return raise_status(ST_BASE64);
    }

    unsigned char stack_key[128], stack_blob[STACK_BUF];
    unsigned char *key_buf = stack_key, *blob = stack_blob;
    PyObject *plaintext = NULL;
    int status = ST_NOMEM;
    int with_gil = blob_size < NOGIL_THRESHOLD;
    /* Every Python object and buffer first: no Python API call once the crypto starts. */
    plaintext = PyBytes_FromStringAndSize(NULL, blob_size > OVERHEAD ? blob_size - OVERHEAD : 0);
    if (plaintext == NULL) {
        return NULL;
    }
    if (wrapped_size > (Py_ssize_t)sizeof(stack_key)) {
        key_buf = PyMem_RawMalloc((size_t)wrapped_size);
    }
    if (blob_size > STACK_BUF) {
        blob = PyMem_RawMalloc((size_t)blob_size);
    }
    if (key_buf != NULL && blob != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(plaintext);
        if (with_gil) {
            status = open_row(1, ik, key_b64, key_len, wrapped_size, key_buf, data_b64, data_len,
                              blob_size, blob, out);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            status = open_row(0, ik, key_b64, key_len, wrapped_size, key_buf, data_b64, data_len,
                              blob_size, blob, out);
            Py_END_ALLOW_THREADS
        }
    }
    if (key_buf != NULL) {
        OPENSSL_cleanse(key_buf, (size_t)wrapped_size); /* held the DRK */
        if (key_buf != stack_key) {
            PyMem_RawFree(key_buf);
        }
    }
    if (blob != NULL && blob != stack_blob) {
        PyMem_RawFree(blob);
    }
    if (status != ST_OK) {
        /* Unauthenticated plaintext never leaves: wipe it before it is freed. */
        OPENSSL_cleanse(PyBytes_AS_STRING(plaintext), (size_t)PyBytes_GET_SIZE(plaintext));
        Py_DECREF(plaintext);
        return raise_status(status);
    }
    return plaintext;
}

PyDoc_STRVAR(decrypt_row_doc,
"decrypt_row(ik_key, wrapped_drk_b64, data_b64, /)\n--\n\n"
"Open the data row key with ik_key (32 bytes), then the data; return the plaintext.\n\n"
"Both arguments are canonical standard padded base64 str; anything else raises\n"
"Base64Error. AuthenticationError when either blob fails authentication, is too short,\n"
"or the data row key is not 32 bytes.");

static PyObject *
decrypt_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "decrypt_row() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (check_ik(args[0]) < 0) {
        return NULL;
    }
    Py_ssize_t key_len = 0, data_len = 0;
    int failed;
    const unsigned char *key_b64 = ascii_of(args[1], "wrapped_drk_b64", &key_len, &failed);
    if (failed) {
        return NULL;
    }
    const unsigned char *data_b64 = ascii_of(args[2], "data_b64", &data_len, &failed);
    if (failed) {
        return NULL;
    }
    return open_b64((const unsigned char *)PyBytes_AS_STRING(args[0]), key_b64, key_len,
                    data_b64, data_len);
}

/* The canonical DataRowRecord layout (session.py's fast path), by code point offsets. */
static const char drr_head[] = "{\"Key\":{\"Created\":";   /* at 0 */
static const char drr_key_label[] = ",\"Key\":\"";         /* after the 10-digit DRK Created */
static const char drr_tail[] = "}},\"Data\":\"";           /* after the 10-digit IK Created */
#define DRR_CREATED_START 18
#define DRR_KEY_START (DRR_CREATED_START + 10 + 8)
#define DRR_KEY_END (DRR_KEY_START + 80)

static int
matches_ascii(int kind, const void *data, Py_ssize_t at, const char *text, Py_ssize_t length)
{
    if (kind == PyUnicode_1BYTE_KIND) {
        return memcmp((const Py_UCS1 *)data + at, text, (size_t)length) == 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        if (PyUnicode_READ(kind, data, at + i) != (Py_UCS4)(unsigned char)text[i]) {
            return 0;
        }
    }
    return 1;
}

/* 10 ASCII digits, the first not '0': their value, else -1. */
static long long
ten_digits(int kind, const void *data, Py_ssize_t at)
{
    long long value = 0;
    for (Py_ssize_t i = 0; i < 10; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, at + i);
        if (c < '0' || c > '9' || (i == 0 && c == '0')) {
            return -1;
        }
        value = value * 10 + (long long)(c - '0');
    }
    return value;
}

PyDoc_STRVAR(canonical_created_doc,
"canonical_created(record, middle, /)\n--\n\n"
"The intermediate key's Created if record has the canonical compact DataRowRecord\n"
"layout whose ParentKeyMeta starts with middle (session.py's fast path checks, exactly),\n"
"else -1.");

static PyObject *
canonical_created(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "canonical_created() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *record = args[0], *middle = args[1];
    if (!PyUnicode_Check(record) || !PyUnicode_Check(middle)) {
        PyErr_SetString(PyExc_TypeError, "canonical_created() takes two str");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(record) < 0 || PyUnicode_READY(middle) < 0) {
        return NULL;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(record), middle_length = PyUnicode_GET_LENGTH(middle);
    Py_ssize_t end = DRR_KEY_END + middle_length; /* where the IK's Created starts */
    long long created = -1;
    if (middle_length <= PY_SSIZE_T_MAX - DRR_KEY_END - 21 && length >= end + 21) {
        int kind = PyUnicode_KIND(record), middle_kind = PyUnicode_KIND(middle);
        const void *data = PyUnicode_DATA(record), *middle_data = PyUnicode_DATA(middle);
        int ok = matches_ascii(kind, data, 0, drr_head, DRR_CREATED_START) &&
                 matches_ascii(kind, data, DRR_CREATED_START + 10, drr_key_label, 8) &&
                 matches_ascii(kind, data, end + 10, drr_tail, 11) &&
                 matches_ascii(kind, data, length - 2, "\"}", 2) &&
                 ten_digits(kind, data, DRR_CREATED_START) >= 0;
        if (ok && kind == PyUnicode_1BYTE_KIND && middle_kind == PyUnicode_1BYTE_KIND) {
            ok = memcmp((const Py_UCS1 *)data + DRR_KEY_END, middle_data, (size_t)middle_length) == 0;
        }
        else {
            for (Py_ssize_t i = 0; ok && i < middle_length; i++) {
                ok = PyUnicode_READ(kind, data, DRR_KEY_END + i) ==
                     PyUnicode_READ(middle_kind, middle_data, i);
            }
        }
        if (ok) {
            created = ten_digits(kind, data, end);
        }
    }
    return PyLong_FromLongLong(created);
}

/*
 * The ASCII characters of text[start:end] (a str of any kind) for the base64 decoder: a
 * pointer into text when it is 1-byte (Latin-1 characters are not in the alphabet, so the
 * decoder refuses them), else a narrowed copy in *copy (PyMem_RawFree it) with every
 * character above 127 replaced by one the decoder refuses. NULL with an exception set on
 * failure to allocate.
 */
static const unsigned char *
chars_of(PyObject *text, Py_ssize_t start, Py_ssize_t end, unsigned char **copy)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    *copy = NULL;
    if (kind == PyUnicode_1BYTE_KIND) {
        return (const unsigned char *)data + start;
    }
    *copy = PyMem_RawMalloc((size_t)(end - start) + 1);
    if (*copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        (*copy)[i - start] = c < 128 ? (unsigned char)c : 0x80;
    }
    return *copy;
}

PyDoc_STRVAR(decrypt_record_doc,
"decrypt_record(ik_key, record, middle_end, /)\n--\n\n"
"decrypt_row of a record in the canonical compact layout: the wrapped key is\n"
"record[36:116] and the data record[middle_end + 21:-2], where middle_end is where the\n"
"intermediate key's Created starts (canonical_created has checked the layout). Base64Error\n"
"when those are not canonical base64 or lie outside the record.");

static PyObject *
decrypt_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "decrypt_record() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *record = args[1];
    if (check_ik(args[0]) < 0) {
        return NULL;
    }
    if (!PyUnicode_Check(record)) {
        PyErr_Format(PyExc_TypeError, "record must be str, not %.100s", Py_TYPE(record)->tp_name);
        return NULL;
    }
    Py_ssize_t middle_end = PyLong_AsSsize_t(args[2]);
    if (middle_end == -1 && PyErr_Occurred()) {
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(record) < 0) {
        return NULL;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(record);
    if (middle_end < DRR_KEY_END || middle_end > length - 23) {
        return raise_status(ST_BASE64);
    }
    unsigned char *key_copy, *data_copy = NULL;
    PyObject *plaintext = NULL;
    const unsigned char *key_b64 = chars_of(record, DRR_KEY_START, DRR_KEY_END, &key_copy);
    const unsigned char *data_b64 =
        key_b64 ? chars_of(record, middle_end + 21, length - 2, &data_copy) : NULL;
    if (data_b64 != NULL) {
        plaintext = open_b64((const unsigned char *)PyBytes_AS_STRING(args[0]), key_b64,
                             DRR_KEY_END - DRR_KEY_START, data_b64, length - 2 - middle_end - 21);
    }
    PyMem_RawFree(key_copy);
    PyMem_RawFree(data_copy);
    return plaintext;
}

PyDoc_STRVAR(forget_key_doc,
"forget_key(ik_key, /)\n--\n\n"
"Scrub the cached key schedule of ik_key (32 bytes), if it is the one cached.\n\n"
"Call it when the key is wiped, so no copy of it outlives the key's owner here.");

static PyObject *
forget_key(PyObject *module, PyObject *ik)
{
    (void)module;
    if (check_ik(ik) < 0) {
        return NULL;
    }
    if (ik_ctx_keyed && !ik_ctx_busy &&
        CRYPTO_memcmp(ik_cached, PyBytes_AS_STRING(ik), KEY_SIZE) == 0) {
        /* Freeing the context cleanses its key schedule; a new one replaces it. */
        ik_ctx_keyed = 0;
        OPENSSL_cleanse(ik_cached, sizeof(ik_cached));
        cctx_free(ik_ctx);
        ik_ctx = new_ctx(); /* NULL on failure: every call then uses a fresh context */
        ERR_clear_error();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(b64encode_doc,
"b64encode(data, /)\n--\n\nStandard padded base64 of data as str (as binascii.b2a_base64, no newline).");

static PyObject *
py_b64encode(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    unsigned char *out;
    PyObject *text = NULL;
    if (view.len > (PY_SSIZE_T_MAX - 2) / 4 * 3) {
        PyErr_SetString(PyExc_OverflowError, "data is too large to encode");
    }
    else {
        text = new_ascii(b64_encoded_size(view.len), &out);
        if (text != NULL) {
            b64_encode(view.buf, view.len, out);
        }
    }
    PyBuffer_Release(&view);
    return text;
}

PyDoc_STRVAR(b64decode_doc,
"b64decode(text, /)\n--\n\n"
"Decode canonical standard padded base64 str; Base64Error for anything else.");

static PyObject *
py_b64decode(PyObject *module, PyObject *text)
{
    (void)module;
    Py_ssize_t length = 0;
    int failed;
    const unsigned char *chars = ascii_of(text, "text", &length, &failed);
    if (failed) {
        return NULL;
    }
    Py_ssize_t size = chars ? b64_decoded_size(chars, length) : -1;
    if (size < 0) {
        return raise_status(ST_BASE64);
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result != NULL && b64_decode(chars, length, (unsigned char *)PyBytes_AS_STRING(result))) {
        Py_DECREF(result);
        return raise_status(ST_BASE64);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"encrypt_row", (PyCFunction)(void (*)(void))encrypt_row, METH_FASTCALL, encrypt_row_doc},
    {"decrypt_row", (PyCFunction)(void (*)(void))decrypt_row, METH_FASTCALL, decrypt_row_doc},
    {"encrypt_record", (PyCFunction)(void (*)(void))encrypt_record, METH_FASTCALL,
     encrypt_record_doc},
    {"decrypt_record", (PyCFunction)(void (*)(void))decrypt_record, METH_FASTCALL,
     decrypt_record_doc},
    {"forget_key", forget_key, METH_O, forget_key_doc},
    {"canonical_created", (PyCFunction)(void (*)(void))canonical_created, METH_FASTCALL,
     canonical_created_doc},
    {"b64encode", py_b64encode, METH_O, b64encode_doc},
    {"b64decode", py_b64decode, METH_O, b64decode_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"Optional C fast path of asherah_django.core.session (OpenSSL AES-256-GCM).\n\n"
"The pure-Python path in session.py is the reference; this module must agree with it.");

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "asherah_django.core._speedups", module_doc, -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (aes_gcm == NULL) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
        aes_gcm_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        aes_gcm = aes_gcm_fetched;
#else
        aes_gcm = EVP_aes_256_gcm();
#endif
        if (aes_gcm == NULL) {
            ERR_clear_error();
            PyErr_SetString(PyExc_ImportError, "OpenSSL provides no AES-256-GCM");
            return NULL;
        }
        b64_init();
        choose_direct();
    }
#ifndef _WIN32
    static int fork_handler_registered;
    if (!fork_handler_registered) {
        if (pthread_atfork(NULL, NULL, pools_empty_in_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "could not register the random pools' fork handler");
            return NULL;
        }
        fork_handler_registered = 1;
    }
#endif
    if (data_ctx == NULL) {
        data_ctx = new_ctx();
    }
    if (ik_ctx == NULL) {
        ik_ctx = new_ctx();
    }
    if (data_ctx == NULL || ik_ctx == NULL) {
        ERR_clear_error();
        PyErr_SetString(PyExc_ImportError, "OpenSSL could not set up AES-256-GCM");
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (AuthenticationError == NULL) {
        AuthenticationError = PyErr_NewExceptionWithDoc(
            "asherah_django.core._speedups.AuthenticationError",
            "A blob failed AES-GCM authentication, was too short, or its data row key is not "
            "32 bytes.",
            PyExc_ValueError, NULL);
        Base64Error = PyErr_NewExceptionWithDoc(
            "asherah_django.core._speedups.Base64Error",
            "A str is not canonical standard padded base64.", PyExc_ValueError, NULL);
        if (AuthenticationError == NULL || Base64Error == NULL) {
            Py_CLEAR(AuthenticationError);
            Py_CLEAR(Base64Error);
            Py_DECREF(module);
            return NULL;
        }
    }
    if (PyModule_AddObjectRef(module, "AuthenticationError", AuthenticationError) < 0 ||
        PyModule_AddObjectRef(module, "Base64Error", Base64Error) < 0 ||
        PyModule_AddIntConstant(module, "NOGIL_THRESHOLD", NOGIL_THRESHOLD) < 0 ||
        PyModule_AddIntConstant(module, "PROVIDER_DIRECT", direct) < 0 ||
        PyModule_AddStringConstant(module, "OPENSSL_VERSION",
                                   OpenSSL_version(OPENSSL_VERSION)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
