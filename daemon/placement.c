/*
 * --placement=adversarial: the region goes where the target is about to ask
 * (placement.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "log.h"
#include "optd.h"
#include "place.h"
#include "placement.h"
#include "region.h"
#include "supervisor.h"
#include "syscall.h"
#include "target.h"
#include "util.h"

#define PAGE 4096ULL
#define STACK_GUARD_GAP (1ULL << 20)
/*
 * Every adversarial move that leaves the guarded windows installs a filter,
 * and filters cannot be removed. Half the kernel's budget stays for the
 * moves of near placement (and of this image's children after they exec).
 */
#define PLACEMENT_FILTER_RESERVE 16384

/* ---- the choice ---- */

/* How far past its first address a candidate may be pushed by what is mapped there. */
#define PLACEMENT_SCAN (256ULL << 20)

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* [a, a + size) lies within [lo, hi), the user address space and rel32 reach. */
static bool in_bounds(const struct placement_facts *f, uint64_t a, uint64_t lo, uint64_t hi)
{
	uint64_t low = f->mmap_min_addr > PAGE ? ALIGN_UP(f->mmap_min_addr, PAGE) : PAGE;
	uint64_t end = a + f->size;

	if (a < lo || a < low || a > PLACE_USER_TOP - PAGE - f->size || end > hi)
		return false;
	return !f->reach_hi ||
	       (a + PLACE_REACH_REL32 >= f->reach_hi && end <= f->reach_lo + PLACE_REACH_REL32);
}

/*
 * The first place from a onwards (upward, or downward with down) that is
 * free with a free page on each side and clear of what collided, within
 * [lo, hi). Each step skips past one obstacle, so it ends. 0 if none.
 */
static uint64_t scan(const struct maps *m, const struct placement_facts *f, uint64_t a, bool down,
		     uint64_t lo, uint64_t hi)
{
	for (;;) {
		uint64_t next = a;
		bool blocked = false;

		if (a % PAGE || !in_bounds(f, a, lo, hi))
			return 0;
		for (size_t i = 0; i < m->n; i++) {
			const struct maps_entry *e = &m->v[i];

			if (!range_overlaps(a - PAGE, a + f->size + PAGE, e->start, e->end))
				continue;
			blocked = true;
			if (down)
				next = e->start < next + f->size + PAGE
					   ? sat_sub(e->start, f->size + PAGE)
					   : next;
			else
				next = e->end + PAGE > next ? e->end + PAGE : next;
		}
		for (unsigned i = 0; f->hit && i < f->hit->n_clear; i++) {
			const struct range *c = &f->hit->clear[i];

			if (!range_overlaps(a, a + f->size, c->start, c->end))
				continue;
			blocked = true;
			if (down)
				next =
				    c->start < next + f->size ? sat_sub(c->start, f->size) : next;
			else
				next = c->end > next ? c->end : next;
		}
		if (!blocked)
			return a;
		next = down ? ALIGN_DOWN(next, PAGE) : ALIGN_UP(next, PAGE);
		if (next == a || next == 0)
			return 0;
		a = next;
	}
}

/* A candidate: the first fit upward from a, or downward from a region ending at end. */
struct candidate {
	uint64_t addr;
	const char *what;
};

static bool up(const struct maps *m, const struct placement_facts *f, uint64_t a, const char *what,
	       struct candidate *ret)
{
	ret->addr = scan(m, f, a, false, a, a + PLACEMENT_SCAN + f->size);
	ret->what = what;
	return ret->addr != 0;
}

/* Downward from a region ending at end, no lower than a region ending above floor. */
static bool down(const struct maps *m, const struct placement_facts *f, uint64_t end,
		 uint64_t floor, const char *what, struct candidate *ret)
{
	uint64_t lo = sat_sub(end, PLACEMENT_SCAN + f->size);

	if (end < f->size + PAGE)
		return false;
	if (sat_sub(floor + PAGE, f->size) > lo)
		lo = sat_sub(floor + PAGE, f->size);
	ret->addr = scan(m, f, end - f->size, true, lo, end);
	ret->what = what;
	return ret->addr != 0;
}

