/* SPDX-License-Identifier: MIT */
/* `shoal`: the command-line tool. Thin: dispatch to the subcommands in cli*.c. */
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* In two parts: ISO C promises only 4095-byte string literals. */
static const char usage_tools[] =
    "usage: shoal <command> [options]\n"
    "\n"
    "shoal moves a model release (a Hugging Face repo at one commit) across a fleet:\n"
    "each VM's daemon, shoald, fetches signed, content-addressed chunks from peers\n"
    "and only what no peer has from the Hub. This tool works with keys, manifests\n"
    "and files directly.\n"
    "\n"
    "Keys and credentials:\n"
    "  keygen FILE                    make an Ed25519 key pair: FILE (secret, mode 0600)\n"
    "                                 and FILE.pub\n"
    "  cred issue --cluster-key FILE --node PUBFILE --out FILE [--days N]\n"
    "                                 sign a node's public key with the cluster key\n"
    "                                 (default 30 days; fractions allowed, e.g.\n"
    "                                 0.0417 for an hour)\n"
    "  cred verify --cluster-pub PUBFILE CREDFILE\n"
    "                                 check a credential's signature, key and expiry\n"
    "\n"
    "Content addressing:\n"
    "  chunk [--min N] [--avg N] [--max N] [--ids] FILE...\n"
    "                                 cut files into content-defined chunks (defaults\n"
    "                                 256K/1M/4M) and print counts, or every chunk id\n"
    "  hash FILE...                   print sha256 and BLAKE2b-256 of whole files\n"
    "\n"
    "Manifests (one signed description of a release):\n"
    "  manifest build DIR --repo ORG/NAME --commit SHA --key FILE --out FILE\n"
    "                 [--dataset] [--min N --avg N --max N]\n"
    "                                 chunk every file of a repo directory and sign\n"
    "  manifest verify FILE --trust PUBFILE...\n"
    "                                 check the signature against trusted publishers\n"
    "  manifest show FILE [--trust PUBFILE] [--chunks]\n"
    "                                 print what a manifest holds\n"
    "\n";

static const char usage_fleet[] =
    "Hub and tracker:\n"
    "  publish [datasets/]ORG/NAME[@REV] [--dataset] --key PUBLISHER_KEY\n"
    "          (--out FILE | --tracker HOST:PORT --identity NODE_KEY --cred CRED)\n"
    "          [--previous FILE]... [--hub-endpoint URL] [--hub-token-file FILE]\n"
    "          [--hub-ca FILE] [--quiet] [--force]\n"
    "                                 resolve a release on the Hub (HF_ENDPOINT,\n"
    "                                 HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else\n"
    "                                 HF_TOKEN_PATH or $HF_HOME/token;\n"
    "                                 --hub-ca: PEM bundle of the CAs an\n"
    "                                 https Hub or gateway must chain to, instead of\n"
    "                                 the system's; default $CURL_CA_BUNDLE, else\n"
    "                                 $SSL_CERT_FILE), stream and chunk every file once,\n"
    "                                 check each against the Hub's sha256, sign the\n"
    "                                 manifest; write it and/or register it (the\n"
    "                                 tracker is asked first: NODE_KEY's public key\n"
    "                                 must be in its --admin-keys, the publisher key\n"
    "                                 in its --publisher-keys; a manifest it then\n"
    "                                 refuses is saved and the path printed). A\n"
    "                                 commit the tracker already holds a manifest\n"
    "                                 of, signed by this key with the same chunking,\n"
    "                                 is not streamed again: that manifest is kept\n"
    "                                 (and written to --out); --force signs anew.\n"
    "                                 An LFS file whose sha256 and size an earlier\n"
    "                                 manifest of this key (--previous FILE, and the\n"
    "                                 --out file of the last run) lists too, with the\n"
    "                                 same chunking, is not streamed: its chunk list\n"
    "                                 is taken from there\n"
    "  publish --manifest FILE --tracker HOST:PORT --identity NODE_KEY --cred CRED\n"
    "                                 register a manifest signed earlier (publish\n"
    "                                 --out, manifest build) with a tracker as it\n"
    "                                 is: same bytes, same manifest id (a second\n"
    "                                 tracker, or one that lost its state; its\n"
    "                                 signer must be in the tracker's\n"
    "                                 --publisher-keys)\n"
    ;

