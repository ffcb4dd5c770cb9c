// The C API of chnsw.h over hnswlib 0.6.2 (Debian's header-only libhnswlib-dev).
//
// What 0.6.2 lacks and this file adds on top of its (public) graph members:
// - searches with a per-query beam and a label filter (0.6.2 has one shared ef_ and no
//   filter), with an exact-scan fallback when a filtered graph walk cannot fill k;
// - distance kernels picked at run time (AVX-512 / AVX2+FMA / portable), since the package
//   compiles without -march and hnswlib picks its SIMD at compile time;
// - a snapshot format that is checked before use (hnswlib's loadIndex trusts the file:
//   a crafted one makes it read out of bounds), written atomically;
// - a reader-writer lock: hnswlib's markDelete, resizeIndex and label map are not safe
//   against concurrent adds or searches.
#include "chnsw.h"

#include <hnswlib/hnswlib.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

static_assert(sizeof(hnswlib::labeltype) == sizeof(uint64_t), "labels are 64-bit");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "snapshots are little-endian");

namespace {

using hnswlib::tableint;
using Graph = hnswlib::HierarchicalNSW<float>;

// MARK: - Errors

/// A failure with the status the C API returns for it.
struct Failure : std::runtime_error {
    int status;
    Failure(int status, const std::string &message) : std::runtime_error(message), status(status) {}
};

void copy_message(char *error, size_t capacity, const char *message) {
    if (error == nullptr || capacity == 0) return;
    size_t length = std::min(std::strlen(message), capacity - 1);
    std::memcpy(error, message, length);
    error[length] = '\0';
}

/// Runs `body`, turning every exception into a status and a message.
template <typename Result, typename Body>
Result guarded(char *error, size_t capacity, Result failed, int *status, Body &&body) noexcept {
    try {
        return body();
    } catch (const Failure &failure) {
        copy_message(error, capacity, failure.what());
        if (status) *status = failure.status;
    } catch (const std::bad_alloc &) {
        copy_message(error, capacity, "out of memory");
        if (status) *status = CHNSW_NO_MEMORY;
    } catch (const std::exception &exception) {
        std::string message = std::string("hnswlib: ") + exception.what();
        copy_message(error, capacity, message.c_str());
        if (status) *status = std::strstr(exception.what(), "memory") ? CHNSW_NO_MEMORY : CHNSW_INTERNAL;
    } catch (...) {
        copy_message(error, capacity, "unknown C++ exception");
        if (status) *status = CHNSW_INTERNAL;
    }
    return failed;
}

template <typename Body>
int guarded_status(char *error, size_t capacity, Body &&body) noexcept {
    int status = CHNSW_INTERNAL;
    int result = guarded<int>(error, capacity, -1, &status, [&]() -> int {
        body();
        return CHNSW_OK;
    });
    return result == CHNSW_OK ? CHNSW_OK : status;
}

[[noreturn]] void fail(int status, const std::string &message) { throw Failure(status, message); }

// MARK: - Distance kernels

float l2_portable(const void *a, const void *b, const void *parameter) {
    const float *x = static_cast<const float *>(a), *y = static_cast<const float *>(b);
    size_t n = *static_cast<const size_t *>(parameter);
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - y[i];
        sum += d * d;
    }
    return sum;
}

float dot_portable(const float *x, const float *y, size_t n) {
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i] * y[i];
    return sum;
}

float ip_portable(const void *a, const void *b, const void *parameter) {
    return 1.0f - dot_portable(static_cast<const float *>(a), static_cast<const float *>(b),
                               *static_cast<const size_t *>(parameter));
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float horizontal_sum(__m256 v) {
    __m128 low = _mm256_castps256_ps128(v), high = _mm256_extractf128_ps(v, 1);
    __m128 sum = _mm_add_ps(low, high);
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 0x55));
    return _mm_cvtss_f32(sum);
}

__attribute__((target("avx2,fma"))) float l2_avx2(const void *a, const void *b, const void *parameter) {
    const float *x = static_cast<const float *>(a), *y = static_cast<const float *>(b);
    size_t n = *static_cast<const size_t *>(parameter), i = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
    }
    float sum = horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = x[i] - y[i];
        sum += d * d;
    }
    return sum;
}

__attribute__((target("avx2,fma"))) float ip_avx2(const void *a, const void *b, const void *parameter) {
    const float *x = static_cast<const float *>(a), *y = static_cast<const float *>(b);
    size_t n = *static_cast<const size_t *>(parameter), i = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    float sum = horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += x[i] * y[i];
    return 1.0f - sum;
}

__attribute__((target("avx512f"))) float l2_avx512(const void *a, const void *b, const void *parameter) {
    const float *x = static_cast<const float *>(a), *y = static_cast<const float *>(b);
    size_t n = *static_cast<const size_t *>(parameter), i = 0;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
    }
    if (i < n) {
        __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
        __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i));
        s1 = _mm512_fmadd_ps(d0, d0, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f"))) float ip_avx512(const void *a, const void *b, const void *parameter) {
    const float *x = static_cast<const float *>(a), *y = static_cast<const float *>(b);
    size_t n = *static_cast<const size_t *>(parameter), i = 0;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    if (i < n) {
        __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i), s1);
    }
    return 1.0f - _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

enum class Kernel { generic, avx2, avx512 };

Kernel detect_kernel() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Kernel::generic;
    bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), fma = ecx & (1u << 12);
    if (!osxsave || !avx) return Kernel::generic;
    unsigned xcr_low = 0, xcr_high = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr_low), "=d"(xcr_high) : "c"(0));
    bool ymm_state = (xcr_low & 0x6) == 0x6, zmm_state = (xcr_low & 0xe6) == 0xe6;
    if (!ymm_state || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return Kernel::generic;
    bool avx2 = ebx & (1u << 5), avx512f = ebx & (1u << 16);
    if (avx512f && zmm_state) return Kernel::avx512;
    if (avx2 && fma) return Kernel::avx2;
    return Kernel::generic;
}
#else
enum class Kernel { generic };
Kernel detect_kernel() { return Kernel::generic; }
#endif

Kernel kernel() {
    static const Kernel detected = detect_kernel();
    return detected;
}

