/* Small HDF5 helpers shared by the files transmla writes (token sets,
 * conversion state): HDF5's error stack silenced and reduced to one line,
 * scalar attributes, 1-D float64 and float32 datasets, and files that appear complete or
 * not at all (written under a temporary name, then renamed). Every failure
 * records "PATH: what" with tm_fail and returns -1. */
#ifndef TM_IO_H5_UTIL_H
#define TM_IO_H5_UTIL_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

/* HDF5 prints its error stack by default, and again when the library closes
 * with objects it could not close; transmla reports one line instead. Every
 * HDF5 user calls this first: printing goes off for the whole process. */
void h5_quiet(void);
/* The most specific message on HDF5's error stack, e.g. "truncated file: ..."
 * or, for a failed read or write, the system's "No space left on device".
 * Call it right after the failing call: the next HDF5 call clears the stack. */
const char *h5_reason(void);
/* 1: the file starts with the HDF5 signature. */
int h5_is_hdf5(const char *path);

/* Create PATH.tmp-PID (1.10 format: checksummed metadata); *tmp is malloc'd. */
hid_t h5_create_temp(const char *path, char **tmp);
/* Close the file; when rc is 0 rename tmp onto path, else remove tmp. Frees tmp. */
int h5_close_rename(hid_t file, char *tmp, const char *path, int rc);
/* Close every object still open in the file (datasets, groups, attributes,
 * types) but not the file itself: before a close on a failure path. */
void h5_close_objects(hid_t file);
/* Rank 0, before a parallel write: create `file` as an empty HDF5 file (the
 * 1.10 format) with `bytes` of disk space reserved for it (fallocate), so
 * that a full disk or quota is reported here, before HDF5 has written
 * anything; a failed write inside parallel HDF5 can leave ranks waiting for
 * one another, and a file whose close fails cannot be released cleanly.
 * File systems without fallocate, and bytes 0, get no reservation. `path`
 * names it in errors. */
int h5_create_reserved(const char *path, const char *file, int64_t bytes);
/* Open that file for writing, collectively over comm, with the MPI-IO driver
 * (parallel HDF5). Every rank of comm must call this, and then make the same
 * metadata calls (groups, datasets, attributes) in the same order until the
 * collective H5Fclose. */
hid_t h5_open_parallel(const char *path, const char *file, MPI_Comm comm);
/* Open read-only after checking the signature; a strong close releases
 * whatever a failed call on a damaged file left open. */
hid_t h5_open_read(const char *path);

int h5_write_attr(hid_t obj, const char *path, const char *name, hid_t type, hid_t mem_type, const void *value);
int h5_write_str_attr(hid_t obj, const char *path, const char *name, const char *value);
int h5_write_i64_attr(hid_t obj, const char *path, const char *name, int64_t value);
int h5_write_f64_attr(hid_t obj, const char *path, const char *name, double value);
/* Scalar attributes; read_str mallocs *out. */
int h5_read_str_attr(hid_t obj, const char *path, const char *name, char **out);
int h5_read_int_attr(hid_t obj, const char *path, const char *name, int is_unsigned, void *out);
int h5_read_int_attr_in(hid_t obj, const char *path, const char *name, int64_t lo, int64_t hi, int64_t *out);
int h5_read_f64_attr(hid_t obj, const char *path, const char *name, double *out);

/* A contiguous 1-D float64 dataset of n values (n may be 0). */
int h5_write_f64(hid_t file, const char *path, const char *name, const double *data, int64_t n);
/* Read dataset name, which must hold exactly n float64 values. */
int h5_read_f64(hid_t file, const char *path, const char *name, double *data, int64_t n);
/* The same for float32 (the stored type is float32: nothing is rounded). */
int h5_write_f32(hid_t file, const char *path, const char *name, const float *data, int64_t n);
int h5_read_f32(hid_t file, const char *path, const char *name, float *data, int64_t n);

#endif