int placement_pick(const struct maps *m, const struct placement_facts *f, uint64_t *ret_addr,
		   const char **ret_what)
{
	const struct placement_hit *h = f ? f->hit : NULL;
	uint64_t backoff, floor;
	struct candidate c = {0};
	bool found = false;

	if (!m || !f || !ret_addr || !ret_what || !f->size || f->size % PAGE)
		return -EINVAL;
	backoff = PLACEMENT_BACKOFF << (f->moves < 32 ? f->moves : 32);
	/* A region ending above floor is where the stack's growth meets it (the guard gap). */
	floor = sat_sub(sat_sub(f->stack_end, f->stack_limit), f->stack_guard_gap);

	/* Where the request that collided shows the target is heading. */
	if (h && h->kind == PLACEMENT_HIT_BRK) {
		/* The kernel keeps a page free above the new break; one more as our gap. */
		found = up(m, f, ALIGN_UP(h->addr, PAGE) + 2 * PAGE + backoff,
			   "above the new break", &c);
	} else if (h && h->kind == PLACEMENT_HIT_MAP) {
		if (f->prev_map && f->prev_map->head.start > h->head.start)
			found = down(m, f, sat_sub(ALIGN_DOWN(h->head.start, PAGE), PAGE + backoff),
				     0, "below the mapping asked for", &c);
		else
			found = up(m, f, ALIGN_UP(h->head.end, PAGE) + PAGE + backoff,
				   "past the mapping asked for", &c);
	} else if (h && h->kind == PLACEMENT_HIT_STACK && f->stack_end) {
		found = down(m, f, sat_sub(ALIGN_DOWN(h->addr, PAGE), f->stack_guard_gap + backoff),
			     floor, "further down the stack's growth area", &c);
	}
	/* Where any image is about to ask. */
	if (!found && f->go_hint)
		found = up(m, f, f->go_hint, "at the Go runtime's arena hint", &c);
	if (!found && f->stack_start)
		found = down(m, f, sat_sub(f->stack_start, f->stack_guard_gap), floor,
			     "in the stack's growth area", &c);
	if (!found && f->brk)
		found = up(m, f, ALIGN_UP(f->brk, PAGE) + PAGE, "above the break", &c);
	if (!found)
		return -ENOENT;
	*ret_addr = c.addr;
	*ret_what = c.what;
	return 0;
}

/* ---- the target ---- */

/* The executable carries the Go toolchain's build id or build information. */
static bool go_executable(pid_t pid)
{
	char path[64];
	_cleanup_close_ int fd = -1;
	Elf_Scn *scn = NULL;
	size_t shstrndx;
	bool go = false;
	Elf *elf;

	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	if (elf_version(EV_CURRENT) == EV_NONE)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf)
		return false;
	if (elf_getshdrstrndx(elf, &shstrndx) == 0)
		while (!go && (scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;
			const char *name;

			if (!gelf_getshdr(scn, &sh) ||
			    !(name = elf_strptr(elf, shstrndx, sh.sh_name)))
				continue;
			go = strcmp(name, ".note.go.buildid") == 0 ||
			     strcmp(name, ".go.buildinfo") == 0;
		}
	elf_end(elf);
	return go;
}

/*
 * The facts of tg's address space (the world is stopped): the break from
 * a remote brk(0), the stack from m, RLIMIT_STACK. Reach: [lo, hi) when tg
 * has or will have copies.
 */
static int gather(struct target *tg, const struct maps *m, uint64_t size, uint64_t lo, uint64_t hi,
		  struct placement_facts *ret)
{
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
	const struct maps_entry *stack = maps_find_kind(m, MAPS_STACK);
	struct placement_facts f = {
	    .size = size,
	    .stack_guard_gap = STACK_GUARD_GAP,
	    .mmap_min_addr = inj_mmap_min_addr(),
	    .go_hint = tg->placement.go ? SUPERVISOR_GO_ARENA_HINT : 0,
	    .moves = tg->placement.moves,
	};
	int r;