hnswlib::DISTFUNC<float> distance_function(bool inner_product) {
    switch (kernel()) {
#if defined(__x86_64__)
        case Kernel::avx512: return inner_product ? ip_avx512 : l2_avx512;
        case Kernel::avx2: return inner_product ? ip_avx2 : l2_avx2;
#endif
        default: return inner_product ? ip_portable : l2_portable;
    }
}

/// The metric space hnswlib calls: our kernels over `dimension` floats.
class Space final : public hnswlib::SpaceInterface<float> {
   public:
    Space(size_t dimension, bool inner_product)
        : dimension_(dimension), function_(distance_function(inner_product)) {}
    size_t get_data_size() override { return dimension_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return function_; }
    void *get_dist_func_param() override { return &dimension_; }
    float distance(const float *a, const float *b) const { return function_(a, b, &dimension_); }

   private:
    size_t dimension_;
    hnswlib::DISTFUNC<float> function_;
};

// MARK: - Locks

class ReadGuard {
   public:
    explicit ReadGuard(pthread_rwlock_t *lock) : lock_(lock) { pthread_rwlock_rdlock(lock_); }
    ~ReadGuard() { pthread_rwlock_unlock(lock_); }
    ReadGuard(const ReadGuard &) = delete;
    ReadGuard &operator=(const ReadGuard &) = delete;

   private:
    pthread_rwlock_t *lock_;
};

class WriteGuard {
   public:
    explicit WriteGuard(pthread_rwlock_t *lock) : lock_(lock) { pthread_rwlock_wrlock(lock_); }
    ~WriteGuard() { pthread_rwlock_unlock(lock_); }
    WriteGuard(const WriteGuard &) = delete;
    WriteGuard &operator=(const WriteGuard &) = delete;

   private:
    pthread_rwlock_t *lock_;
};

// MARK: - Validation

constexpr size_t kMaxEfConstruction = CHNSW_MAX_EF;
/// Level-0 bytes an index may allocate (2^36 = 64 GiB of address space, mostly untouched).
constexpr size_t kMaxLevel0Bytes = size_t(1) << 36;
constexpr int kMaxLevel = 64;

bool valid_metric(int metric) {
    return metric == CHNSW_METRIC_L2 || metric == CHNSW_METRIC_INNER_PRODUCT || metric == CHNSW_METRIC_COSINE;
}

const char *metric_name(int metric) {
    switch (metric) {
        case CHNSW_METRIC_L2: return "l2";
        case CHNSW_METRIC_INNER_PRODUCT: return "inner_product";
        case CHNSW_METRIC_COSINE: return "cosine";
        default: return "unknown";
    }
}

void check_dimension(size_t dimension) {
    if (dimension < 1 || dimension > CHNSW_MAX_DIMENSION)
        fail(CHNSW_INVALID_ARGUMENT, "dimension must be 1..." + std::to_string(CHNSW_MAX_DIMENSION) +
                                         ", got " + std::to_string(dimension));
}

/// Bytes hnswlib stores per element for this dimension and M.
size_t bytes_per_element(size_t dimension, size_t m) {
    return (2 * m) * sizeof(tableint) + sizeof(hnswlib::linklistsizeint) + dimension * sizeof(float) +
           sizeof(hnswlib::labeltype);
}

void check_capacity(size_t capacity, size_t dimension, size_t m) {
    if (capacity < 1 || capacity > CHNSW_MAX_CAPACITY)
        fail(CHNSW_INVALID_ARGUMENT, "capacity must be 1..." + std::to_string(CHNSW_MAX_CAPACITY) +
                                         ", got " + std::to_string(capacity));
    if (capacity > kMaxLevel0Bytes / bytes_per_element(dimension, m))
        fail(CHNSW_INVALID_ARGUMENT, "capacity " + std::to_string(capacity) + " at dimension " +
                                         std::to_string(dimension) + " needs more than 64 GiB");
}

void check_parameters(size_t dimension, int metric, size_t m, size_t ef_construction, size_t ef_search) {
    check_dimension(dimension);
    if (!valid_metric(metric)) fail(CHNSW_INVALID_ARGUMENT, "unknown metric " + std::to_string(metric));
    if (m < CHNSW_MIN_M || m > CHNSW_MAX_M)
        fail(CHNSW_INVALID_ARGUMENT, "M must be " + std::to_string(CHNSW_MIN_M) + "..." +
                                         std::to_string(CHNSW_MAX_M) + ", got " + std::to_string(m));
    if (ef_construction < 1 || ef_construction > kMaxEfConstruction)
        fail(CHNSW_INVALID_ARGUMENT, "ef_construction must be 1..." + std::to_string(kMaxEfConstruction) +
                                         ", got " + std::to_string(ef_construction));
    if (ef_search < 1 || ef_search > CHNSW_MAX_EF)
        fail(CHNSW_INVALID_ARGUMENT,
             "ef must be 1..." + std::to_string(CHNSW_MAX_EF) + ", got " + std::to_string(ef_search));
}

}  // namespace

// MARK: - The index

struct chnsw_index {
    size_t dimension;
    int metric;
    size_t m;
    size_t ef_construction;
    std::atomic<size_t> ef_search;
    // Declared before `graph`: the graph keeps a pointer to the space's dimension.
    Space space;
    std::unique_ptr<Graph> graph;
    pthread_rwlock_t lock;

    chnsw_index(size_t dimension, int metric, size_t m, size_t ef_construction, size_t ef_search)
        : dimension(dimension),
          metric(metric),
          m(m),
          ef_construction(ef_construction),
          ef_search(ef_search),
          space(dimension, metric != CHNSW_METRIC_L2) {
        pthread_rwlockattr_t attributes;
        pthread_rwlockattr_init(&attributes);
#if defined(__GLIBC__)
        // Writers first: a steady stream of searches must not starve an upsert.
        pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
        pthread_rwlock_init(&lock, &attributes);
        pthread_rwlockattr_destroy(&attributes);
    }
    ~chnsw_index() { pthread_rwlock_destroy(&lock); }

    /// Live elements (caller holds a lock).
    size_t live() const { return graph->cur_element_count - graph->num_deleted_; }

