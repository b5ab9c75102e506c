/* File-system path helpers shared by the readers and writers. */
#ifndef TM_IO_PATH_H
#define TM_IO_PATH_H

/* "dir/name", malloc'd. */
char *path_join(const char *dir, const char *name);

/* mkdir -p dir; errors name dir, and `what` says what the folder is for
 * ("the checkpoint folder"). 0 or -1. */
int path_make_dirs(const char *dir, const char *what);

#endif
