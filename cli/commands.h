/*
 * cli/commands.h - one entry point per pml-migrate command (cli/<cmd>.c).
 * Each takes argc/argv starting at the command name and returns the
 * process exit code (PMG_EXIT_*, util/util.h).
 */
#ifndef PMG_CLI_COMMANDS_H
#define PMG_CLI_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_evacuate(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