    /// `vector` checked (length, finite) and, for cosine, normalised into `scratch`.
    const float *prepare(const float *vector, size_t length, std::vector<float> &scratch, const char *what) const {
        if (vector == nullptr) fail(CHNSW_INVALID_ARGUMENT, std::string(what) + " is NULL");
        if (length != dimension)
            fail(CHNSW_INVALID_ARGUMENT, std::string(what) + " has " + std::to_string(length) +
                                             " components, the index has dimension " + std::to_string(dimension));
        double norm = 0;
        for (size_t i = 0; i < length; i++) {
            if (!std::isfinite(vector[i]))
                fail(CHNSW_INVALID_ARGUMENT, std::string(what) + " component " + std::to_string(i) +
                                                 " is not a finite number (NaN or infinity)");
            norm += double(vector[i]) * double(vector[i]);
        }
        // Distances are float sums: a squared norm beyond float's range would make them
        // infinite, and inner products of opposite infinities NaN.
        if (norm > double(std::numeric_limits<float>::max()))
            fail(CHNSW_INVALID_ARGUMENT, std::string(what) + " is too large (its squared norm exceeds 3.4e38)");
        if (metric != CHNSW_METRIC_COSINE) return vector;
        if (norm == 0) fail(CHNSW_INVALID_ARGUMENT, std::string(what) + " is all zeros: it has no direction for cosine");
        scratch.resize(length);
        double scale = 1.0 / std::sqrt(norm);
        for (size_t i = 0; i < length; i++) scratch[i] = float(vector[i] * scale);
        return scratch.data();
    }

    /// Adds one prepared vector (caller holds the writer lock).
    void add_locked(uint64_t label, const float *vector, bool grow) {
        Graph &g = *graph;
        if (g.label_lookup_.find(label) == g.label_lookup_.end() && g.cur_element_count >= g.max_elements_) {
            size_t current = g.max_elements_;
            size_t limit = std::min(CHNSW_MAX_CAPACITY, kMaxLevel0Bytes / bytes_per_element(dimension, m));
            if (!grow || current >= limit)
                fail(CHNSW_FULL, "the index is full (" + std::to_string(current) + " vectors" +
                                     (grow ? ", the most an index may hold)" : "; growing is off)"));
            g.resizeIndex(std::min(limit, std::max(current * 2, current + 1)));
        }
        g.addPoint(vector, label);
    }
};

namespace {

using Candidate = std::pair<float, tableint>;
struct FartherFirst {
    bool operator()(const Candidate &a, const Candidate &b) const { return a.first < b.first; }
};
using MaxHeap = std::priority_queue<Candidate, std::vector<Candidate>, FartherFirst>;

/// An empty heap with room for `capacity` entries (saves the reallocations of growing).
MaxHeap reserved_heap(size_t capacity) {
    std::vector<Candidate> storage;
    storage.reserve(capacity);
    return MaxHeap(FartherFirst(), std::move(storage));
}

/// A visited list borrowed from the graph's pool for one search.
class VisitedScope {
   public:
    explicit VisitedScope(hnswlib::VisitedListPool *pool) : pool_(pool), list_(pool->getFreeVisitedList()) {}
    ~VisitedScope() { pool_->releaseVisitedList(list_); }
    VisitedScope(const VisitedScope &) = delete;
    VisitedScope &operator=(const VisitedScope &) = delete;
    hnswlib::vl_type *marks() const { return list_->mass; }
    hnswlib::vl_type tag() const { return list_->curV; }

