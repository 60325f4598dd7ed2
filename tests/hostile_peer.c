/* SPDX-License-Identifier: MIT */
/*
 * A shoal peer that misbehaves on purpose, for tests (test_swarm.py): it
 * completes a real handshake with a node key and cluster credential, then
 *
 *   ping N SECONDS          sends up to N PINGs within SECONDS and never
 *                           reads what the node answers;
 *   liar ID NCHUNKS SECONDS ignore|reject|busy[:MS]
 *                           announces every chunk of release ID, then for
 *                           SECONDS answers no REQUEST (ignore) or each with
 *                           REJECT unknown (reject) or busy (busy), with
 *                           retry_after_ms MS (busy:MS; else 0); prints
 *                           "requests N" and "closed by the node" if it was.
 *   codec ID NCHUNKS VALUE SECONDS
 *                           announces every chunk of release ID and answers
 *                           each REQUEST with a CHUNK of codec VALUE (one
 *                           no node knows, as from a newer version); prints
 *                           "requests N", the node's BYE reason ("bye:
 *                           ...") and "closed by the node" if it was.
 *   unsolicited N SIZE SECONDS
 *                           sends up to N CHUNK frames of SIZE bytes that
 *                           answer no request (within SECONDS); prints the
 *                           node's BYE ("bye: ..."), "sent N" and "closed by
 *                           the node" if it was.
 *   silent SECONDS          sends nothing more (reads and drops what comes);
 *   slowframe SIZE SECONDS  sends a frame header declaring SIZE bytes, then a
 *                           byte a second; both print the node's BYE, "sent
 *                           N" and "closed by the node" if it was.
 *   manifest FILE N SECONDS waits (SECONDS at most) for the node's first
 *                           WANT_MANIFEST, then answers it N times with the
 *                           signed manifest FILE, its last byte (in the
 *                           signature) inverted; prints "sent N" and
 *                           "closed by the node" if it was.
 *   cancel FILE N SECONDS   asks for the first N chunks of the release
 *                           whose signed manifest is FILE, reads nothing
 *                           for 0.5 s (the node's answers queue up), sends
 *                           a CANCEL for each, then reads until N answers
 *                           came (SECONDS at most) and prints "chunks K"
 *                           (CHUNKs received in all), "bytes B" (their
 *                           payload bytes) and "rejects R" (REJECTs).
 *   order FILE RAW TEXT SECONDS
 *                           (a plain session: set HOSTILE_PLAIN=1, and the
 *                           node --no-encrypt --test-sendfile-local) asks
 *                           for the first 2 chunks of file RAW (random
 *                           bytes: the node then sends its other chunks
 *                           with sendfile) and reads them; then, reading
 *                           nothing, for 12 more (its queue fills), the
 *                           first chunk of file TEXT (it compresses: read
 *                           into memory, held behind the full queue), and
 *                           0.5 s later for 2 more of RAW; then reads all
 *                           17 answers (SECONDS at most) and prints
 *                           "answers N" and "out of order K" (answers that
 *                           came after one to a later request), then
 *                           "arrival" and the request ids of the answers
 *                           read after the first two, in arrival order.
 *
 * Prints "sent N" on stdout when done, then holds the connection open for
 * HOLD seconds (environment, default 0) so the test can look at the node.
 *
 * usage: hostile_peer HOST:PORT KEY CRED CLUSTER_PUB MODE ARGS...
 * Exit status 0, or 1 when the handshake fails, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cred.h"
#include "frame.h"
#include "hash.h"
#include "keys.h"
#include "manifest.h"
#include "msg.h"
#include "session.h"

static int sock = -1;
static struct shoal_session *sess;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes all of |p| before |deadline| (0: none). False when the node stopped
 * reading until the deadline, or the connection failed. */
static bool write_all(const uint8_t *p, size_t n, double deadline)
{
    while (n > 0) {
        ssize_t k = send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        double left = deadline > 0 ? deadline - now_s() : 1.0;
        if (left <= 0)
            return false;
        struct pollfd pf = {.fd = sock, .events = POLLOUT};
        (void)poll(&pf, 1, (int)(left * 1000) + 1);
    }
    return true;
}

