// hnswlib behind a C API (Swift imports this module as CHNSW).
#ifndef CHNSW_H
#define CHNSW_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/// The library's version string.
const char *chnsw_version(void);

#ifdef __cplusplus
}
#endif
#endif