   private:
    hnswlib::VisitedListPool *pool_;
    hnswlib::VisitedList *list_;
};

struct Filter {
    chnsw_filter function;
    void *context;
    bool allows(uint64_t label) const { return function(label, context) != 0; }
};

inline void prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// The descent through the upper layers to the base layer's entry point.
tableint descend(const chnsw_index &index, const float *query) {
    const Graph &g = *index.graph;
    const size_t elements = g.cur_element_count;
    tableint current = g.enterpoint_node_;
    float best = index.space.distance(query, reinterpret_cast<const float *>(g.getDataByInternalId(current)));
    for (int level = g.maxlevel_; level > 0; level--) {
        bool changed = true;
        while (changed) {
            changed = false;
            const hnswlib::linklistsizeint *list = g.get_linklist(current, level);
            unsigned short size = g.getListCount(const_cast<hnswlib::linklistsizeint *>(list));
            const tableint *neighbours = reinterpret_cast<const tableint *>(list + 1);
            for (unsigned short i = 0; i < size; i++) {
                tableint candidate = neighbours[i];
                if (candidate >= elements) fail(CHNSW_INTERNAL, "graph link out of range");
                float d = index.space.distance(query, reinterpret_cast<const float *>(g.getDataByInternalId(candidate)));
                if (d < best) {
                    best = d;
                    current = candidate;
                    changed = true;
                }
            }
        }
    }
    return current;
}

/// hnswlib's base-layer beam search with a per-query `ef`. With `kChecks` (removed elements
/// or a filter), rejected elements are walked through but not returned, and the walk stops
/// early (returns false) once it has computed `budget` distances without filling the beam.
template <bool kChecks>
bool search_base_layer(const chnsw_index &index, const float *query, tableint entry, size_t ef,
                       const Filter *filter, size_t budget, MaxHeap &top) {
    const Graph &g = *index.graph;
    const size_t elements = g.cur_element_count;
    const bool removals = g.num_deleted_ != 0;
    auto accepted = [&](tableint id) -> bool {
        if (!kChecks) return true;
        if (removals && g.isMarkedDeleted(id)) return false;
        return filter == nullptr || filter->allows(g.getExternalLabel(id));
    };

    // The next neighbour's vector is prefetched up to 4 cache lines (the hardware prefetcher
    // follows on from there): measurably faster once the vectors outgrow the caches.
    const size_t vector_lines = std::min<size_t>(4, (g.data_size_ + 63) / 64);
    VisitedScope visited(g.visited_list_pool_);
    hnswlib::vl_type *marks = visited.marks();
    const hnswlib::vl_type tag = visited.tag();
    MaxHeap candidates = reserved_heap(2 * ef + 64);  // on -distance: nearest on top

    float d = index.space.distance(query, reinterpret_cast<const float *>(g.getDataByInternalId(entry)));
    float bound = std::numeric_limits<float>::max();
    if (accepted(entry)) {
        top.emplace(d, entry);
        bound = d;
    }
    candidates.emplace(-d, entry);
    marks[entry] = tag;
    size_t computed = 1;

    while (!candidates.empty()) {
        Candidate current = candidates.top();
        if (-current.first > bound && (!kChecks || top.size() >= ef)) break;
        candidates.pop();

        const int *list = reinterpret_cast<const int *>(g.get_linklist0(current.second));
        unsigned short size = g.getListCount(reinterpret_cast<hnswlib::linklistsizeint *>(const_cast<int *>(list)));
        const tableint *neighbours = reinterpret_cast<const tableint *>(list + 1);
        if (size > 0) {
            prefetch(marks + neighbours[0]);
            prefetch(g.getDataByInternalId(neighbours[0]));
        }
        for (unsigned short j = 0; j < size; j++) {
            tableint id = neighbours[j];
            if (j + 1 < size) {
                prefetch(marks + neighbours[j + 1]);
                const char *next = g.getDataByInternalId(neighbours[j + 1]);
                for (size_t line = 0; line < vector_lines; line++) prefetch(next + 64 * line);
            }
            if (id >= elements) fail(CHNSW_INTERNAL, "graph link out of range");
            if (marks[id] == tag) continue;
            marks[id] = tag;
            float distance = index.space.distance(query, reinterpret_cast<const float *>(g.getDataByInternalId(id)));
            computed++;
            if (top.size() < ef || distance < bound) {
                candidates.emplace(-distance, id);
                prefetch(g.getDataByInternalId(candidates.top().second));
                if (accepted(id)) {
                    top.emplace(distance, id);
                    if (top.size() > ef) top.pop();
                }
                if (!top.empty()) bound = top.top().first;
            }
        }
        if (kChecks && computed > budget && top.size() < ef) return false;
    }
    return true;
}

/// Every live (and allowed) element, the k nearest kept.
void scan(const chnsw_index &index, const float *query, size_t k, const Filter *filter, MaxHeap &top) {
    const Graph &g = *index.graph;
    const bool removals = g.num_deleted_ != 0;
    for (tableint id = 0; id < g.cur_element_count; id++) {
        if (removals && g.isMarkedDeleted(id)) continue;
        if (filter && !filter->allows(g.getExternalLabel(id))) continue;
        float distance = index.space.distance(query, reinterpret_cast<const float *>(g.getDataByInternalId(id)));
        if (top.size() < k) {
            top.emplace(distance, id);
        } else if (distance < top.top().first) {
            top.pop();
            top.emplace(distance, id);
        }
    }
}

/// Writes the heap's k nearest, nearest first; returns how many.
int64_t emit(const Graph &g, MaxHeap &top, size_t k, uint64_t *labels, float *distances) {
    while (top.size() > k) top.pop();
    size_t found = top.size();
    for (size_t i = found; i > 0; i--) {
        labels[i - 1] = g.getExternalLabel(top.top().second);
        distances[i - 1] = top.top().first;
        top.pop();
    }
    return static_cast<int64_t>(found);
}

void check_search_arguments(chnsw_index *index, size_t k, uint64_t *labels, float *distances) {
    if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
    if (k < 1 || k > CHNSW_MAX_K)
        fail(CHNSW_INVALID_ARGUMENT, "k must be 1..." + std::to_string(CHNSW_MAX_K) + ", got " + std::to_string(k));
    if (labels == nullptr || distances == nullptr) fail(CHNSW_INVALID_ARGUMENT, "output buffers are NULL");
}

// MARK: - Snapshot file

constexpr unsigned char kMagic[8] = {'M', 'B', 'H', 'N', 'S', 'W', 0x1A, '\n'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 96;

/// The header, in file order (all little-endian).
struct Header {
    uint32_t version = kFormatVersion;
    int32_t metric = 0;
    uint64_t dimension = 0, m = 0, ef_construction = 0, capacity = 0, slots = 0, removed = 0;
    int64_t max_level = -1;
    uint64_t entry = 0, tag = 0, checksum = 0;

    void encode(unsigned char *out) const {
        std::memset(out, 0, kHeaderSize);
        std::memcpy(out, kMagic, 8);
        std::memcpy(out + 8, &version, 4);
        std::memcpy(out + 12, &metric, 4);
        const uint64_t fields[] = {dimension, m, ef_construction, capacity, slots, removed,
                                   static_cast<uint64_t>(max_level), entry, tag, checksum};
        std::memcpy(out + 16, fields, sizeof(fields));
    }

    static Header decode(const unsigned char *in) {
        if (std::memcmp(in, kMagic, 8) != 0) fail(CHNSW_CORRUPT, "not a vector index snapshot (bad magic)");
        Header h;
        std::memcpy(&h.version, in + 8, 4);
        std::memcpy(&h.metric, in + 12, 4);
        uint64_t fields[10];
        std::memcpy(fields, in + 16, sizeof(fields));
        h.dimension = fields[0];
        h.m = fields[1];
        h.ef_construction = fields[2];
        h.capacity = fields[3];
        h.slots = fields[4];
        h.removed = fields[5];
        h.max_level = static_cast<int64_t>(fields[6]);
        h.entry = fields[7];
        h.tag = fields[8];
        h.checksum = fields[9];
        return h;
    }
};

constexpr size_t kChecksumOffset = 16 + 9 * 8;

/// A 64-bit running checksum over 8-byte words (corruption check, not cryptographic).
class Checksum {
   public:
    void update(const void *data, size_t length) {
        const unsigned char *bytes = static_cast<const unsigned char *>(data);
        while (length > 0 && pending_ > 0) {
            push_byte(*bytes++);
            length--;
        }
        while (length >= 8) {
            uint64_t word;
            std::memcpy(&word, bytes, 8);
            mix(word);
            bytes += 8;
            length -= 8;
        }
        while (length-- > 0) push_byte(*bytes++);
    }
    uint64_t value() const {
        uint64_t h = state_;
        if (pending_ > 0) h = step(h, word_ ^ (uint64_t(pending_) << 56));
        h ^= total_;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return h;
    }

   private:
    static uint64_t step(uint64_t h, uint64_t word) {
        h ^= word * 0x9E3779B97F4A7C15ULL;
        h = (h << 31) | (h >> 33);
        return h * 0xC2B2AE3D27D4EB4FULL + 0x165667B19E3779F9ULL;
    }
    void mix(uint64_t word) {
        state_ = step(state_, word);
        total_ += 8;
    }
    void push_byte(unsigned char byte) {
        word_ |= uint64_t(byte) << (8 * pending_);
        if (++pending_ == 8) {
            mix(word_);
            word_ = 0;
            pending_ = 0;
        }
    }
    uint64_t state_ = 0x27D4EB2F165667C5ULL, word_ = 0, total_ = 0;
    unsigned pending_ = 0;
};

std::string errno_text(const std::string &what, const std::string &path) {
    return what + " " + path + ": " + std::strerror(errno);
}

/// A file descriptor closed on scope exit.
class FileDescriptor {
   public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    FileDescriptor(const FileDescriptor &) = delete;
    FileDescriptor &operator=(const FileDescriptor &) = delete;
    int get() const { return fd_; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

   private:
    int fd_;
};

/// Buffered writes through a checksum.
class SnapshotWriter {
   public:
    SnapshotWriter(int fd, const std::string &path) : fd_(fd), path_(path), buffer_(1 << 20) {}
    void put(const void *data, size_t length) {
        checksum_.update(data, length);
        const char *bytes = static_cast<const char *>(data);
        while (length > 0) {
            size_t chunk = std::min(length, buffer_.size() - used_);
            std::memcpy(buffer_.data() + used_, bytes, chunk);
            used_ += chunk;
            bytes += chunk;
            length -= chunk;
            if (used_ == buffer_.size()) flush();
        }
    }
    void flush() {
        size_t done = 0;
        while (done < used_) {
            ssize_t n = ::write(fd_, buffer_.data() + done, used_ - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail(CHNSW_IO, errno_text("cannot write", path_));
            done += static_cast<size_t>(n);
        }
        used_ = 0;
    }
    uint64_t checksum() const { return checksum_.value(); }

   private:
    int fd_;
    std::string path_;
    std::vector<char> buffer_;
    size_t used_ = 0;
    Checksum checksum_;
};

/// Exact reads; running short is corruption.
class SnapshotReader {
   public:
    SnapshotReader(int fd, const std::string &path) : fd_(fd), path_(path) {}
    void get(void *data, size_t length) {
        char *bytes = static_cast<char *>(data);
        size_t done = 0;
        while (done < length) {
            ssize_t n = ::read(fd_, bytes + done, length - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail(CHNSW_IO, errno_text("cannot read", path_));
            if (n == 0) fail(CHNSW_CORRUPT, "snapshot " + path_ + " is truncated");
            done += static_cast<size_t>(n);
        }
    }
    bool at_end() {
        char byte;
        for (;;) {
            ssize_t n = ::read(fd_, &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            return n == 0;
        }
    }

   private:
    int fd_;
    std::string path_;
};

void check_path(const char *path) {
    if (path == nullptr || path[0] == '\0') fail(CHNSW_INVALID_ARGUMENT, "snapshot path is empty");
    if (std::strlen(path) > 4000) fail(CHNSW_INVALID_ARGUMENT, "snapshot path is too long");
}

std::string directory_of(const std::string &path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

/// Header fields checked against the bounds (before anything is allocated).
void check_header(const Header &h, off_t file_size, const std::string &path) {
    auto corrupt = [&](const std::string &why) { fail(CHNSW_CORRUPT, "snapshot " + path + " is corrupted: " + why); };
    if (h.version != kFormatVersion)
        fail(CHNSW_CORRUPT, "snapshot " + path + " has format version " + std::to_string(h.version) +
                                ", this build reads version " + std::to_string(kFormatVersion));
    if (!valid_metric(h.metric)) corrupt("unknown metric");
    if (h.dimension < 1 || h.dimension > CHNSW_MAX_DIMENSION) corrupt("dimension out of range");
    if (h.m < CHNSW_MIN_M || h.m > CHNSW_MAX_M) corrupt("M out of range");
    if (h.ef_construction < 1 || h.ef_construction > kMaxEfConstruction) corrupt("ef_construction out of range");
    if (h.capacity < 1 || h.capacity > CHNSW_MAX_CAPACITY ||
        h.capacity > kMaxLevel0Bytes / bytes_per_element(h.dimension, h.m))
        corrupt("capacity out of range");
    if (h.slots > h.capacity) corrupt("more elements than capacity");
    if (h.removed > h.slots) corrupt("more removed elements than elements");
    if (h.slots == 0 ? h.max_level != -1 : (h.max_level < 0 || h.max_level > kMaxLevel)) corrupt("bad top level");
    if (h.slots > 0 && h.entry >= h.slots) corrupt("entry point out of range");
    // The body holds, per element, its level-0 record and a 4-byte level count.
    uint64_t minimum = kHeaderSize + h.slots * (bytes_per_element(h.dimension, h.m) + 4);
    if (file_size < 0 || static_cast<uint64_t>(file_size) < minimum)
        fail(CHNSW_CORRUPT, "snapshot " + path + " is truncated (" + std::to_string(file_size) + " bytes, at least " +
                                std::to_string(minimum) + " expected)");
}

Header read_header(int fd, const std::string &path, off_t &file_size, Checksum *checksum) {
    struct stat status;
    if (::fstat(fd, &status) != 0) fail(CHNSW_IO, errno_text("cannot stat", path));
    if (!S_ISREG(status.st_mode)) fail(CHNSW_INVALID_ARGUMENT, "snapshot " + path + " is not a regular file");
    file_size = status.st_size;
    if (file_size < static_cast<off_t>(kHeaderSize))
        fail(CHNSW_CORRUPT, "snapshot " + path + " is truncated (" + std::to_string(file_size) + " bytes)");
    unsigned char raw[kHeaderSize];
    size_t done = 0;
    while (done < kHeaderSize) {
        ssize_t n = ::read(fd, raw + done, kHeaderSize - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(CHNSW_IO, errno_text("cannot read", path));
        if (n == 0) fail(CHNSW_CORRUPT, "snapshot " + path + " is truncated");
        done += static_cast<size_t>(n);
    }
    Header header = Header::decode(raw);
    check_header(header, file_size, path);
    if (checksum) {
        std::memset(raw + kChecksumOffset, 0, 8);
        checksum->update(raw, kHeaderSize);
    }
    return header;
}

int open_for_reading(const char *path) {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) fail(CHNSW_IO, std::string("no snapshot at ") + path);
        fail(CHNSW_IO, errno_text("cannot open", path));
    }
    return fd;
}

/// Everything a search or an add could trust, checked on a freshly read graph.
void check_graph(const chnsw_index &index, const Header &h, const std::string &path) {
    const Graph &g = *index.graph;
    auto corrupt = [&](const std::string &why) { fail(CHNSW_CORRUPT, "snapshot " + path + " is corrupted: " + why); };
    const size_t elements = g.cur_element_count;
    size_t removed = 0;
    int top_level = -1;
    for (tableint id = 0; id < elements; id++) {
        const hnswlib::linklistsizeint *list0 = g.get_linklist0(id);
        unsigned short size = g.getListCount(const_cast<hnswlib::linklistsizeint *>(list0));
        if (size > g.maxM0_) corrupt("element " + std::to_string(id) + " has too many neighbours");
        const unsigned char flags = reinterpret_cast<const unsigned char *>(list0)[2];
        if (flags & ~Graph::DELETE_MARK) corrupt("element " + std::to_string(id) + " has unknown flags");
        if (flags & Graph::DELETE_MARK) removed++;
        const tableint *neighbours = reinterpret_cast<const tableint *>(list0 + 1);
        for (unsigned short j = 0; j < size; j++)
            if (neighbours[j] >= elements) corrupt("element " + std::to_string(id) + " links out of range");
        int level = g.element_levels_[id];
        top_level = std::max(top_level, level);
        for (int l = 1; l <= level; l++) {
            const hnswlib::linklistsizeint *list = g.get_linklist(id, l);
            unsigned short count = g.getListCount(const_cast<hnswlib::linklistsizeint *>(list));
            if (count > g.maxM_) corrupt("element " + std::to_string(id) + " has too many upper-layer neighbours");
            const tableint *upper = reinterpret_cast<const tableint *>(list + 1);
            for (unsigned short j = 0; j < count; j++)
                if (upper[j] >= elements || g.element_levels_[upper[j]] < l)
                    corrupt("element " + std::to_string(id) + " links to a missing upper-layer node");
        }
        const float *vector = reinterpret_cast<const float *>(g.getDataByInternalId(id));
        for (size_t i = 0; i < index.dimension; i++)
            if (!std::isfinite(vector[i])) corrupt("element " + std::to_string(id) + " has a non-finite component");
    }
    if (removed != h.removed) corrupt("removed count does not match");
    if (elements > 0 && (top_level != h.max_level || g.element_levels_[h.entry] != h.max_level))
        corrupt("entry point is not on the top level");
}

}  // namespace

// MARK: - C API

extern "C" const char *chnsw_version(void) { return "hnswlib 0.6.2 (Debian libhnswlib-dev) via chnsw 1"; }

extern "C" const char *chnsw_kernel(void) {
    switch (kernel()) {
#if defined(__x86_64__)
        case Kernel::avx512: return "avx512";
        case Kernel::avx2: return "avx2";
#endif
        default: return "generic";
    }
}

extern "C" int chnsw_create(size_t dimension, int metric, size_t m, size_t ef_construction, size_t ef_search,
                            size_t capacity, uint64_t seed, chnsw_index **out, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (out == nullptr) fail(CHNSW_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        check_parameters(dimension, metric, m, ef_construction, ef_search);
        check_capacity(capacity, dimension, m);
        auto index = std::make_unique<chnsw_index>(dimension, metric, m, ef_construction, ef_search);
        index->graph = std::make_unique<Graph>(&index->space, capacity, m, ef_construction, seed);
        *out = index.release();
    });
}

extern "C" int chnsw_add(chnsw_index *index, uint64_t label, const float *vector, size_t length, int grow,
                         char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        std::vector<float> scratch;
        const float *prepared = index->prepare(vector, length, scratch, "vector");
        WriteGuard guard(&index->lock);
        index->add_locked(label, prepared, grow != 0);
    });
}

extern "C" int chnsw_add_batch(chnsw_index *index, const uint64_t *labels, const float *vectors, size_t count,
                               size_t length, int grow, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        if (count == 0) return;
        if (labels == nullptr || vectors == nullptr) fail(CHNSW_INVALID_ARGUMENT, "batch buffers are NULL");
        if (length != index->dimension)
            fail(CHNSW_INVALID_ARGUMENT, "batch vectors have " + std::to_string(length) +
                                             " components, the index has dimension " + std::to_string(index->dimension));
        if (count > CHNSW_MAX_CAPACITY)
            fail(CHNSW_INVALID_ARGUMENT, "a batch holds at most " + std::to_string(CHNSW_MAX_CAPACITY) + " vectors");
        std::vector<float> scratch;
        for (size_t i = 0; i < count; i++) {
            std::string what = "vector " + std::to_string(i) + " of the batch";
            index->prepare(vectors + i * length, length, scratch, what.c_str());
        }
        constexpr size_t chunk = 64;
        size_t added = 0;
        try {
            while (added < count) {
                WriteGuard guard(&index->lock);
                size_t end = std::min(count, added + chunk);
                for (; added < end; added++) {
                    const float *prepared = index->prepare(vectors + added * length, length, scratch, "vector");
                    index->add_locked(labels[added], prepared, grow != 0);
                }
            }
        } catch (const Failure &failure) {
            fail(failure.status, std::string(failure.what()) + " (" + std::to_string(added) + " of " +
                                     std::to_string(count) + " vectors of the batch were added)");
        }
    });
}

