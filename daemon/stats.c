/*
 * Statistics: one JSON object per run, written atomically (temporary file
 * and rename) so a reader never sees half of it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "relocate.h"
#include "stats.h"
#include "supervisor.h"
#include "util.h"

static int shell_status(int wait_status)
{
	return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

static const struct relocate_stats *root_relocation(const struct supervisor *sv)
{
	if (sv->root->rel)
		return relocate_stats(sv->root->rel);
	return sv->root_rel ? relocate_stats(sv->root_rel) : NULL;
}

static struct json_object *functions_json(const struct supervisor *sv)
{
	const struct relocate_stats *rs = root_relocation(sv);
	struct json_object *o = json_object_new_object();
	struct json_object *refused = json_object_new_object();

	json_object_object_add(o, "found", json_object_new_uint64(rs ? rs->found : 0));
	json_object_object_add(o, "relocated", json_object_new_uint64(rs ? rs->relocated : 0));
	if (rs && rs->samples)
		json_object_object_add(o, "samples", json_object_new_uint64(rs->samples));
	json_object_object_add(o, "code_bytes", json_object_new_uint64(rs ? rs->code_bytes : 0));
	json_object_object_add(o, "plt_calls_direct",
			       json_object_new_uint64(rs ? rs->plt_direct : 0));
	for (size_t i = 0; rs && i < rs->n_refused; i++)
		json_object_object_add(refused, rs->refused[i].reason,
				       json_object_new_uint64(rs->refused[i].count));
	json_object_object_add(o, "refused", refused);
	if (rs && rs->samples)
		json_object_object_add(o, "samples", json_object_new_uint64(rs->samples));
	if (rs && rs->blocked)
		json_object_object_add(o, "blocked", json_object_new_string(rs->blocked));
	return o;
}

/* collisions, traps and latency_us: what the guard did. */
static void guard_json(const struct supervisor *sv, struct json_object *o)
{
	const struct guard_stats *g = &sv->gstats;
	struct json_object *c = json_object_new_object();
	struct json_object *t = json_object_new_object();
	struct json_object *l = json_object_new_object();
	uint64_t total = g->stack;

	for (int k = INJ_REQ_MMAP; k < INJ_REQ_KINDS; k++) {
		json_object_object_add(c, inj_request_kind_name(k),
				       json_object_new_uint64(g->collisions[k]));
		total += g->collisions[k];
	}
	json_object_object_add(c, "stack", json_object_new_uint64(g->stack));
	json_object_object_add(c, "total", json_object_new_uint64(total));
	json_object_object_add(o, "collisions", c);
	json_object_object_add(t, "total", json_object_new_uint64(g->traps));
	json_object_object_add(t, "colliding", json_object_new_uint64(g->colliding));
	json_object_object_add(o, "traps", t);
	json_object_object_add(l, "count", json_object_new_uint64(g->n_latency));
	json_object_object_add(l, "median",
			       json_object_new_double(guard_latency_percentile(g, 50)));
	json_object_object_add(l, "p99", json_object_new_double(guard_latency_percentile(g, 99)));
	json_object_object_add(l, "max", json_object_new_double(guard_latency_percentile(g, 100)));
	json_object_object_add(o, "latency_us", l);
}

static struct json_object *ranges_json(const struct range *v, size_t n)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_new_array();
		json_object_array_add(p, json_object_new_uint64(v[i].start));
		json_object_array_add(p, json_object_new_uint64(v[i].end));
		json_object_array_add(a, p);
	}
	return a;
}

/* guard: how the root process's requests were trapped, and what stays after detach. */
static struct json_object *guard_state_json(const struct supervisor *sv)
{
	const struct guard *g = sv->root->proc ? &sv->root->guard : &sv->last_guard;
	struct json_object *o = json_object_new_object();
	const char *mode = !g->active ? "none" : g->syscall_mode ? "ptrace_syscall" : "seccomp";

	json_object_object_add(o, "mode", json_object_new_string(mode));
	json_object_object_add(o, "filters", json_object_new_uint64(g->n_windows));
	json_object_object_add(o, "windows", ranges_json(g->windows, g->n_windows));
	json_object_object_add(o, "reserved", ranges_json(g->reserved, g->n_reserved));
	return o;
}

static struct json_object *stats_json(const struct supervisor *sv)
{
	const struct target *root = sv->root;
	struct json_object *o = json_object_new_object();
	struct json_object *region = json_object_new_object();
	uint64_t base = 0, bytes = 0, huge = 0, pieces = 0;

