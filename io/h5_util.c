#define _GNU_SOURCE /* memfd_create, fallocate */
#include "io/h5_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/base/checked.h"
#include "io/base/error.h"

static const char hdf5_signature[8] = "\211HDF\r\n\032\n";

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *buf) {
    if (n == 0 && e->desc) snprintf(buf, 1024, "%s", e->desc);
    return 0;
}

const char *h5_reason(void) {
    static _Thread_local char buf[1024];
    snprintf(buf, sizeof buf, "HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, buf);
    /* a failed read or write (sec2 driver) carries the system's message
     * among the file name, offsets and sizes: that part says it all */
    static const char tag[] = "error message = '";
    char *m = strstr(buf, tag), *end = m ? strchr(m + sizeof tag - 1, '\'') : NULL;
    if (end) {
        *end = 0;
        memmove(buf, m + sizeof tag - 1, strlen(m + sizeof tag - 1) + 1);
    }
    return buf;
}

int h5_is_hdf5(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    fclose(fp);
    return got == sizeof sig && memcmp(sig, hdf5_signature, sizeof sig) == 0;
}

hid_t h5_create_temp(const char *path, char **tmp) {
    h5_quiet();
    size_t n = strlen(path) + 32;
    *tmp = mallocCheck(n);
    snprintf(*tmp, n, "%s.tmp-%ld", path, (long)getpid());
    /* The 1.10 file format: checksums on the superblock, object headers and
     * chunk indexes (damage is reported, not followed), and attributes larger
     * than 64 KiB in dense storage. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = -1;
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) >= 0)
        file = H5Fcreate(*tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        tm_fail("%s: cannot create %s: %s", path, *tmp, h5_reason());
        remove(*tmp); /* H5Fcreate may have made it before failing */
        free(*tmp);
        *tmp = NULL;
    }
    if (fapl >= 0) H5Pclose(fapl);
    return file;
}

void h5_close_objects(hid_t file) {
    unsigned types = H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR;
    ssize_t n = H5Fget_obj_count(file, types);
    if (n <= 0) return;
    hid_t *ids = mallocCheck((size_t)n * sizeof *ids);
    n = H5Fget_obj_ids(file, types, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        if (H5Iget_type(ids[i]) == H5I_ATTR) H5Aclose(ids[i]);
        else H5Oclose(ids[i]);
    }
    free(ids);
}

/* A file given up after a failed write still has dirty metadata, which its
 * close writes; on a full disk that write fails too, and HDF5 1.10 then
 * keeps the half-freed file in its table of open objects, where closing the
 * library (at MPI_Finalize) crashes on it. Pointing the file's descriptor at
 * anonymous memory lets that close succeed; the file is removed anyway. */
static void discard_writes(hid_t file) {
    hid_t fapl = H5Fget_access_plist(file);
    int sec2 = fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2, *fd = NULL;
    if (fapl >= 0) H5Pclose(fapl);
    if (!sec2 || H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&fd) < 0 || !fd) return;
    int mem = memfd_create("transmla-discarded", MFD_CLOEXEC);
    if (mem < 0) return;
    dup2(mem, *fd);
    close(mem);
}

/* Close a file written serially: flushed first, because a failed flush still
 * lets the file be given up cleanly (discard_writes) and a failed close does
 * not. rc != 0: it is given up anyway. -1 when rc was set or anything failed. */
static int close_written(hid_t file, const char *path, const char *name, int rc) {
    if (!rc && H5Fflush(file, H5F_SCOPE_LOCAL) < 0) rc = tm_fail("%s: writing %s: %s", path, name, h5_reason());
    if (rc) {
        h5_close_objects(file);
        discard_writes(file);
    }
    if (H5Fclose(file) < 0 && !rc) rc = tm_fail("%s: closing %s: %s", path, name, h5_reason());
    return rc ? -1 : 0;
}

int h5_create_reserved(const char *path, const char *file, int64_t bytes) {
    h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fid = -1;
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) >= 0)
        fid = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fid < 0) tm_fail("%s: cannot create %s: %s", path, file, h5_reason());
    if (fapl >= 0) H5Pclose(fapl);
    if (fid < 0) {
        remove(file);
        return -1;
    }
    if (close_written(fid, path, file, 0)) {
        remove(file);
        return -1;
    }
    int fd = open(file, O_RDWR), err = 0;
    if (fd < 0 || (bytes > 0 && fallocate(fd, 0, 0, (off_t)bytes) != 0 && errno != EOPNOTSUPP && errno != ENOSYS))
        err = errno;
    if (fd >= 0) close(fd);
    if (!err) return 0;
    remove(file);
    return tm_fail("%s: cannot reserve %.1f MiB for %s: %s", path, bytes / 1048576.0, file, strerror(err));
}