extern "C" int chnsw_remove(chnsw_index *index, uint64_t label, int *removed, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        if (removed) *removed = 0;
        WriteGuard guard(&index->lock);
        Graph &g = *index->graph;
        auto found = g.label_lookup_.find(label);
        if (found == g.label_lookup_.end() || g.isMarkedDeleted(found->second)) return;
        g.markDeletedInternal(found->second);
        if (removed) *removed = 1;
    });
}

extern "C" int chnsw_set_ef(chnsw_index *index, size_t ef, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        if (ef < 1 || ef > CHNSW_MAX_EF)
            fail(CHNSW_INVALID_ARGUMENT, "ef must be 1..." + std::to_string(CHNSW_MAX_EF) + ", got " + std::to_string(ef));
        index->ef_search.store(ef, std::memory_order_relaxed);
    });
}

extern "C" int64_t chnsw_search(chnsw_index *index, const float *query, size_t length, size_t k, size_t ef,
                                chnsw_filter filter, void *filter_context, uint64_t *labels, float *distances,
                                char *error, size_t error_capacity) {
    return guarded<int64_t>(error, error_capacity, -1, nullptr, [&]() -> int64_t {
        check_search_arguments(index, k, labels, distances);
        if (ef > CHNSW_MAX_EF)
            fail(CHNSW_INVALID_ARGUMENT, "ef must be 1..." + std::to_string(CHNSW_MAX_EF) + ", got " + std::to_string(ef));
        std::vector<float> scratch;
        const float *prepared = index->prepare(query, length, scratch, "query");
        size_t beam = std::max(ef == 0 ? index->ef_search.load(std::memory_order_relaxed) : ef, k);
        Filter accept{filter, filter_context};
        const Filter *active = filter ? &accept : nullptr;

        ReadGuard guard(&index->lock);
        const Graph &g = *index->graph;
        const size_t live = index->live();
        if (live == 0) return 0;
        MaxHeap top = reserved_heap(beam + 1);
        tableint entry = descend(*index, prepared);
        bool complete;
        if (active == nullptr && g.num_deleted_ == 0) {
            complete = search_base_layer<false>(*index, prepared, entry, beam, nullptr, SIZE_MAX, top);
        } else {
            // A walk that computes more distances than half a scan without filling its beam
            // (a selective filter, many removals) is better finished by the scan.
            size_t budget = std::max<size_t>(g.cur_element_count / 2, 1024);
            complete = search_base_layer<true>(*index, prepared, entry, beam, active, budget, top);
        }
        if (!complete || top.size() < std::min(k, live)) {
            MaxHeap exact = reserved_heap(k + 1);
            scan(*index, prepared, k, active, exact);
            return emit(g, exact, k, labels, distances);
        }
        return emit(g, top, k, labels, distances);
    });
}

