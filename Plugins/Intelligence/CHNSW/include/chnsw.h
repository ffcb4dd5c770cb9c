// hnswlib behind a C API (Swift imports this module as CHNSW).
//
// Contract, for every function below:
// - No C++ exception ever leaves this API. A failing call returns a status other than
//   CHNSW_OK (or -1 where it returns a count) and, when `error` is not NULL, copies a
//   NUL-terminated message (truncated to `error_capacity` bytes) into it.
// - The caller owns every buffer it passes; the library never keeps a pointer to one
//   after the call returns. A `chnsw_index` is owned by whoever created or loaded it and
//   is released with chnsw_free, exactly once, when no other call on it is running.
// - Threads: any function may be called from any thread. Searches, counts and saves run
//   concurrently with each other (shared lock); adds, removals and resizes are exclusive
//   (writer lock, preferred over new readers so they never starve); chnsw_set_ef is an
//   atomic store that applies to searches starting after it.
// - Vectors are `dimension` float32 values, all finite. Cosine indexes store and compare
//   unit vectors (normalised here), so a zero vector is refused for cosine.
// - Distances: l2 is the squared Euclidean distance; inner_product and cosine are
//   1 - dot(a, b). Smaller is nearer for all three.
#ifndef CHNSW_H
#define CHNSW_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/// An HNSW index (opaque).
typedef struct chnsw_index chnsw_index;

/// Status codes returned by the functions below.
enum {
    CHNSW_OK = 0,
    /// A parameter, vector or path is out of range (the message says which).
    CHNSW_INVALID_ARGUMENT = 1,
    /// The index is at capacity and may not (or can no longer) grow.
    CHNSW_FULL = 2,
    /// An allocation failed.
    CHNSW_NO_MEMORY = 3,
    /// Reading or writing a file failed (the message carries errno's text).
    CHNSW_IO = 4,
    /// A snapshot file is truncated, corrupted or not a snapshot.
    CHNSW_CORRUPT = 5,
    /// A snapshot was written for another dimension or metric.
    CHNSW_MISMATCH = 6,
    /// Anything else hnswlib reported.
    CHNSW_INTERNAL = 7,
};

/// Metrics.
enum {
    CHNSW_METRIC_L2 = 0,
    CHNSW_METRIC_INNER_PRODUCT = 1,
    CHNSW_METRIC_COSINE = 2,
};

/// Bounds the shim enforces (the Swift layer enforces the same ones first).
enum {
    CHNSW_MAX_DIMENSION = 4096,
    CHNSW_MIN_M = 2,
    CHNSW_MAX_M = 128,
    CHNSW_MAX_EF = 10000,
    CHNSW_MAX_K = 1000,
};

/// The largest capacity (number of element slots) an index may have.
#define CHNSW_MAX_CAPACITY ((size_t)1 << 24)

/// The library's version string (static storage).
const char *chnsw_version(void);

/// Which distance kernel this CPU uses ("avx512", "avx2" or "generic"; static storage).
const char *chnsw_kernel(void);

/// A filter for chnsw_search: returns nonzero when `label` may be returned. Called on the
/// searching thread, synchronously, any number of times; it must not call back into the
/// same index.
typedef int (*chnsw_filter)(uint64_t label, void *context);

/// Creates an empty index. `capacity` element slots are allocated up front (1 ...
/// CHNSW_MAX_CAPACITY). `m` is hnswlib's M, `ef_construction` its build-time beam, `ef_search`
/// the default query beam, `seed` seeds the level generator (same seed and insertion order
/// give the same graph). On success stores the index in `*out`.
int chnsw_create(size_t dimension, int metric, size_t m, size_t ef_construction,
                 size_t ef_search, size_t capacity, uint64_t seed, chnsw_index **out,
                 char *error, size_t error_capacity);

/// Adds `vector` (`length` floats) under `label`, or replaces the vector already stored
/// under it (a removed label is revived). When the index is full and `grow` is nonzero the
/// capacity doubles (up to CHNSW_MAX_CAPACITY); otherwise CHNSW_FULL.
int chnsw_add(chnsw_index *index, uint64_t label, const float *vector, size_t length,
              int grow, char *error, size_t error_capacity);

/// Adds `count` vectors (row-major, `length` floats each) under `labels`, in order (a label
/// repeated in the batch ends with its last vector). Every vector is validated before any
/// is added. The writer lock is taken per chunk of vectors, so searches interleave; on a
/// failure part of the batch may be in the index (the message says how many).
int chnsw_add_batch(chnsw_index *index, const uint64_t *labels, const float *vectors,
                    size_t count, size_t length, int grow, char *error, size_t error_capacity);