	if (root->region) {
		base = root->region->base;
		bytes = root->region->size;
		huge = root->region->huge_pages;
		pieces = root->region->n_pieces;
	} else if (sv->last_region.size) {
		base = sv->last_region.base;
		bytes = sv->last_region.size;
		huge = sv->last_region.huge_pages;
		pieces = sv->last_region.n_pieces;
	}
	json_object_object_add(o, "pid", json_object_new_int(root->pid));
	json_object_object_add(o, "exit_status",
			       root->exited ? json_object_new_int(shell_status(root->wait_status))
					    : NULL);
	json_object_object_add(o, "functions", functions_json(sv));
	json_object_object_add(region, "address", json_object_new_uint64(base));
	json_object_object_add(region, "bytes", json_object_new_uint64(bytes));
	json_object_object_add(region, "pages", json_object_new_uint64(bytes / 4096));
	json_object_object_add(region, "moves", json_object_new_uint64(sv->gstats.moves));
	json_object_object_add(region, "pieces", json_object_new_uint64(pieces));
	json_object_object_add(region, "huge_pages", json_object_new_uint64(huge));
	json_object_object_add(o, "region", region);
	guard_json(sv, o);
	json_object_object_add(o, "guard", guard_state_json(sv));
	json_object_object_add(o, "attach_pause_us", json_object_new_uint64(root->attach_pause_us));
	json_object_object_add(o, "detach_pause_us", json_object_new_uint64(root->detach_pause_us));
	json_object_object_add(o, "attach_stop_us", json_object_new_uint64(root->attach_stop_us));
	json_object_object_add(o, "detach_stop_us", json_object_new_uint64(root->detach_stop_us));
	json_object_object_add(o, "relocate_pause_us",
			       json_object_new_uint64(root->relocate_pause_us));
	json_object_object_add(o, "threads", json_object_new_uint64(root->max_threads));
	json_object_object_add(o, "processes", json_object_new_uint64(sv->nprocesses));
	json_object_object_add(o, "exec_injections", json_object_new_uint64(sv->exec_injections));
	return o;
}

static int write_json(const char *path, struct json_object *o)
{
	char tmp[4096];
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	_cleanup_fclose_ FILE *f = NULL;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return negerrno();
	if (fprintf(f, "%s\n", text) < 0 || fflush(f) != 0) {
		int r = negerrno();
		unlink(tmp);
		return r;
	}
	if (rename(tmp, path) < 0) {
		int r = negerrno();
		unlink(tmp);
		return r;
	}
	return 0;
}

static void print_summary(const struct supervisor *sv)
{
	const struct target *root = sv->root;
	char fate[96];
	uint64_t bytes = sv->last_region.size;

	if (root->exited && WIFEXITED(root->wait_status))
		snprintf(fate, sizeof(fate), "exited with status %d",
			 WEXITSTATUS(root->wait_status));
	else if (root->exited)
		snprintf(fate, sizeof(fate), "was killed by signal %d (%s)",
			 WTERMSIG(root->wait_status), strsignal(WTERMSIG(root->wait_status)));
	else if (sv->detached)
		snprintf(fate, sizeof(fate), "was detached and runs on");
	else
		snprintf(fate, sizeof(fate), "was left");
	const struct relocate_stats *rs = root_relocation(sv);
	if (rs && rs->blocked) {
		log_info("%d: no functions relocated: %s", root->pid, rs->blocked);
	} else if (rs) {
		uint64_t refused = 0;
		for (size_t i = 0; i < rs->n_refused; i++)
			refused += rs->refused[i].count;
		log_info("%d: %" PRIu64 " of %" PRIu64 " functions relocated (%" PRIu64
			 " KiB of code), %" PRIu64 " refused",
			 root->pid, rs->relocated, rs->found, rs->code_bytes >> 10, refused);
	}
	log_info("%d %s; region %#" PRIx64 " (%" PRIu64 " KiB, %" PRIu64 " huge pages); "
		 "attach pause %" PRIu64 " us, detach pause %" PRIu64
		 " us; %zu threads, %zu processes",
		 root->pid, fate, sv->last_region.base, bytes >> 10, sv->last_region.huge_pages,
		 root->attach_pause_us, root->detach_pause_us, root->max_threads, sv->nprocesses);
	if (sv->gstats.colliding)
		log_info("%d: %" PRIu64 " requests trapped, %" PRIu64
			 " collided with optd's pages, %" PRIu64
			 " moves; trap to resume median %.0f us, p99 %.0f us, max %.0f us",
			 root->pid, sv->gstats.traps, sv->gstats.colliding, sv->gstats.moves,
			 guard_latency_percentile(&sv->gstats, 50),
			 guard_latency_percentile(&sv->gstats, 99),
			 guard_latency_percentile(&sv->gstats, 100));
	else if (sv->gstats.traps)
		log_info("%d: %" PRIu64 " requests trapped, none collided with optd's pages",
			 root->pid, sv->gstats.traps);
}

void stats_finish(struct supervisor *sv, int optd_status)
{
	struct json_object *o;
	int r;

	(void)optd_status;
	if (sv->opt->stats_path) {
		o = stats_json(sv);
		r = o ? write_json(sv->opt->stats_path, o) : -ENOMEM;
		json_object_put(o);
		if (r < 0)
			log_error("cannot write statistics to %s: %s", sv->opt->stats_path,
				  strerror(-r));
	}
	print_summary(sv);
}