static bool read_all(uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(sock, p, n, 0);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One frame's body (malloc'd), or NULL. */
static uint8_t *read_frame(size_t *len)
{
    uint8_t h[SHOAL_FRAME_HDR_LEN];
    uint8_t *b;

    if (!read_all(h, sizeof h))
        return NULL;
    *len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (*len > SHOAL_FRAME_MAX_AUTH || !(b = malloc(*len ? *len : 1)))
        return NULL;
    if (!read_all(b, *len)) {
        free(b);
        return NULL;
    }
    return b;
}

/* One frame opened and decoded into |m| (its bytes in *|body|, to free);
 * false when the connection ended or the frame is bad. */
static bool read_msg(struct shoal_msg *m, uint8_t **body)
{
    size_t len, plain;

    *body = read_frame(&len);
    if (!*body)
        return false;
    if (shoal_session_open(sess, *body, len, &plain) != 0 ||
        shoal_msg_decode(m, *body, plain) != 0) {
        free(*body);
        *body = NULL;
        return false;
    }
    return true;
}

static bool send_msg(const struct shoal_msg *m, double deadline)
{
    struct shoal_buf b;
    size_t flen;
    bool ok;

    shoal_buf_init(&b, SHOAL_FRAME_MAX_AUTH);
    ok = shoal_msg_encode(m, &b) == 0 && shoal_buf_reserve(&b, SHOAL_SESSION_TAG_LEN) == 0 &&
         shoal_session_seal(sess, b.data, b.len - SHOAL_FRAME_HDR_LEN, &flen) == 0 &&
         write_all(b.data, flen, deadline);
    shoal_buf_free(&b);
    return ok;
}

static int handshake(const char *key, const char *credf, const char *cluster)
{
    struct shoal_seckey sk;
    struct shoal_cred cred;
    struct shoal_buf cb, b;
    struct shoal_keyset *ks = NULL;
    struct shoal_msg m;
    uint8_t *body = NULL;
    size_t len;
    char why[256] = "";
    int rv = 1;

    shoal_buf_init(&cb, 4096);
    shoal_buf_init(&b, 65536);
    if (shoal_crypto_init() != 0 || shoal_seckey_load(key, &sk) != 0 ||
        shoal_cred_load(credf, &cred) != 0 || shoal_cred_encode(&cred, &cb) != 0 ||
        shoal_keyset_new(&ks) != 0 || shoal_keyset_load_file(ks, cluster) != 0) {
        fprintf(stderr, "hostile_peer: cannot load the key, credential or cluster key\n");
        goto out;
    }
    struct shoal_session_local loc = {
        .node_sk = &sk, .cred = cb.data, .cred_len = cb.len, .zone = "hostile",
        .listen_addr = "127.0.0.1:1", .encrypt = !getenv("HOSTILE_PLAIN"), .allow_aesgcm = true,
        .max_frame = SHOAL_FRAME_MAX_AUTH,
    };
    if (shoal_session_new(&sess, true, &loc) != 0 || shoal_session_hello(sess, &b) != 0 ||
        !write_all(b.data, b.len, 0))
        goto out;
    if (!(body = read_frame(&len)) || shoal_msg_decode(&m, body, len) != 0 ||
        m.type != SHOAL_MSG_HELLO ||
        shoal_session_on_hello(sess, &m.u.hello, body, len, ks, (uint64_t)time(NULL), why,
                               sizeof why) != 0) {
        fprintf(stderr, "hostile_peer: no usable HELLO: %s\n", why);
        goto out;
    }
    free(body);
    body = NULL;
    shoal_buf_reset(&b);
    if (shoal_session_auth(sess, &b) != 0 || !write_all(b.data, b.len, 0))
        goto out;
    if (!(body = read_frame(&len)) || shoal_msg_decode(&m, body, len) != 0 ||
        m.type != SHOAL_MSG_HELLO_AUTH || shoal_session_on_auth(sess, &m.u.hello_auth) != 0) {
        fprintf(stderr, "hostile_peer: the node did not authenticate\n");
        goto out;
    }
    rv = 0;
out:
    free(body);
    shoal_buf_free(&b);
    shoal_buf_free(&cb);
    shoal_keyset_free(ks);
    return rv;
}

/* Makes |m| a HAVE_BITFIELD of all NCHUNKS (text) chunks of release IDHEX;
 * returns its bits (malloc'd, the caller frees), NULL on a bad argument. */