hid_t h5_open_parallel(const char *path, const char *file, MPI_Comm comm) {
    h5_quiet();
#ifdef H5_HAVE_PARALLEL
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fid = -1;
    if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) >= 0 &&
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) >= 0)
        fid = H5Fopen(file, H5F_ACC_RDWR, fapl);
    if (fid < 0) tm_fail("%s: cannot open %s for writing: %s", path, file, h5_reason());
    if (fapl >= 0) H5Pclose(fapl);
    return fid < 0 ? -1 : fid;
#else
    (void)file;
    (void)comm;
    return tm_fail("%s: this HDF5 has no parallel (MPI-IO) support; build against libhdf5-openmpi", path);
#endif
}

int h5_close_rename(hid_t file, char *tmp, const char *path, int rc) {
    rc = close_written(file, path, tmp, rc);
    if (!rc && rename(tmp, path) != 0) rc = tm_fail("%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
    if (rc) remove(tmp);
    free(tmp);
    return rc ? -1 : 0;
}

hid_t h5_open_read(const char *path) {
    h5_quiet();
    FILE *fp = fopen(path, "rb");
    if (!fp) return tm_fail("%s: cannot open: %s", path, strerror(errno));
    fclose(fp);
    if (!h5_is_hdf5(path)) return tm_fail("%s: not an HDF5 file (no HDF5 signature at byte 0)", path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = -1;
    if (fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0) file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) tm_fail("%s: cannot open as HDF5 (truncated or corrupt?): %s", path, h5_reason());
    if (fapl >= 0) H5Pclose(fapl);
    return file < 0 ? -1 : file;
}

/* ---- attributes ---- */

int h5_write_attr(hid_t obj, const char *path, const char *name, hid_t type, hid_t mem_type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR), attr = -1;
    int rc = space < 0 || (attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
             H5Awrite(attr, mem_type, value) < 0;
    if (rc) tm_fail("%s: writing attribute '%s': %s", path, name, h5_reason());
    if (attr >= 0 && H5Aclose(attr) < 0 && !rc) rc = tm_fail("%s: writing attribute '%s': %s", path, name, h5_reason());
    if (space >= 0) H5Sclose(space);
    return rc ? -1 : 0;
}

/* Fixed-length UTF-8 strings: stored inside the (checksummed) object header,
 * where variable-length ones would live in the global heap, which has no
 * checksum and which HDF5 follows blindly when a file is damaged. */
int h5_write_str_attr(hid_t obj, const char *path, const char *name, const char *value) {
    const char *v = value ? value : "";
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, strlen(v) + 1) < 0 || H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        if (type >= 0) H5Tclose(type);
        return tm_fail("%s: writing attribute '%s': %s", path, name, h5_reason());
    }
    int rc = h5_write_attr(obj, path, name, type, type, v);
    H5Tclose(type);
    return rc;
}