/* The fleet commands go on (one string would pass C's 4095-byte limit). */
static const char usage_fleet2[] =
    "  rollout [datasets/]ORG/NAME@COMMIT [--zone Z] [--ref BRANCH]\n"
    "          [--remove | --status] --tracker HOST:PORT --key ADMIN_KEY --cred CRED\n"
    "                                 record that every node (in zone Z) should hold\n"
    "                                 the release, or show how many nodes hold it\n"
    "                                 (recording needs ADMIN_KEY's public key in\n"
    "                                 the tracker's --admin-keys, COMMIT the full\n"
    "                                 40-hex commit, and a manifest of it published\n"
    "                                 to the tracker first: shoal publish); --ref:\n"
    "                                 nodes also write refs/BRANCH = COMMIT once they\n"
    "                                 hold it (the newest rollout naming it wins)\n"
    "  rollout --list --tracker HOST:PORT --key KEY --cred CRED\n"
    "                                 every rollout the tracker records, with its\n"
    "                                 nodes complete/partial/without it and gone\n"
    "                                 (any node key with a cluster credential)\n"
    "  tracker-stats --tracker HOST:PORT --key NODE_KEY --cred CRED\n"
    "                                 print the tracker's Prometheus metrics (any\n"
    "                                 node key with a cluster credential)\n"
    "  (rollout and tracker-stats take --identity as another name for --key:\n"
    "  the login identity, as in publish)\n"
    "  Each of these also takes --tracker-keys FILE (repeatable; the format of\n"
    "  shoald's --tracker-keys): the tracker must prove one of the keys listed\n"
    "  (shoal-tracker --key) before anything but the login is sent, and the\n"
    "  session is then sealed both ways. Without it the session is plain: anyone\n"
    "  on the path can read what is published and change a rollout on the way.\n"
    "\n";

static const char usage_daemon[] =
    "The local daemon (shoald), over its control socket (--socket PATH; default\n"
    "$XDG_RUNTIME_DIR/shoald.sock, /run/shoald/shoald.sock for root). To reach the\n"
    "system service (shoald.service) as another user, be in group shoal and pass\n"
    "--socket /run/shoald/shoald.sock:\n"
    "  pull [datasets/]ORG/NAME@REV|MANIFEST_ID\n"
    "          [--socket PATH] [--timeout S] [--quiet]\n"
    "                                 fetch a release and wait until it is complete,\n"
    "                                 with progress (bytes, rate, peers, share from the\n"
    "                                 origin, ETA); exit 0 when complete; exit 1 if\n"
    "                                 shoald sends nothing for 10 s (stopped, stuck)\n"
    "  status [--socket PATH]         releases here and their progress\n"
    "  peers [--socket PATH]          connected peers: node, address, zone, cipher, rates\n"
    "  metrics [--socket PATH]        counters in Prometheus text format\n"
    "  drop [datasets/]ORG/NAME@COMMIT|MANIFEST_ID [--socket PATH]\n"
    "                                 stop fetching and serving a release and forget it:\n"
    "                                 shoald keeps a list of the releases it has open\n"
    "                                 (--state-dir) and reopens them when it restarts;\n"
    "                                 a dropped one is not. Its complete files stay in\n"
    "                                 the Hugging Face cache (delete them with\n"
    "                                 huggingface-cli delete-cache), unfinished ones are\n"
    "                                 removed; loaders waiting for\n"
    "                                 it get an error. A release named by shoald's\n"
    "                                 --pull/--manifest or a tracker rollout comes back\n"
    "                                 (change those first). Exit 1 if it is not here\n"
    "\n"
    "  help                           this text\n"
    "\n"
    "Sizes accept K, M, G suffixes (powers of 1024). Exit status: 0 success,\n"
    "1 failure, 2 usage error.\n";

static const char *const usage[] = {usage_tools, usage_fleet, usage_fleet2, usage_daemon,
                                     NULL};

static void print_usage(FILE *out)
{
    for (const char *const *part = usage; *part; part++)
        fputs(*part, out);
}

/* Every command's --help (or -h) is answered here, from the usage text:
 * exit 0, on stdout. */
struct cmd {
    const char *name;
    int (*fn)(int, char **);
};

/* True when |argv| asks for help before any "--". */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* Prints the entries of |name| from the usage text: each line that starts
 * with "  NAME " and the lines indented under it. */
static void command_help(const char *name)
{
    size_t nl = strlen(name);
    bool in = false;
    const char *l;

    printf("usage:\n");
    for (const char *const *part = usage; *part; part++) {
        for (l = *part; *l;) {
            const char *e = strchr(l, '\n');
            size_t len = e ? (size_t)(e - l) : strlen(l);
            if (len > 2 && l[0] == ' ' && l[1] == ' ' && l[2] != ' ')
                in = len > nl + 2 && strncmp(l + 2, name, nl) == 0 && l[2 + nl] == ' ';
            else if (len == 0 || l[0] != ' ')
                in = false;
            /* "shoal " before an entry; its continuation lines move along. */
            if (in)
                printf("  %s%.*s\n", l[2] != ' ' ? "shoal " : "      ", (int)len - 2, l + 2);
            l += len + (e != NULL);
        }
    }
    printf("\n'shoal help' describes every command.\n");
}

static const struct cmd cmds[] = {
    {"keygen", shoal_cmd_keygen},
    {"cred", shoal_cmd_cred},
    {"chunk", shoal_cmd_chunk},
    {"hash", shoal_cmd_hash},
    {"manifest", shoal_cmd_manifest},
    {"publish", shoal_cmd_publish},
    {"rollout", shoal_cmd_rollout},
    {"tracker-stats", shoal_cmd_tracker_stats},
    {"pull", shoal_cmd_pull},
    {"status", shoal_cmd_status},
    {"peers", shoal_cmd_peers},
    {"metrics", shoal_cmd_metrics},
    {"drop", shoal_cmd_drop},
};

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        if (wants_help(argc - 1, argv + 1)) {
            command_help(cmds[i].name);
            return 0;
        }
        return cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "shoal: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