extern "C" int64_t chnsw_search_exact(chnsw_index *index, const float *query, size_t length, size_t k,
                                      chnsw_filter filter, void *filter_context, uint64_t *labels, float *distances,
                                      char *error, size_t error_capacity) {
    return guarded<int64_t>(error, error_capacity, -1, nullptr, [&]() -> int64_t {
        check_search_arguments(index, k, labels, distances);
        std::vector<float> scratch;
        const float *prepared = index->prepare(query, length, scratch, "query");
        Filter accept{filter, filter_context};
        ReadGuard guard(&index->lock);
        MaxHeap top;
        scan(*index, prepared, k, filter ? &accept : nullptr, top);
        return emit(*index->graph, top, k, labels, distances);
    });
}

extern "C" int chnsw_contains(chnsw_index *index, uint64_t label) {
    if (index == nullptr) return 0;
    ReadGuard guard(&index->lock);
    const Graph &g = *index->graph;
    auto found = g.label_lookup_.find(label);
    return found != g.label_lookup_.end() && !g.isMarkedDeleted(found->second) ? 1 : 0;
}

extern "C" size_t chnsw_count(chnsw_index *index) {
    if (index == nullptr) return 0;
    ReadGuard guard(&index->lock);
    return index->live();
}

extern "C" size_t chnsw_slots_used(chnsw_index *index) {
    if (index == nullptr) return 0;
    ReadGuard guard(&index->lock);
    return index->graph->cur_element_count;
}

