/*
 * optd: an out-of-process optimizer for running Linux x86-64 programs.
 */
#include <stdio.h>

#include "log.h"
#include "optd.h"

int main(int argc, char **argv)
{
	struct optd_options opt;
	int r;

	/* stdout may be a pipe the target shares: errors and logs only go to stderr. */
	log_set_prefix("optd");
	r = options_parse(argc, argv, &opt);
	if (r < 0)
		return OPTD_EXIT_OK; /* --help, --version */
	if (r > 0)
		return r;
	log_set_level(opt.verbosity < 0	   ? LOG_LVL_ERROR
		      : opt.verbosity == 0 ? LOG_LVL_INFO
		      : opt.verbosity == 1 ? LOG_LVL_DEBUG
					   : LOG_LVL_TRACE);
	return supervisor_main(&opt);
}
