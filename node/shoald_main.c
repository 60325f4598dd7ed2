/* SPDX-License-Identifier: MIT */
/* shoald: the shoal node daemon. Thin: options into a config, then daemon.c. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "daemon.h"

static const char intro[] =
    "usage: shoald [--config FILE] [options]\n"
    "\n"
    "shoald runs on every machine of a fleet and brings model releases (a Hugging\n"
    "Face repo at one commit, described by a signed shoal manifest) onto it as fast\n"
    "as the network allows: chunks come from peers first, every chunk is verified\n"
    "(BLAKE2b-256) before it is stored, and files land in the Hugging Face cache\n"
    "layout, so existing tools load them offline.\n"
    "\n"
    "Peers authenticate each other: each HELLO carries the node's public key and a\n"
    "cluster credential (the node key signed by a cluster key); a peer whose\n"
    "credential does not verify against --cluster-keys is told why and\n"
    "disconnected, and receives nothing. Sessions are then sealed with AES-256-GCM\n"
    "(XChaCha20-Poly1305 without AES-NI) unless both sides say --no-encrypt. A peer\n"
    "that sends a chunk failing its hash is banned for --ban-seconds and the chunk\n"
    "is fetched elsewhere.\n"
    "\n"
    "A setup that can never work stops the start (exit 1, saying what to fix): a\n"
    "credential for another node key, not verifying against --cluster-keys, or\n"
    "expired; no --cred on a node with a tracker or a peer; no --publisher-keys; a\n"
    "cache dir that cannot be created or written. A credential ending within 7 days\n"
    "is warned about at start and daily (renew: shoal cred issue, then restart);\n"
    "`shoal metrics` has shoal_credential_expiry_seconds. A node that would\n"
    "announce a loopback address to a tracker warns: other hosts cannot reach it.\n"
    "\n"
    "Compression (--compress-level N, default 1; 0 turns it off): a chunk served is\n"
    "compressed with zstd only when that saves enough (chunks of 256 KiB and more are\n"
    "judged by a 64 KiB sample from their middle first): at least 10% for a peer on\n"
    "another host, at least 50% (text, JSON, configs) for a peer on the same host\n"
    "(loopback or our own address), where a byte costs a memcpy and compressing\n"
    "weights only burns CPU.\n"
    "bf16 weights save ~22% at level 1; from level 3 on the byte-grouped form (high\n"
    "bytes, then low bytes; ~32%) is tried too, which costs ~40% more CPU and pays\n"
    "only on slow links.\n"
    "\n"
    "Options (each can also be written in the config file as 'key = value', with the\n"
    "option name without dashes; booleans take true/false; command-line options\n"
    "override the file; list options repeat; '#' at the start of a line or after a\n"
    "space starts a comment, also after a value; lines up to 4095 bytes):\n"
    "  --config FILE                read settings from FILE first\n"
    "  --help                       this text\n";

static const char outro[] =
    "\n"
    "Examples:\n"
    "  seed a release from a local copy of the repo:\n"
    "    shoald --node-key a.key --cred a.cred --cluster-keys cluster.pub \\\n"
    "           --publisher-keys pub.pub --cache-dir /srv/hf --listen 0.0.0.0:7600 \\\n"
    "           --manifest rel.manifest --seed-dir ./repo\n"
    "  pull it on another machine:\n"
    "    shoald --node-key b.key --cred b.cred --cluster-keys cluster.pub \\\n"
    "           --publisher-keys pub.pub --peer 10.0.0.1:7600 --pull <manifest id>\n"
    "\n"
    "Signals: SIGTERM or SIGINT shut down gracefully (BYE to peers, queued writes\n"
    "flushed, store state synced); SIGHUP is logged and ignored. Key, credential\n"
    "and token files are read at start, except --deny-keys (read again on change):\n"
    "restart shoald to change the others. A restart changes nothing: verified chunks stay,\n"
    "and shoald lists the releases it has open in a state file (--state-dir, one file\n"
    "per cache dir, rewritten atomically when the set changes) and reopens them all\n"
    "at start, after --pull/--manifest: complete ones seed, incomplete ones resume,\n"
    "whoever asked for them (`shoal pull`, a loader, a rollout). One whose manifest\n"
    "or files are gone from the cache is logged and forgotten; an unreadable state\n"
    "file is logged, moved aside (.bad) and does not stop the start. `shoal drop\n"
    "ORG/NAME@COMMIT` stops fetching and serving a release and forgets it (its\n"
    "complete files stay in the cache: huggingface-cli delete-cache removes them;\n"
    "unfinished ones are removed).\n"
    "Logs go to stderr, one line per event. Exit status: 0 after a clean shutdown,\n"
    "1 on a setup error, 2 on a usage error.\n";

int main(int argc, char **argv)
{
    struct shoal_config cfg;
    struct shoal_daemon *d = NULL;
    char why[512];
    int rc = 1;

    /* A peer, tracker or loader that resets its connection while we write
     * must fail that write (EPIPE), not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    /* Chunk buffers are allocated on worker threads and freed
     * on the loop thread (and the other way round): with glibc's default of
     * up to 8 arenas per core, each arena keeps its own freed memory, and a
     * busy seed's RSS grows with the number of threads that ever touched a
     * buffer. Two arenas keep contention low on the hot paths while freed
     * blocks get reused. */
    (void)mallopt(M_ARENA_MAX, 2);
    if (shoal_config_init(&cfg) != 0)
        return 1;
    /* The config file goes first so command-line options override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(intro, stdout);
            shoal_config_usage(stdout);
            fputs(outro, stdout);
            rc = 0;
            goto out;
        }
        /* --config FILE or --config=FILE */
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            const char *file = argv[i][8] == '=' ? argv[i] + 9 : argv[i + 1];
            if (argv[i][8] != '=' && i + 1 >= argc) {
                fprintf(stderr, "shoald: --config needs a file\n");
                rc = 2;
                goto out;
            }
            if (!*file) {
                fprintf(stderr, "shoald: --config needs a file\n");
                rc = 2;
                goto out;
            }
            /* A config file that cannot be read or holds a bad setting is a
             * setup error (1), not a command-line usage error (2). */
            if (shoal_config_load(&cfg, file, why, sizeof why) != 0) {
                fprintf(stderr, "shoald: %s\n", why);
                rc = 1;
                goto out;
            }
            i += argv[i][8] != '=';
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *key, *val = NULL;
        char name[128];
        const char *eq;

        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue; /* read above */
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "shoald: unexpected argument '%s' (try --help)\n", a);
            rc = 2;
            goto out;
        }
        key = a + 2;
        eq = strchr(key, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - key), key);
            key = name;
            val = eq + 1;
        } else if (!shoal_config_is_known(key)) {
            fprintf(stderr, "shoald: unknown option --%s (try --help)\n", key);
            rc = 2;
            goto out;
        } else if (!shoal_config_is_flag(key)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shoald: --%s needs a value (try --help)\n", key);
                rc = 2;
                goto out;
            }
            val = argv[++i];
        }
        if (shoal_config_set(&cfg, key, val, why, sizeof why) != 0) {
            fprintf(stderr, "shoald: %s (try --help)\n", why);
            rc = 2;
            goto out;
        }
    }
    if (shoal_daemon_new(&d, &cfg) != 0)
        goto out;
    rc = shoal_daemon_run(d);
out:
    shoal_daemon_free(d);
    shoal_config_free(&cfg);
    return rc;
}