extern "C" size_t chnsw_capacity(chnsw_index *index) {
    if (index == nullptr) return 0;
    ReadGuard guard(&index->lock);
    return index->graph->max_elements_;
}

extern "C" size_t chnsw_dimension(chnsw_index *index) { return index ? index->dimension : 0; }
extern "C" int chnsw_metric(chnsw_index *index) { return index ? index->metric : -1; }
extern "C" size_t chnsw_m(chnsw_index *index) { return index ? index->m : 0; }
extern "C" size_t chnsw_ef_construction(chnsw_index *index) { return index ? index->ef_construction : 0; }
extern "C" size_t chnsw_ef(chnsw_index *index) { return index ? index->ef_search.load(std::memory_order_relaxed) : 0; }

extern "C" int chnsw_resize(chnsw_index *index, size_t capacity, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        check_capacity(capacity, index->dimension, index->m);
        WriteGuard guard(&index->lock);
        Graph &g = *index->graph;
        if (capacity < g.cur_element_count)
            fail(CHNSW_INVALID_ARGUMENT, "capacity " + std::to_string(capacity) + " is below the " +
                                             std::to_string(g.cur_element_count) + " slots in use");
        if (capacity != g.max_elements_) g.resizeIndex(capacity);
    });
}

extern "C" int chnsw_save(chnsw_index *index, const char *path, uint64_t tag, char *error, size_t error_capacity) {
    static std::atomic<uint64_t> sequence{0};
    std::string temporary;
    int status = guarded_status(error, error_capacity, [&] {
        if (index == nullptr) fail(CHNSW_INVALID_ARGUMENT, "index is NULL");
        check_path(path);
        const std::string target(path);
        temporary = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(sequence.fetch_add(1));
        FileDescriptor file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (file.get() < 0) {
            temporary.clear();
            fail(CHNSW_IO, errno_text("cannot create", target + ".tmp.*"));
        }
        {
            ReadGuard guard(&index->lock);
            const Graph &g = *index->graph;
            Header header;
            header.metric = index->metric;
            header.dimension = index->dimension;
            header.m = index->m;
            header.ef_construction = index->ef_construction;
            header.capacity = g.max_elements_;
            header.slots = g.cur_element_count;
            header.removed = g.num_deleted_;
            header.max_level = g.cur_element_count == 0 ? -1 : g.maxlevel_;
            header.entry = g.cur_element_count == 0 ? 0 : g.enterpoint_node_;
            header.tag = tag;
            unsigned char raw[kHeaderSize];
            header.encode(raw);
            SnapshotWriter writer(file.get(), temporary);
            writer.put(raw, kHeaderSize);
            writer.put(g.data_level0_memory_, g.cur_element_count * g.size_data_per_element_);
            for (size_t id = 0; id < g.cur_element_count; id++) {
                uint32_t level = static_cast<uint32_t>(g.element_levels_[id]);
                writer.put(&level, 4);
                if (level > 0) writer.put(g.linkLists_[id], g.size_links_per_element_ * level);
            }
            writer.flush();
            uint64_t checksum = writer.checksum();
            if (::pwrite(file.get(), &checksum, 8, kChecksumOffset) != 8)
                fail(CHNSW_IO, errno_text("cannot write", temporary));
        }
        if (::fsync(file.get()) != 0) fail(CHNSW_IO, errno_text("cannot fsync", temporary));
        if (::close(file.release()) != 0) fail(CHNSW_IO, errno_text("cannot close", temporary));
        if (::rename(temporary.c_str(), target.c_str()) != 0) fail(CHNSW_IO, errno_text("cannot rename onto", target));
        temporary.clear();
        std::string directory = directory_of(target);
        FileDescriptor folder(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (folder.get() >= 0) ::fsync(folder.get());
    });
    if (!temporary.empty()) ::unlink(temporary.c_str());
    return status;
}

extern "C" int chnsw_snapshot_info(const char *path, chnsw_snapshot_header *out, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        check_path(path);
        if (out == nullptr) fail(CHNSW_INVALID_ARGUMENT, "out is NULL");
        FileDescriptor file(open_for_reading(path));
        off_t size = 0;
        Header h = read_header(file.get(), path, size, nullptr);
        out->format_version = h.version;
        out->metric = h.metric;
        out->dimension = h.dimension;
        out->m = h.m;
        out->ef_construction = h.ef_construction;
        out->capacity = h.capacity;
        out->slots = h.slots;
        out->removed = h.removed;
        out->tag = h.tag;
    });
}