int h5_write_i64_attr(hid_t obj, const char *path, const char *name, int64_t value) {
    return h5_write_attr(obj, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int h5_write_f64_attr(hid_t obj, const char *path, const char *name, double value) {
    return h5_write_attr(obj, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

/* Either HDF5 string kind. The memory type takes the stored character set:
 * HDF5 converts none into another. */
int h5_read_str_attr(hid_t obj, const char *path, const char *name, char **out) {
    *out = NULL;
    if (H5Aexists(obj, name) <= 0) return tm_fail("%s: no attribute '%s'", path, name);
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT), type = attr >= 0 ? H5Aget_type(attr) : -1, mem = -1;
    int rc = -1;
    if (type < 0) {
        tm_fail("%s: attribute '%s': %s", path, name, h5_reason());
    } else if (H5Tget_class(type) != H5T_STRING) {
        tm_fail("%s: attribute '%s' is not a string", path, name);
    } else if (H5Tis_variable_str(type) > 0) {
        char *v = NULL;
        mem = H5Tcopy(H5T_C_S1);
        if (mem >= 0 && H5Tset_size(mem, H5T_VARIABLE) >= 0 && H5Tset_cset(mem, H5Tget_cset(type)) >= 0 &&
            H5Aread(attr, mem, &v) >= 0) {
            *out = strdup(v ? v : "");
            rc = 0;
        } else {
            tm_fail("%s: attribute '%s': %s", path, name, h5_reason());
        }
        if (v) H5free_memory(v);
    } else {
        size_t size = H5Tget_size(type);
        char *v = callocCheck(size + 1, 1);
        mem = H5Tcopy(H5T_C_S1);
        if (size > 0 && mem >= 0 && H5Tset_size(mem, size) >= 0 && H5Tset_cset(mem, H5Tget_cset(type)) >= 0 &&
            H5Aread(attr, mem, v) >= 0) {
            *out = v;
            rc = 0;
        } else {
            free(v);
            tm_fail("%s: attribute '%s': %s", path, name, size ? h5_reason() : "empty string type");
        }
    }
    if (rc == 0 && !*out) tm_die("out of memory");
    if (mem >= 0) H5Tclose(mem);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

/* A scalar attribute of the given class, converted by HDF5 to mem_type. */
static int read_scalar(hid_t obj, const char *path, const char *name, H5T_class_t cls, hid_t mem_type, void *out) {
    if (H5Aexists(obj, name) <= 0) return tm_fail("%s: no attribute '%s'", path, name);
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT), type = attr >= 0 ? H5Aget_type(attr) : -1;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : -1;
    int rc = 0;
    if (type < 0 || space < 0) rc = tm_fail("%s: attribute '%s': %s", path, name, h5_reason());
    else if (H5Tget_class(type) != cls || H5Sget_simple_extent_npoints(space) != 1)
        rc = tm_fail("%s: attribute '%s' is not %s", path, name, cls == H5T_INTEGER ? "an integer" : "a number");
    else if (H5Aread(attr, mem_type, out) < 0)
        rc = tm_fail("%s: attribute '%s': %s", path, name, h5_reason());
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

int h5_read_int_attr(hid_t obj, const char *path, const char *name, int is_unsigned, void *out) {
    return read_scalar(obj, path, name, H5T_INTEGER, is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64, out);
}

int h5_read_int_attr_in(hid_t obj, const char *path, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    if (h5_read_int_attr(obj, path, name, 0, out)) return -1;
    if (*out < lo || *out > hi)
        return tm_fail("%s: attribute '%s' is %" PRId64 ", outside %" PRId64 "..%" PRId64, path, name, *out, lo, hi);
    return 0;
}

int h5_read_f64_attr(hid_t obj, const char *path, const char *name, double *out) {
    return read_scalar(obj, path, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, out);
}

/* ---- 1-D float datasets ---- */

/* file_type: the type stored (little-endian IEEE), mem_type: the caller's. */
static int write_1d(hid_t file, const char *path, const char *name, hid_t file_type, hid_t mem_type, const void *data,
                    int64_t n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL), dset = -1;
    int rc = space < 0 ||
             (dset = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
             (n > 0 && H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0);
    if (rc) tm_fail("%s: writing %s: %s", path, name, h5_reason());
    if (dset >= 0 && H5Dclose(dset) < 0 && !rc) rc = tm_fail("%s: writing %s: %s", path, name, h5_reason());
    if (space >= 0) H5Sclose(space);
    return rc ? -1 : 0;
}

static int read_1d(hid_t file, const char *path, const char *name, hid_t mem_type, void *data, int64_t n) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return tm_fail("%s: no dataset %s", path, name);
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT), space = dset >= 0 ? H5Dget_space(dset) : -1;
    hsize_t dims[1] = {0};
    int rc = 0;
    if (space < 0) rc = tm_fail("%s: %s: %s", path, name, h5_reason());
    else if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 ||
             dims[0] != (hsize_t)n)
        rc = tm_fail("%s: %s: %llu values, expected %" PRId64, path, name, (unsigned long long)dims[0], n);
    else if (n > 0 && H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = tm_fail("%s: %s: cannot read (truncated or corrupt file?): %s", path, name, h5_reason());
    if (space >= 0) H5Sclose(space);
    if (dset >= 0) H5Dclose(dset);
    return rc;
}

int h5_write_f64(hid_t file, const char *path, const char *name, const double *data, int64_t n) {
    return write_1d(file, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, n);
}

int h5_read_f64(hid_t file, const char *path, const char *name, double *data, int64_t n) {
    return read_1d(file, path, name, H5T_NATIVE_DOUBLE, data, n);
}

int h5_write_f32(hid_t file, const char *path, const char *name, const float *data, int64_t n) {
    return write_1d(file, path, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, n);
}

int h5_read_f32(hid_t file, const char *path, const char *name, float *data, int64_t n) {
    return read_1d(file, path, name, H5T_NATIVE_FLOAT, data, n);
}