/// Hides `label` from searches (hnswlib's mark-delete; the slot is reused if the label is
/// added again). Sets `*removed` to 1 when a live vector was removed, 0 for an unknown or
/// already removed label (not an error).
int chnsw_remove(chnsw_index *index, uint64_t label, int *removed, char *error,
                 size_t error_capacity);

/// Sets the default query beam (1 ... CHNSW_MAX_EF).
int chnsw_set_ef(chnsw_index *index, size_t ef, char *error, size_t error_capacity);

/// Finds up to `k` (1 ... CHNSW_MAX_K) nearest live vectors to `query` (`length` floats),
/// nearest first, into `labels` and `distances` (each with room for `k`). `ef` is the beam
/// (0 = the index's default; it is raised to `k` when smaller). With a `filter`, only labels
/// it accepts are returned, and k of them whenever k exist: a graph search that cannot fill
/// k within its budget falls back to an exact scan. Returns the number found (0 ... k), or
/// -1 on error.
int64_t chnsw_search(chnsw_index *index, const float *query, size_t length, size_t k,
                     size_t ef, chnsw_filter filter, void *filter_context, uint64_t *labels,
                     float *distances, char *error, size_t error_capacity);

/// Exact nearest neighbours by a full scan (same contract as chnsw_search, no beam): the
/// ground truth that recall is measured against.
int64_t chnsw_search_exact(chnsw_index *index, const float *query, size_t length, size_t k,
                           chnsw_filter filter, void *filter_context, uint64_t *labels,
                           float *distances, char *error, size_t error_capacity);

/// Whether `label` is stored and not removed (1) or not (0).
int chnsw_contains(chnsw_index *index, uint64_t label);

/// Live vectors (added and not removed).
size_t chnsw_count(chnsw_index *index);

/// Element slots in use, removed ones included (they are reused only by their own label).
size_t chnsw_slots_used(chnsw_index *index);

/// Element slots allocated.
size_t chnsw_capacity(chnsw_index *index);

/// The dimension, metric, M, ef_construction and default ef the index was built with.
size_t chnsw_dimension(chnsw_index *index);
int chnsw_metric(chnsw_index *index);
size_t chnsw_m(chnsw_index *index);
size_t chnsw_ef_construction(chnsw_index *index);
size_t chnsw_ef(chnsw_index *index);

/// Sets the capacity to `capacity` (at least the slots in use, at most CHNSW_MAX_CAPACITY).
int chnsw_resize(chnsw_index *index, size_t capacity, char *error, size_t error_capacity);

/// Writes a snapshot to `path` atomically: a temporary file next to it (mode 0600), fsync,
/// rename over `path`, fsync of the directory. `tag` is stored as-is in the header (callers
/// use it for "changes up to here are in the snapshot"). Runs concurrently with searches.
int chnsw_save(chnsw_index *index, const char *path, uint64_t tag, char *error,
               size_t error_capacity);

/// What a snapshot's header says (chnsw_snapshot_info).
typedef struct chnsw_snapshot_header {
    uint32_t format_version;
    int32_t metric;
    uint64_t dimension;
    uint64_t m;
    uint64_t ef_construction;
    uint64_t capacity;
    /// Element slots in the file, removed ones included.
    uint64_t slots;
    /// Removed elements among them.
    uint64_t removed;
    uint64_t tag;
} chnsw_snapshot_header;

/// Reads and checks the header of the snapshot at `path` (not the body: chnsw_load verifies
/// the checksum and every link).
int chnsw_snapshot_info(const char *path, chnsw_snapshot_header *out, char *error,
                        size_t error_capacity);

/// Loads the snapshot at `path`, which must have been written for `dimension` and `metric`
/// (else CHNSW_MISMATCH). Everything is checked before use: header bounds, file size,
/// checksum, every graph link and level, labels unique, vectors finite; a bad file gives
/// CHNSW_CORRUPT, never a crash. `ef_search` is the default query beam; `*tag` (if not NULL)
/// receives the header's tag.
int chnsw_load(const char *path, size_t dimension, int metric, size_t ef_search,
               uint64_t seed, chnsw_index **out, uint64_t *tag, char *error,
               size_t error_capacity);

/// Releases the index (NULL is ignored).
void chnsw_free(chnsw_index *index);

#ifdef __cplusplus
}
#endif
#endif
