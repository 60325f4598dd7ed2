/* SPDX-License-Identifier: MIT */
/*
 * The `shoal` command's subcommands. Each takes the arguments after its own
 * name (argv[0] is the subcommand name), prints results on stdout and
 * errors on stderr, and returns the process exit status (0 ok, 1 failure,
 * 2 usage error).
 */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

int shoal_cmd_keygen(int argc, char **argv);
int shoal_cmd_cred(int argc, char **argv);
int shoal_cmd_chunk(int argc, char **argv);
int shoal_cmd_hash(int argc, char **argv);
int shoal_cmd_manifest(int argc, char **argv);
int shoal_cmd_publish(int argc, char **argv);
int shoal_cmd_rollout(int argc, char **argv);
/* Prints a tracker's Prometheus metrics (STATS_REQ). */
int shoal_cmd_tracker_stats(int argc, char **argv);
/* The local daemon, over its control socket (cli_ctl.c). */
int shoal_cmd_pull(int argc, char **argv);
int shoal_cmd_status(int argc, char **argv);
int shoal_cmd_peers(int argc, char **argv);
int shoal_cmd_metrics(int argc, char **argv);
int shoal_cmd_drop(int argc, char **argv);

#endif