static uint8_t *full_bitfield(struct shoal_msg *m, const char *idhex, const char *nchunks)
{
    uint32_t nch = (uint32_t)atol(nchunks);
    size_t nb = (nch + 7) / 8;
    uint8_t *ones = malloc(nb ? nb : 1);

    if (!ones || shoal_unhex(m->u.have_bitfield.manifest_id, 32, idhex, 64) != 0) {
        free(ones);
        return NULL;
    }
    memset(ones, 0xff, nb);
    if (nch % 8)
        ones[nb - 1] = (uint8_t)(0xff << (8 - nch % 8));
    m->type = SHOAL_MSG_HAVE_BITFIELD;
    m->u.have_bitfield.nchunks = nch;
    m->u.have_bitfield.bits.len = (uint32_t)nb;
    m->u.have_bitfield.bits.p = ones;
    return ones;
}

static int connect_to(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};

    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* A small receive buffer: the node's answers back up at once. */
    int rcv = 4096;
    (void)setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    return sock >= 0 && connect(sock, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -1;
}

/* Waits up to |ms| for a message from the node and drops it, printing a
 * BYE's reason. Returns false once the node has closed the connection. */
static bool read_one(int ms)
{
    struct pollfd pf = {.fd = sock, .events = POLLIN};
    struct shoal_msg in;
    uint8_t *body;

    if (poll(&pf, 1, ms) <= 0)
        return true;
    if (!read_msg(&in, &body))
        return false;
    if (in.type == SHOAL_MSG_BYE)
        printf("bye: %.*s\n", (int)in.u.bye.text.len, in.u.bye.text.p);
    free(body);
    return true;
}

/* The end of a mode: what it sent and whether the node closed on it. */
static int finish(long sent, bool closed)
{
    printf("sent %ld\n%s", sent, closed ? "closed by the node\n" : "");
    fflush(stdout);
    close(sock);
    shoal_session_free(sess);
    return 0;
}

