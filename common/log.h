/*
 * Logging to stderr. Levels follow syslog's order. injector/ and common/ log
 * only at debug level; daemon/ decides what the user sees.
 */
#pragma once

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
	LOG_LVL_TRACE, /* every ptrace request */
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_prefix(const char *prefix);

__attribute__((format(printf, 2, 3))) void log_emit(enum log_level level, const char *fmt, ...);

#define log_enabled(lvl) ((lvl) <= log_get_level())
#define log_error(...) log_emit(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LVL_DEBUG))                                                    \
			log_emit(LOG_LVL_DEBUG, __VA_ARGS__);                                      \
	} while (0)
#define log_trace(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LVL_TRACE))                                                    \
			log_emit(LOG_LVL_TRACE, __VA_ARGS__);                                      \
	} while (0)