extern "C" int chnsw_load(const char *path, size_t dimension, int metric, size_t ef_search, uint64_t seed,
                          chnsw_index **out, uint64_t *tag, char *error, size_t error_capacity) {
    return guarded_status(error, error_capacity, [&] {
        if (out == nullptr) fail(CHNSW_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        check_path(path);
        check_dimension(dimension);
        if (!valid_metric(metric)) fail(CHNSW_INVALID_ARGUMENT, "unknown metric " + std::to_string(metric));
        if (ef_search < 1 || ef_search > CHNSW_MAX_EF)
            fail(CHNSW_INVALID_ARGUMENT, "ef must be 1..." + std::to_string(CHNSW_MAX_EF));
        FileDescriptor file(open_for_reading(path));
        off_t size = 0;
        Checksum header_sum;
        Header h = read_header(file.get(), path, size, &header_sum);
        if (h.dimension != dimension || h.metric != metric)
            fail(CHNSW_MISMATCH, std::string("snapshot ") + path + " holds a " + metric_name(h.metric) + " index of dimension " +
                                     std::to_string(h.dimension) + ", expected " + metric_name(metric) + " of dimension " +
                                     std::to_string(dimension));

        auto index = std::make_unique<chnsw_index>(h.dimension, h.metric, h.m, h.ef_construction, ef_search);
        index->graph = std::make_unique<Graph>(&index->space, h.capacity, h.m, h.ef_construction, seed);
        Graph &g = *index->graph;
        if (g.size_data_per_element_ != bytes_per_element(h.dimension, h.m))
            fail(CHNSW_INTERNAL, "hnswlib's element layout differs from the snapshot format's");

        // The body's checksum continues from the header's (checksum field zeroed).
        SnapshotReader reader(file.get(), path);
        Checksum body_sum = header_sum;
        auto read_body = [&](void *data, size_t length) {
            reader.get(data, length);
            body_sum.update(data, length);
        };
        read_body(g.data_level0_memory_, h.slots * g.size_data_per_element_);
        uint64_t remaining = static_cast<uint64_t>(size) - kHeaderSize - h.slots * g.size_data_per_element_;
        for (size_t id = 0; id < h.slots; id++) {
            uint32_t level = 0;
            if (remaining < 4) fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " is truncated");
            read_body(&level, 4);
            remaining -= 4;
            if (level > static_cast<uint64_t>(h.max_level))
                fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " is corrupted: element level above the top level");
            size_t bytes = g.size_links_per_element_ * level;
            if (bytes > remaining) fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " is truncated");
            g.element_levels_[id] = static_cast<int>(level);
            g.linkLists_[id] = nullptr;
            if (level > 0) {
                char *links = static_cast<char *>(std::malloc(bytes + 1));
                if (links == nullptr) throw std::bad_alloc();
                g.linkLists_[id] = links;
                g.cur_element_count = id + 1;  // the destructor frees what is counted
                read_body(links, bytes);
                remaining -= bytes;
            }
            g.cur_element_count = id + 1;
        }
        if (!reader.at_end()) fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " has trailing bytes");
        if (body_sum.value() != h.checksum)
            fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " is corrupted: checksum mismatch");

        g.cur_element_count = h.slots;
        g.maxlevel_ = static_cast<int>(h.max_level);
        g.enterpoint_node_ = h.slots == 0 ? static_cast<tableint>(-1) : static_cast<tableint>(h.entry);
        check_graph(*index, h, path);
        g.num_deleted_ = h.removed;
        for (tableint id = 0; id < h.slots; id++) {
            if (!g.label_lookup_.emplace(g.getExternalLabel(id), id).second)
                fail(CHNSW_CORRUPT, std::string("snapshot ") + path + " is corrupted: a label appears twice");
        }
        if (tag) *tag = h.tag;
        *out = index.release();
    });
}

extern "C" void chnsw_free(chnsw_index *index) { delete index; }