int main(int argc, char **argv)
{
    struct shoal_msg m;
    long n, sent = 0;

    if (argc < 7) {
        fprintf(stderr, "usage: hostile_peer HOST:PORT KEY CRED CLUSTER_PUB "
                        "ping N SECONDS | "
                        "liar ID NCHUNKS SECONDS ignore|reject|busy[:MS] | "
                        "codec ID NCHUNKS VALUE SECONDS | "
                        "manifest FILE N SECONDS | cancel FILE N SECONDS | "
                        "order FILE RAW TEXT SECONDS\n");
        return 2;
    }
    if (connect_to(argv[1]) != 0) {
        perror("hostile_peer: connect");
        return 1;
    }
    if (handshake(argv[2], argv[3], argv[4]) != 0)
        return 1;
    memset(&m, 0, sizeof m);
    if (strcmp(argv[5], "ping") == 0 && argc == 8) {
        double deadline = now_s() + atof(argv[7]);
        n = atol(argv[6]);
        m.type = SHOAL_MSG_PING;
        for (; sent < n; sent++) {
            m.u.ping.nonce = (uint64_t)sent;
            if (!send_msg(&m, deadline))
                break;
        }
    } else if (strcmp(argv[5], "liar") == 0 && argc == 10) {
        uint8_t *ones = full_bitfield(&m, argv[6], argv[7]);
        double end = now_s() + atof(argv[8]);
        bool reject = strcmp(argv[9], "reject") == 0, busy = strncmp(argv[9], "busy", 4) == 0;
        uint32_t retry_ms = busy && argv[9][4] == ':' ? (uint32_t)strtoul(argv[9] + 5, NULL, 10) : 0;
        bool closed = false;

        if (!ones)
            return 2;
        if (!send_msg(&m, now_s() + 10))
            return 1;
        while (now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in;
            uint8_t *body;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body)) {
                closed = true;
                break;
            }
            if (in.type == SHOAL_MSG_REQUEST) {
                sent++;
                if (reject || busy) {
                    struct shoal_msg r;
                    memset(&r, 0, sizeof r);
                    r.type = SHOAL_MSG_REJECT;
                    r.u.reject.req_id = in.u.request.req_id;
                    r.u.reject.reason = busy ? SHOAL_REJECT_BUSY : SHOAL_REJECT_UNKNOWN;
                    r.u.reject.retry_after_ms = busy ? retry_ms : 0;
                    (void)send_msg(&r, now_s() + 5);
                }
            }
            free(body);
        }
        free(ones);
        printf("requests %ld\n", sent);
        if (closed)
            printf("closed by the node\n");
        fflush(stdout);
        close(sock);
        shoal_session_free(sess);
        return 0;
    } else if (strcmp(argv[5], "codec") == 0 && argc == 10) {
        uint8_t *ones = full_bitfield(&m, argv[6], argv[7]);
        uint8_t junk[64] = {0};
        double end = now_s() + atof(argv[9]);
        bool closed = false;

        if (!ones)
            return 2;
        if (!send_msg(&m, now_s() + 10))
            return 1;
        while (!closed && now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in, r;
            uint8_t *body;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body)) {
                closed = true;
                break;
            }
            if (in.type == SHOAL_MSG_BYE)
                printf("bye: %.*s\n", (int)in.u.bye.text.len, in.u.bye.text.p);
            if (in.type == SHOAL_MSG_REQUEST) {
                sent++;
                memset(&r, 0, sizeof r);
                r.type = SHOAL_MSG_CHUNK;
                r.u.chunk.req_id = in.u.request.req_id;
                memcpy(r.u.chunk.chunk_id, in.u.request.chunk_id, 32);
                r.u.chunk.codec = (uint8_t)atoi(argv[8]);
                r.u.chunk.raw_len = sizeof junk;
                r.u.chunk.payload.p = junk;
                r.u.chunk.payload.len = sizeof junk;
                (void)send_msg(&r, now_s() + 5);
            }
            free(body);
        }
        free(ones);
        printf("requests %ld\n%s", sent, closed ? "closed by the node\n" : "");
        fflush(stdout);
        close(sock);
        shoal_session_free(sess);
        return 0;
    } else if (strcmp(argv[5], "unsolicited") == 0 && argc == 9) {
        /* N CHUNK frames of SIZE zero bytes that answer no request. */
        double end = now_s() + atof(argv[8]);
        size_t size = (size_t)atol(argv[7]);
        uint8_t *junk = calloc(1, size ? size : 1);
        n = atol(argv[6]);
        for (; junk && sent < n && now_s() < end; sent++) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_CHUNK;
            m.u.chunk.req_id = (uint32_t)sent + 1000000u;
            memset(m.u.chunk.chunk_id, (int)(sent & 0xff), 32);
            m.u.chunk.codec = 0;
            m.u.chunk.raw_len = (uint32_t)size;
            m.u.chunk.payload.p = junk;
            m.u.chunk.payload.len = (uint32_t)size;
            if (!send_msg(&m, end))
                break;
        }
        free(junk);
        /* The node's BYE, if it closed on us (read until the close). */
        bool closed = false;
        while (!closed && now_s() < end + 5)
            closed = !read_one(100);
        return finish(sent, closed);
    } else if ((strcmp(argv[5], "silent") == 0 && argc == 7) ||
               (strcmp(argv[5], "slowframe") == 0 && argc == 8)) {
        /* silent: sends nothing more (reads and drops what comes);
         * slowframe: a frame header declaring SIZE bytes, then a byte a
         * second. Both until the node closes or SECONDS pass. */
        bool slow = argv[5][1] == 'l', closed = false;
        double end = now_s() + atof(argv[slow ? 7 : 6]), next = now_s();
        if (slow) {
            size_t size = (size_t)atol(argv[6]);
            uint8_t h[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                            (uint8_t)size};
            if (!write_all(h, 4, now_s() + 5))
                return 1;
        }
        while (!closed && now_s() < end) {
            if (slow && now_s() >= next) {
                uint8_t b = 0;
                if (send(sock, &b, 1, MSG_NOSIGNAL) == 1)
                    sent++;
                next += 1.0;
            }
            closed = !read_one(100);
        }
        return finish(sent, closed);
    } else if (strcmp(argv[5], "manifest") == 0 && argc == 9) {
        double end = now_s() + atof(argv[8]);
        bool asked = false, closed = false;
        uint8_t *mf = NULL;
        long mflen = 0;
        FILE *f = fopen(argv[6], "rb");

        if (f && fseek(f, 0, SEEK_END) == 0 && (mflen = ftell(f)) > 0 &&
            fseek(f, 0, SEEK_SET) == 0 && (mf = malloc((size_t)mflen)) &&
            fread(mf, 1, (size_t)mflen, f) == (size_t)mflen) {
            mf[mflen - 1] ^= 0xff;
        } else {
            fprintf(stderr, "hostile_peer: cannot read %s\n", argv[6]);
            return 2;
        }
        fclose(f);
        n = atol(argv[7]);
        while (!asked && now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in;
            uint8_t *body;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body)) {
                closed = true;
                break;
            }
            if (in.type == SHOAL_MSG_WANT_MANIFEST) {
                asked = true;
                memcpy(m.u.manifest.manifest_id, in.u.want_manifest.manifest_id, 32);
            }
            free(body);
        }
        m.type = SHOAL_MSG_MANIFEST_DATA;
        m.u.manifest.signed_manifest.p = mf;
        m.u.manifest.signed_manifest.len = (uint32_t)mflen;
        for (; asked && sent < n; sent++) {
            if (!send_msg(&m, end))
                break;
        }
        /* The node's answer: EOF (or a reset) once it closed us. */
        while (asked && !closed && now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in;
            uint8_t *body;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body))
                closed = true;
            free(body);
        }
        free(mf);
        printf("sent %ld\n%s%s", sent, asked ? "" : "never asked\n",
               closed ? "closed by the node\n" : "");
        fflush(stdout);
        close(sock);
        shoal_session_free(sess);
        return 0;
    } else if (strcmp(argv[5], "cancel") == 0 && argc == 9) {
        struct shoal_manifest *mf = NULL;
        double end;
        long chunks = 0, bytes = 0, rejects = 0;
        uint8_t *raw = NULL;
        long rawlen = 0;
        FILE *f = fopen(argv[6], "rb");

        if (!f || fseek(f, 0, SEEK_END) != 0 || (rawlen = ftell(f)) <= 0 ||
            fseek(f, 0, SEEK_SET) != 0 || !(raw = malloc((size_t)rawlen)) ||
            fread(raw, 1, (size_t)rawlen, f) != (size_t)rawlen ||
            shoal_manifest_parse(&mf, raw, (size_t)rawlen, NULL, NULL) != 0) {
            fprintf(stderr, "hostile_peer: cannot read the manifest %s\n", argv[6]);
            return 2;
        }
        fclose(f);
        free(raw);
        n = atol(argv[7]);
        if (n < 1 || (uint64_t)n > shoal_manifest_nchunks(mf))
            return 2;
        for (long i = 0; i < n; i++) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_REQUEST;
            m.u.request.req_id = (uint32_t)i + 1;
            memcpy(m.u.request.manifest_id, shoal_manifest_id(mf), 32);
            m.u.request.chunk_index = (uint32_t)i;
            memcpy(m.u.request.chunk_id, shoal_manifest_chunk(mf, (uint32_t)i)->id, 32);
            if (!send_msg(&m, now_s() + 10))
                return 1;
        }
        struct timespec pause = {0, 500000000};
        nanosleep(&pause, NULL);
        for (long i = 0; i < n; i++) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_CANCEL;
            m.u.cancel.req_id = (uint32_t)i + 1;
            if (!send_msg(&m, now_s() + 10))
                return 1;
        }
        end = now_s() + atof(argv[8]);
        /* Until every request is answered; a second answer to one would
         * come right behind, so a short look past that finds it. */
        while (now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in;
            uint8_t *body;
            if (chunks + rejects >= n && end > now_s() + 0.3)
                end = now_s() + 0.3;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body))
                break;
            if (in.type == SHOAL_MSG_CHUNK) {
                chunks++;
                bytes += (long)in.u.chunk.payload.len;
            }
            if (in.type == SHOAL_MSG_REJECT)
                rejects++;
            free(body);
        }
        printf("chunks %ld\nbytes %ld\nrejects %ld\n", chunks, bytes, rejects);
        fflush(stdout);
        shoal_manifest_free(mf);
        close(sock);
        shoal_session_free(sess);
        return 0;
    } else if (strcmp(argv[5], "order") == 0 && argc == 10) {
        struct shoal_manifest *mf = NULL;
        const struct shoal_mf_file *fr = NULL, *ft = NULL;
        uint32_t order[15], req = 0, asked = 0, answers = 0, last = 0, late = 0;
        uint32_t arrived[17], narrived = 0;
        uint8_t *raw = NULL;
        long rawlen = 0;
        FILE *f = fopen(argv[6], "rb");

        if (!f || fseek(f, 0, SEEK_END) != 0 || (rawlen = ftell(f)) <= 0 ||
            fseek(f, 0, SEEK_SET) != 0 || !(raw = malloc((size_t)rawlen)) ||
            fread(raw, 1, (size_t)rawlen, f) != (size_t)rawlen ||
            shoal_manifest_parse(&mf, raw, (size_t)rawlen, NULL, NULL) != 0) {
            fprintf(stderr, "hostile_peer: cannot read the manifest %s\n", argv[6]);
            return 2;
        }
        fclose(f);
        free(raw);
        for (uint32_t i = 0; i < shoal_manifest_nfiles(mf); i++) {
            const struct shoal_mf_file *mfi = shoal_manifest_file(mf, i);
            if (strcmp(mfi->path, argv[7]) == 0)
                fr = mfi;
            if (strcmp(mfi->path, argv[8]) == 0)
                ft = mfi;
        }
        if (!fr || !ft || fr->nchunks < 16 || ft->nchunks < 1) {
            fprintf(stderr, "hostile_peer: need files %s (16 chunks or more) and %s\n",
                    argv[7], argv[8]);
            return 2;
        }
        /* RAW's chunks 0-1 (read), 2-13, TEXT's 0, then RAW's 14-15: the
         * request ids count up in that order. */
        for (uint32_t i = 0; i < 15; i++)
            order[i] = i < 14 ? fr->first_chunk + i : ft->first_chunk;
        double end = now_s() + atof(argv[9]);
        for (uint32_t step = 0; step < 4; step++) {
            uint32_t upto = step == 0 ? 2 : step == 1 ? 14 : step == 2 ? 15 : 17;
            for (; asked < upto; asked++) {
                uint32_t c = asked < 15 ? order[asked] : fr->first_chunk + asked - 1;
                memset(&m, 0, sizeof m);
                m.type = SHOAL_MSG_REQUEST;
                m.u.request.req_id = ++req;
                memcpy(m.u.request.manifest_id, shoal_manifest_id(mf), 32);
                m.u.request.chunk_index = c;
                memcpy(m.u.request.chunk_id, shoal_manifest_chunk(mf, c)->id, 32);
                if (!send_msg(&m, now_s() + 10))
                    return 1;
            }
            /* The first two answers read: RAW's codec probes are done. */
            while (step == 0 && answers < 2 && now_s() < end) {
                struct pollfd pf = {.fd = sock, .events = POLLIN};
                struct shoal_msg in;
                uint8_t *body;
                if (poll(&pf, 1, 100) <= 0)
                    continue;
                if (!read_msg(&in, &body))
                    break;
                if (in.type == SHOAL_MSG_CHUNK || in.type == SHOAL_MSG_REJECT) {
                    answers++;
                    last = in.type == SHOAL_MSG_CHUNK ? in.u.chunk.req_id : in.u.reject.req_id;
                }
                free(body);
            }
            if (step == 2) {
                struct timespec pause = {0, 500000000};
                nanosleep(&pause, NULL);
            }
        }
        while (answers < 17 && now_s() < end) {
            struct pollfd pf = {.fd = sock, .events = POLLIN};
            struct shoal_msg in;
            uint8_t *body;
            if (poll(&pf, 1, 100) <= 0)
                continue;
            if (!read_msg(&in, &body))
                break;
            if (in.type == SHOAL_MSG_CHUNK || in.type == SHOAL_MSG_REJECT) {
                uint32_t id = in.type == SHOAL_MSG_CHUNK ? in.u.chunk.req_id
                                                         : in.u.reject.req_id;
                if (in.type == SHOAL_MSG_REJECT)
                    printf("reject of request %u: reason %u\n", id, in.u.reject.reason);
                answers++;
                late += id < last;
                last = id > last ? id : last;
                if (narrived < 17)
                    arrived[narrived++] = id;
            }
            free(body);
        }
        printf("answers %u\nout of order %u\narrival", answers, late);
        for (uint32_t i = 0; i < narrived; i++)
            printf(" %u", arrived[i]);
        printf("\n");
        fflush(stdout);
        shoal_manifest_free(mf);
        close(sock);
        shoal_session_free(sess);
        return 0;
    } else {
        fprintf(stderr, "hostile_peer: unknown mode or arguments\n");
        return 2;
    }
    printf("sent %ld\n", sent);
    fflush(stdout);
    const char *hold = getenv("HOLD");
    if (hold)
        sleep((unsigned)atoi(hold));
    close(sock);
    shoal_session_free(sess);
    return 0;
}
