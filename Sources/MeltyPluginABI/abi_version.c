#include "meltybase_plugin.h"

/* The ABI target is header-only in spirit; SwiftPM needs one translation unit. */
unsigned int mb_abi_header_major(void) { return MB_ABI_MAJOR; }
