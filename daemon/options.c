/*
 * The command line (DESIGN.md, "The interface people use").
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "optd.h"

#define DEFAULT_REGION_SIZE (1ULL << 20)
#define DEFAULT_HEAP_RESERVE (256ULL << 20)
#define MAX_REGION_SIZE (1ULL << 30)

static const char usage_text[] =
    "Usage: optd run [OPTIONS] -- CMD [ARG...]   launch CMD under optd; exits with CMD's status\n"
    "       optd --pid PID [OPTIONS]             attach to a running process; SIGINT/SIGTERM "
    "detaches\n"
    "\n"
    "Options:\n"
    "  --region-size=SIZE  bytes of optd's region (K, M, G suffixes; default 1M)\n"
    "  --arena-at=ADDR     put the region at ADDR (hexadecimal)\n"
    "  --heap-reserve=SIZE bytes above the program break kept free (default 256M)\n"
    "  --relocate=MODE     hot (default: the functions most sampled in the first\n"
    "                      --profile-ms), all (every function of the executable that\n"
    "                      can be proven safe to copy), FUNC[,FUNC...], or none\n"
    "  --profile-ms=MS     how long hot samples before relocating (default 500)\n"
    "  --placement=POLICY  near (default: out of the way of the target's growth) or\n"
    "                      adversarial (where the target is about to ask, so that its\n"
    "                      requests collide with optd's pages: a validation mode)\n"
    "  --no-seccomp        trap the target's address-space requests with PTRACE_SYSCALL\n"
    "                      (a stop at every syscall: slow) instead of a seccomp filter\n"
    "  --stats=FILE        write the JSON statistics to FILE at exit or detach\n"
    "  -v, --verbose       more detail on stderr (twice: every ptrace request)\n"
    "  -q, --quiet         no summary, errors only\n"
    "  -h, --help          this text\n"
    "      --version       print the version\n"
    "\n"
    "Exit status: the command's in 'optd run' (128+N if killed by signal N); 0 after\n"
    "a detach; 64 bad options, 69 no such process, 70 internal error, 71 system error,\n"
    "75 target exited while optd attached, 77 not permitted to trace, 126 command not\n"
    "executable, 127 command not found. See optd(1).\n";

int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -errno;
	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "optd: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try 'optd --help')\n");
	return OPTD_EXIT_USAGE;
}

enum {
	OPT_PID = 256,
	OPT_REGION_SIZE,
	OPT_ARENA_AT,
	OPT_HEAP_RESERVE,
	OPT_STATS,
	OPT_VERSION,
	OPT_RELOCATE,
	OPT_PROFILE_MS,
	OPT_NO_SECCOMP,
	OPT_PLACEMENT,
};

/* --relocate=none|all|FUNC[,FUNC...] */
static int parse_relocate(const char *arg, struct optd_options *o)
{
	char *copy, *tok, *save = NULL;

	if (strcmp(arg, "none") == 0) {
		o->relocate = RELOCATE_NONE;
		return 0;
	}
	if (strcmp(arg, "all") == 0) {
		o->relocate = RELOCATE_ALL;
		return 0;
	}
	if (strcmp(arg, "hot") == 0) {
		o->relocate = RELOCATE_HOT;
		return 0;
	}
	if (!*arg)
		return -EINVAL;
	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char **v = realloc(o->relocate_names, (o->n_relocate_names + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		o->relocate_names = v;
		o->relocate_names[o->n_relocate_names++] = tok;
	}
	if (!o->n_relocate_names)
		return -EINVAL;
	o->relocate = RELOCATE_NAMED;
	return 0;
}

int options_parse(int argc, char **argv, struct optd_options *ret)
{
	static const struct option longopts[] = {
	    {"pid", required_argument, NULL, OPT_PID},
	    {"region-size", required_argument, NULL, OPT_REGION_SIZE},
	    {"arena-at", required_argument, NULL, OPT_ARENA_AT},
	    {"heap-reserve", required_argument, NULL, OPT_HEAP_RESERVE},
	    {"stats", required_argument, NULL, OPT_STATS},
	    {"relocate", required_argument, NULL, OPT_RELOCATE},
	    {"profile-ms", required_argument, NULL, OPT_PROFILE_MS},
	    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
	    {"placement", required_argument, NULL, OPT_PLACEMENT},
	    {"verbose", no_argument, NULL, 'v'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {0},
	};
	struct optd_options o = {
	    .region_size = DEFAULT_REGION_SIZE,
	    .heap_reserve = DEFAULT_HEAP_RESERVE,
	    .relocate = RELOCATE_HOT,
	    .profile_ms = 500,
	};
	int c, first = 1;

	/* `optd run ...`: the subcommand comes first. */
	if (argc > 1 && strcmp(argv[1], "run") == 0) {
		o.mode = OPTD_MODE_RUN;
		first = 2;
	}
	optind = first;
	opterr = 0;
	/*
	 * '+': stop at the first non-option, so CMD's own options are left
	 * alone. Options may come before the word "run" as well as after it.
	 */
	for (;;) {
		c = getopt_long(argc, argv, "+:vqh", longopts, NULL);
		if (c == -1) {
			if (o.mode == OPTD_MODE_NONE && optind < argc &&
			    strcmp(argv[optind], "run") == 0 &&
			    strcmp(argv[optind - 1], "--") != 0) {
				o.mode = OPTD_MODE_RUN;
				optind++;
				continue;
			}
			break;
		}
		char *end;
		long long v;
		int r;

		switch (c) {
		case OPT_PID:
			if (o.mode == OPTD_MODE_RUN)
				return usage_error("%s: --pid cannot be used with 'run'", "run");
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (errno || *end || end == optarg || v <= 0 || v > INT32_MAX)
				return usage_error("invalid pid '%s'", optarg);
			o.mode = OPTD_MODE_PID;
			o.pid = (pid_t)v;
			break;
		case OPT_REGION_SIZE:
			r = parse_size(optarg, &o.region_size);
			if (r < 0 || o.region_size < 8192 || o.region_size > MAX_REGION_SIZE ||
			    o.region_size % 4096)
				return usage_error(
				    "invalid --region-size '%s': a multiple of 4K from 8K to 1G",
				    optarg);
			break;
		case OPT_PROFILE_MS:
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 1 || v > 3600 * 1000)
				return usage_error("invalid --profile-ms '%s': 1 to 3600000",
						   optarg);
			o.profile_ms = (unsigned)v;
			break;
		case OPT_RELOCATE:
			r = parse_relocate(optarg, &o);
			if (r < 0)
				return usage_error(
				    "invalid --relocate '%s': none, all, or FUNC[,FUNC...]",
				    optarg);
			break;
		case OPT_HEAP_RESERVE:
			if (parse_size(optarg, &o.heap_reserve) < 0)
				return usage_error("invalid --heap-reserve '%s'", optarg);
			break;
		case OPT_ARENA_AT:
			errno = 0;
			o.arena_at = strtoull(optarg, &end, 16);
			if (errno || *end || end == optarg || !o.arena_at || o.arena_at % 4096)
				return usage_error(
				    "invalid --arena-at '%s': a page-aligned hexadecimal address",
				    optarg);
			break;
		case OPT_NO_SECCOMP:
			o.no_seccomp = true;
			break;
		case OPT_PLACEMENT:
			if (strcmp(optarg, "near") == 0)
				o.placement = PLACEMENT_NEAR;
			else if (strcmp(optarg, "adversarial") == 0)
				o.placement = PLACEMENT_ADVERSARIAL;
			else
				return usage_error("invalid --placement '%s': near or adversarial",
						   optarg);
			break;
		case OPT_STATS:
			if (!*optarg)
				return usage_error("%s--stats needs a file name", "");
			o.stats_path = optarg;
			break;
		case 'v':
			o.verbosity = o.verbosity < 0 ? 1 : o.verbosity + 1;
			break;
		case 'q':
			o.verbosity = -1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		case OPT_VERSION:
			printf("optd %s\n", OPTD_VERSION);
			return -1;
		case '?':
		default:
			if (optopt)
				return usage_error("unknown option '-%c'",
						   (char[]){(char)optopt, 0});
			return usage_error("unknown option '%s'", argv[optind - 1]);
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		}
	}

	if (o.mode == OPTD_MODE_RUN) {
		if (optind < argc && strcmp(argv[optind - 1], "--") != 0 &&
		    strcmp(argv[optind], "--") == 0)
			optind++;
		if (optind >= argc)
			return usage_error("%s: no command given", "run");
		o.argv = &argv[optind];
	} else if (o.mode == OPTD_MODE_PID) {
		if (optind < argc)
			return usage_error("unexpected argument '%s'", argv[optind]);
	} else {
		if (optind < argc)
			return usage_error("unknown command '%s'", argv[optind]);
		return usage_error("%snothing to do: give 'run -- CMD' or '--pid PID'", "");
	}
	*ret = o;
	return 0;
}
