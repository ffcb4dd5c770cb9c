#include "chnsw.h"
#include <hnswlib/hnswlib.h>

extern "C" const char *chnsw_version(void) { return "hnswlib (Debian libhnswlib-dev)"; }
