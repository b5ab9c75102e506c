#ifndef TM_CLI_COMMANDS_H
#define TM_CLI_COMMANDS_H

/* Each returns the process exit code; argv[0] is the subcommand name. */
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_version(int argc, char **argv);

/* Print "transmla: error: <tm_error()>" and return 1. */
int cli_fail(void);

#endif
