#include <libpq-fe.h>
#ifdef __linux__
/* MeltyPostgres drives libpq's sockets with epoll (PostgresEventLoop). */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