	if (!t)
		return -ESRCH;
	if (tg->sv->opt->relocate != RELOCATE_NONE && hi > lo) {
		f.reach_lo = lo;
		f.reach_hi = hi;
	}
	r = inj_region_brk(t, &f.brk);
	if (r < 0)
		return r;
	if (stack) {
		f.stack_start = stack->start;
		f.stack_end = stack->end;
		f.stack_limit = inj_stack_limit(tg->pid);
	}
	*ret = f;
	return 0;
}

int placement_initial(struct target *tg, const struct maps *m, uint64_t near_start,
		      uint64_t near_end, uint64_t size, uint64_t *ret_addr)
{
	const struct optd_options *opt = tg->sv->opt;
	struct placement *st = &tg->placement;
	struct placement_facts f;
	const char *what;
	int r;

	*st = (struct placement){0};
	if (opt->placement != PLACEMENT_ADVERSARIAL)
		return -ENOENT;
	st->go = go_executable(tg->pid);
	if (opt->arena_at)
		return -ENOENT;
	r = gather(tg, m, size, near_start, near_end, &f);
	if (r < 0)
		return r;
	r = placement_pick(m, &f, ret_addr, &what);
	if (r == 0)
		log_debug("%d: adversarial placement: %s, %#" PRIx64, tg->pid, what, *ret_addr);
	return r;
}

void placement_note_request(struct target *tg, const struct inj_request *req)
{
	struct placement *st = &tg->placement;
	struct placement_hit h = {.kind = PLACEMENT_HIT_OTHER};

	switch (req->kind) {
	case INJ_REQ_BRK:
		h.kind = PLACEMENT_HIT_BRK;
		h.addr = req->args[0];
		break;
	case INJ_REQ_MMAP:
	case INJ_REQ_MREMAP:
	case INJ_REQ_SHMAT:
		h.kind = PLACEMENT_HIT_MAP;
		/* The last range is the one mapped: mremap's new place when it has one. */
		if (req->n_ranges)
			h.head = req->ranges[req->n_ranges - 1];
		break;
	default:
		break;
	}
	for (unsigned i = 0; i < req->n_ranges && i < PLACEMENT_MAX_CLEAR; i++)
		h.clear[h.n_clear++] = req->ranges[i];
	if (st->hit.kind == PLACEMENT_HIT_MAP)
		st->prev_map = st->hit;
	st->hit = h;
}

void placement_note_stack(struct target *tg, uint64_t addr)
{
	struct placement *st = &tg->placement;
	uint64_t fault = ALIGN_DOWN(addr, PAGE);

	if (st->hit.kind == PLACEMENT_HIT_MAP)
		st->prev_map = st->hit;
	st->hit = (struct placement_hit){
	    .kind = PLACEMENT_HIT_STACK,
	    .addr = addr,
	    .clear = {{fault > STACK_GUARD_GAP ? fault - STACK_GUARD_GAP : 0, PLACE_USER_TOP}},
	    .n_clear = 1,
	};
}

int placement_after_hit(struct target *tg, const struct maps *m, uint64_t lo, uint64_t hi,
			uint64_t size, uint64_t *ret_addr)
{
	struct placement *st = &tg->placement;
	struct placement_facts f;
	const char *what;
	int r;

	if (tg->sv->opt->placement != PLACEMENT_ADVERSARIAL || st->hit.kind == PLACEMENT_HIT_NONE)
		return -ENOENT;
	if (st->moves >= PLACEMENT_MAX_MOVES ||
	    guard_filter_room(&tg->guard) < PLACEMENT_FILTER_RESERVE)
		return -ENOENT;
	r = gather(tg, m, size, lo, hi, &f);
	if (r < 0)
		return r;
	f.hit = &st->hit;
	f.prev_map = st->prev_map.kind == PLACEMENT_HIT_MAP ? &st->prev_map : NULL;
	r = placement_pick(m, &f, ret_addr, &what);
	if (r < 0)
		return r;
	st->moves++;
	log_debug("%d: adversarial placement, move %u: %s, %#" PRIx64, tg->pid, st->moves, what,
		  *ret_addr);
	return 0;
}
