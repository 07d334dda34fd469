/*
 * Stack walking with libunwind and our own remote accessors.
 *
 * libunwind-ptrace's stock accessors read every word with PTRACE_PEEKDATA and
 * every register with PTRACE_PEEKUSER, from inside the library (against
 * STYLE.md rule 3, and one syscall per word). Ours take the registers from
 * one PTRACE_GETREGS through injector/ptrace.c and memory from
 * inj_mem_read(), a page at a time, kept for the rest of the walk. Only the
 * ELF/CFI lookup is libunwind-ptrace's: _UPT_find_proc_info() maps the
 * object file named in /proc/PID/maps and reads the target's .eh_frame_hdr
 * and .eh_frame through our access_mem; it never calls ptrace.
 *
 * libunwind-ptrace's state remembers one object: the last one looked up.
 * A walk crosses objects at nearly every frame (the program, libc, the
 * copies' originals), and each change rereads /proc/PID/maps and maps the
 * object file again. So a synced unwinder keeps one such state per
 * executable mapping (a module), chosen by address; each reads the maps
 * once, at its first lookup, and then answers from its own image.
 */
#include <errno.h>
#include <libunwind-ptrace.h>
#include <libunwind.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "maps.h"
#include "mem.h"
#include "ptrace.h"
#include "stack.h"
#include "util.h"

#define LINE_SIZE PAGE_SIZE_4K
/* Pages kept during one walk: a deep stack, the code at a few ips, .eh_frame_hdr and .eh_frame. */
#define NLINES 32
/* libunwind's per-address-space cache of CFI rows, by ip (entries, a power of two). */
#define RS_CACHE_SIZE 4096
/* Remembered answers of at_sigreturn(), by ip (a power of two). */
#define NSIGRET 256
/* Ranges of code learnt about since the last flush; past this, flush and start over. */
#define MAX_SEEN 1024

struct line {
	uint64_t base;
	bool valid;
	uint8_t data[LINE_SIZE];
};

/*
 * What a range of the address space holds, as far as unwinding cares: the
 * same code lies at the same address exactly when two of these overlap and
 * are equal.
 */
enum code_kind {
	CODE_NONE = 0, /* nothing learnt from it: anonymous memory, data, unmapped */
	CODE_FILE,     /* a file, mapped with its offset 0 at base */
	CODE_VDSO,     /* the vDSO at base */
	CODE_AREA,     /* translated code (struct inj_unwind_area), key in base */
};

struct code {
	uint64_t start, end;
	enum code_kind kind;
	uint64_t dev, inode; /* CODE_FILE */
	uint64_t base;
};

/* An executable mapping of a file or the vDSO, with libunwind-ptrace's state for it. */
struct module {
	struct code code;
	void *upt; /* made at its first lookup: then holds its image and unwind table */
};

struct inj_unwinder {
	struct inj_process *proc;
	unw_addr_space_t as;
	void *upt; /* libunwind-ptrace's state when not synced: the last object it looked at */
	/*
	 * Synced (inj_unwinder_sync()) while no tracee ran since: lookups go to
	 * the module of their address, sorted by start, and nowhere else.
	 */
	bool synced;
	uint64_t synced_runs;
	struct module *mods;
	size_t n_mods;
	/*
	 * Where code lay that libunwind's rows and at_sigreturn()'s answers
	 * may have come from, since they were last flushed: sorted, disjoint.
	 */
	struct code *seen;
	size_t n_seen, cap_seen;
	inj_stack_translate_fn *translate;
	void *translate_opaque;
	bool page_cache;
	struct line *lines;
	unsigned next_line;
	/*
	 * Whether the code at an ip is a sigreturn trampoline, asked at every
	 * frame: without this, every walk would read a page of code per
	 * function. Code changes only where inj_unwinder_flush() is due anyway.
	 */
	struct {
		uint64_t ip; /* 0 = empty */
		bool yes;
	} sigret[NSIGRET];
};

/* One inj_stack_walk() in progress. */
struct walk {
	struct inj_unwinder *u;
	struct user_regs_struct regs;
	uint64_t step_ip; /* ip of the frame being stepped from */
	bool noinfo;	  /* this step found no unwind info: libunwind guessed */
	int err;	  /* -ESRCH or -ENOMEM seen by an accessor: ends the walk with it */
};

/*
 * The walk in progress. libunwind hands our accessors whatever argument
 * their caller holds, and inside _UPT_find_proc_info() that is
 * libunwind-ptrace's own state, not ours, so the walk is found here instead.
 */
static __thread struct walk *walking;

const char *inj_stack_end_name(enum inj_stack_end end)
{
	switch (end) {
	case INJ_STACK_END_OUTERMOST:
		return "outermost";
	case INJ_STACK_END_NO_INFO:
		return "no_info";
	case INJ_STACK_END_BROKEN:
		return "broken";
	case INJ_STACK_END_TRUNCATED:
		return "truncated";
	}
	return "?";
}

static void lines_reset(struct inj_unwinder *u)
{
	for (size_t i = 0; i < NLINES; i++)
		u->lines[i].valid = false;
	u->next_line = 0;
}

static int read_cached(struct walk *w, uint64_t addr, void *buf, size_t len)
{
	struct inj_unwinder *u = w->u;

	if (!u->page_cache)
		return inj_mem_read(u->proc, addr, buf, len);
	while (len) {
		uint64_t base = ALIGN_DOWN(addr, LINE_SIZE);
		size_t off = addr - base, n = LINE_SIZE - off < len ? LINE_SIZE - off : len;
		struct line *l = NULL;

		for (size_t i = 0; i < NLINES; i++) {
			if (u->lines[i].valid && u->lines[i].base == base) {
				l = &u->lines[i];
				break;
			}
		}
		if (!l) {
			int r;

			l = &u->lines[u->next_line];
			u->next_line = (u->next_line + 1) % NLINES;
			l->valid = false;
			r = inj_mem_read(u->proc, base, l->data, LINE_SIZE);
			if (r < 0)
				return r;
			l->base = base;
			l->valid = true;
		}
		memcpy(buf, l->data + off, n);
		buf = (char *)buf + n;
		addr += n;
		len -= n;
	}
	return 0;
}

/*
 * libunwind turns every failed read into "bad frame"; the errors that are
 * not about the stack end the walk with themselves.
 */
static void note_error(struct walk *w, int r)
{
	if ((r == -ESRCH || r == -ENOMEM) && !w->err)
		w->err = r;
}

/* ---- the accessors libunwind calls ---- */

/* The module holding ip, or NULL. */
static struct module *module_of(struct inj_unwinder *u, uint64_t ip)
{
	size_t lo = 0, hi = u->n_mods;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct module *m = &u->mods[mid];

		if (ip < m->code.start)
			hi = mid;
		else if (ip >= m->code.end)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

/* libunwind-ptrace's lookup, in the state that answers for ip. */
static int find_proc_info(struct walk *w, unw_addr_space_t as, uint64_t ip, unw_proc_info_t *pi,
			  int need_unwind_info)
{
	struct inj_unwinder *u = w->u;
	struct module *m;

	if (!u->synced)
		return _UPT_find_proc_info(as, ip, pi, need_unwind_info, u->upt);
	m = module_of(u, ip);
	/* Anonymous or unmapped code: libunwind-ptrace finds no file there either. */
	if (!m)
		return -UNW_ENOINFO;
	if (!m->upt) {
		m->upt = _UPT_create(u->proc->pid);
		if (!m->upt) {
			note_error(w, -ENOMEM);
			return -UNW_ENOMEM;
		}
	}
	return _UPT_find_proc_info(as, ip, pi, need_unwind_info, m->upt);
}

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
			      int need_unwind_info, void *arg)
{
	struct walk *w = walking;
	struct inj_unwinder *u = w->u;
	uint64_t at = ip, orig;
	bool before = false;
	int r;

	(void)arg;
	if (u->translate) {
		/*
		 * For a return address libunwind looks up ip - 1, inside the
		 * call, so that a call at a function's very end finds its own
		 * function. The hook maps instruction boundaries: ask it about
		 * the return address itself and look up the byte before the
		 * original's.
		 */
		if (ip + 1 == w->step_ip) {
			at = w->step_ip;
			before = true;
		}
		r = u->translate(u->translate_opaque, at, &orig);
		if (r == 0) {
			r = find_proc_info(w, as, before ? orig - 1 : orig, pi, need_unwind_info);
			if (r < 0) {
				w->noinfo = w->noinfo || r == -UNW_ENOINFO;
				return r;
			}
			/*
			 * libunwind runs the FDE's CFI program from start_ip,
			 * advancing by the original's instruction lengths,
			 * until it passes the frame's ip. Moving the FDE by
			 * this frame's own distance to the original makes it
			 * stop exactly where it stops for the original
			 * instruction, whatever the copy's lengths before it.
			 * The moved FDE is right for this ip only; libunwind
			 * keeps the resulting row by ip, not the FDE.
			 */
			pi->start_ip += at - orig;
			pi->end_ip += at - orig;
			return r;
		}
		if (r != -ENOENT) {
			w->noinfo = true;
			return -UNW_ENOINFO;
		}
	}
	r = find_proc_info(w, as, ip, pi, need_unwind_info);
	if (r == -UNW_ENOINFO)
		w->noinfo = true;
	return r;
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
	(void)arg;
	_UPT_put_unwind_info(as, pi, walking->u->upt);
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *ret_addr, void *arg)
{
	/* Nobody registers dynamic unwind info with libunwind in the target. */
	(void)as;
	(void)ret_addr;
	(void)arg;
	return -UNW_ENOINFO;
}

static int acc_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write,
			  void *arg)
{
	struct walk *w = walking;
	int r;

	(void)as;
	(void)arg;
	if (write)
		return -UNW_EINVAL;
	r = read_cached(w, addr, val, sizeof(*val));
	if (r < 0) {
		note_error(w, r);
		return -UNW_EINVAL;
	}
	return 0;
}

static const size_t reg_offset[] = {
    [UNW_X86_64_RAX] = offsetof(struct user_regs_struct, rax),
    [UNW_X86_64_RDX] = offsetof(struct user_regs_struct, rdx),
    [UNW_X86_64_RCX] = offsetof(struct user_regs_struct, rcx),
    [UNW_X86_64_RBX] = offsetof(struct user_regs_struct, rbx),
    [UNW_X86_64_RSI] = offsetof(struct user_regs_struct, rsi),
    [UNW_X86_64_RDI] = offsetof(struct user_regs_struct, rdi),
    [UNW_X86_64_RBP] = offsetof(struct user_regs_struct, rbp),
    [UNW_X86_64_RSP] = offsetof(struct user_regs_struct, rsp),
    [UNW_X86_64_R8] = offsetof(struct user_regs_struct, r8),
    [UNW_X86_64_R9] = offsetof(struct user_regs_struct, r9),
    [UNW_X86_64_R10] = offsetof(struct user_regs_struct, r10),
    [UNW_X86_64_R11] = offsetof(struct user_regs_struct, r11),
    [UNW_X86_64_R12] = offsetof(struct user_regs_struct, r12),
    [UNW_X86_64_R13] = offsetof(struct user_regs_struct, r13),
    [UNW_X86_64_R14] = offsetof(struct user_regs_struct, r14),
    [UNW_X86_64_R15] = offsetof(struct user_regs_struct, r15),
    [UNW_X86_64_RIP] = offsetof(struct user_regs_struct, rip),
};

static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write,
			  void *arg)
{
	(void)as;
	(void)arg;
	if (reg < 0 || (size_t)reg >= ARRAY_SIZE(reg_offset))
		return -UNW_EBADREG;
	if (write)
		return -UNW_EREADONLYREG;
	memcpy(val, (const char *)&walking->regs + reg_offset[reg], sizeof(*val));
	return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
			    void *arg)
{
	(void)as;
	(void)reg;
	(void)val;
	(void)write;
	(void)arg;
	return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
	(void)as;
	(void)c;
	(void)arg;
	return -UNW_EINVAL;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t ip, char *buf, size_t len,
			     unw_word_t *ret_off, void *arg)
{
	(void)arg;
	return _UPT_get_proc_name(as, ip, buf, len, ret_off, walking->u->upt);
}

static unw_accessors_t accessors = {
    .find_proc_info = acc_find_proc_info,
    .put_unwind_info = acc_put_unwind_info,
    .get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
    .access_mem = acc_access_mem,
    .access_reg = acc_access_reg,
    .access_fpreg = acc_access_fpreg,
    .resume = acc_resume,
    .get_proc_name = acc_get_proc_name,
};

/* ---- the unwinder ---- */

int inj_unwinder_new(struct inj_process *p, struct inj_unwinder **ret)
{
	struct inj_unwinder *u = calloc(1, sizeof(*u));

	if (!u)
		return -ENOMEM;
	u->proc = p;
	u->page_cache = true;
	u->lines = calloc(NLINES, sizeof(*u->lines));
	u->as = unw_create_addr_space(&accessors, 0);
	u->upt = _UPT_create(p->pid);
	if (!u->lines || !u->as || !u->upt)
		goto fail;
	if (unw_set_caching_policy(u->as, UNW_CACHE_GLOBAL) < 0 ||
	    unw_set_cache_size(u->as, RS_CACHE_SIZE, 0) < 0)
		goto fail;
	*ret = u;
	return 0;
fail:
	inj_unwinder_free(u);
	return -ENOMEM;
}

static void modules_free(struct module *mods, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (mods[i].upt)
			_UPT_destroy(mods[i].upt);
	free(mods);
}

void inj_unwinder_free(struct inj_unwinder *u)
{
	if (!u)
		return;
	if (u->upt)
		_UPT_destroy(u->upt);
	if (u->as)
		unw_destroy_addr_space(u->as);
	modules_free(u->mods, u->n_mods);
	free(u->seen);
	free(u->lines);
	free(u);
}

/* Drops libunwind's rows and at_sigreturn()'s answers. */
static void forget_rows(struct inj_unwinder *u)
{
	unw_flush_cache(u->as, 0, 0);
	memset(u->sigret, 0, sizeof(u->sigret));
	u->n_seen = 0;
}

static void unsync(struct inj_unwinder *u)
{
	modules_free(u->mods, u->n_mods);
	u->mods = NULL;
	u->n_mods = 0;
	u->synced = false;
}

int inj_unwinder_flush(struct inj_unwinder *u)
{
	/* libunwind-ptrace keeps the last object's image and table by address range. */
	void *upt = _UPT_create(u->proc->pid);

	if (!upt)
		return -ENOMEM;
	_UPT_destroy(u->upt);
	u->upt = upt;
	unsync(u);
	forget_rows(u);
	return 0;
}

int inj_unwinder_set_translate(struct inj_unwinder *u, inj_stack_translate_fn *fn, void *opaque)
{
	u->translate = fn;
	u->translate_opaque = opaque;
	return inj_unwinder_flush(u);
}

void inj_unwinder_set_page_cache(struct inj_unwinder *u, bool on)
{
	u->page_cache = on;
}

/* ---- what lies where: inj_unwinder_sync() ---- */

static struct code code_of(const struct maps_entry *e, const struct inj_unwind_area *areas,
			   size_t n_areas)
{
	struct code c = {.start = e->start, .end = e->end};

	for (size_t i = 0; i < n_areas; i++) {
		const struct inj_unwind_area *a = &areas[i];
		if (e->start < a->end && e->end > a->start)
			return (struct code){a->start, a->end, CODE_AREA, 0, 0, a->key};
	}
	if (e->kind == MAPS_VDSO) {
		c.kind = CODE_VDSO;
		c.base = e->start;
	} else if (e->kind == MAPS_FILE && e->inode) {
		c.kind = CODE_FILE;
		c.dev = (uint64_t)e->dev_major << 32 | e->dev_minor;
		c.inode = e->inode;
		c.base = e->start - e->offset;
	}
	return c;
}

static bool same_code(const struct code *a, const struct code *b)
{
	return a->kind != CODE_NONE && a->kind == b->kind && a->dev == b->dev &&
	       a->inode == b->inode && a->base == b->base;
}

/* The first seen range that ends after addr. */
static size_t seen_from(const struct inj_unwinder *u, uint64_t addr)
{
	size_t lo = 0, hi = u->n_seen;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (u->seen[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether c lies where different code was learnt about. */
static bool seen_differs(const struct inj_unwinder *u, const struct code *c)
{
	for (size_t i = seen_from(u, c->start); i < u->n_seen && u->seen[i].start < c->end; i++)
		if (!same_code(&u->seen[i], c))
			return true;
	return false;
}

/*
 * Adds c, merged with the equal ranges it overlaps or touches (no other
 * range overlaps it: seen_differs() said so). 0 or -ENOMEM.
 */
static int seen_add(struct inj_unwinder *u, struct code c)
{
	size_t i = seen_from(u, c.start), j;

	if (i > 0 && u->seen[i - 1].end == c.start && same_code(&u->seen[i - 1], &c))
		i--;
	j = i;
	while (j < u->n_seen && u->seen[j].start <= c.end && same_code(&u->seen[j], &c)) {
		if (u->seen[j].start < c.start)
			c.start = u->seen[j].start;
		if (u->seen[j].end > c.end)
			c.end = u->seen[j].end;
		j++;
	}
	if (i == j && u->n_seen == u->cap_seen) {
		size_t cap = u->cap_seen ? u->cap_seen * 2 : 64;
		struct code *v = realloc(u->seen, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		u->seen = v;
		u->cap_seen = cap;
	}
	/* Replace seen[i, j) by c. */
	if (i == j)
		memmove(&u->seen[i + 1], &u->seen[i], (u->n_seen - i) * sizeof(c));
	else if (j > i + 1)
		memmove(&u->seen[i + 1], &u->seen[j], (u->n_seen - j) * sizeof(c));
	u->n_seen += 1 - (j - i);
	u->seen[i] = c;
	return 0;
}

static bool is_module(const struct maps_entry *e, const struct code *c)
{
	return (e->prot & PROT_EXEC) && (c->kind == CODE_FILE || c->kind == CODE_VDSO);
}

/* The modules of m, keeping the state of those already known. 0 or -ENOMEM. */
static int sync_modules(struct inj_unwinder *u, const struct maps *m,
			const struct inj_unwind_area *areas, size_t n_areas)
{
	struct module *mods;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < m->n; i++) {
		struct code c = code_of(&m->v[i], areas, n_areas);
		n += is_module(&m->v[i], &c);
	}
	mods = calloc(n ? n : 1, sizeof(*mods));
	if (!mods)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < m->n; i++) {
		struct code c = code_of(&m->v[i], areas, n_areas);
		if (!is_module(&m->v[i], &c))
			continue;
		mods[n].code = c;
		/* Both lists are sorted: the old one is walked once. */
		while (k < u->n_mods && u->mods[k].code.start < c.start)
			k++;
		if (k < u->n_mods && u->mods[k].code.start == c.start &&
		    u->mods[k].code.end == c.end && same_code(&u->mods[k].code, &c)) {
			mods[n].upt = u->mods[k].upt;
			u->mods[k].upt = NULL;
		}
		n++;
	}
	modules_free(u->mods, u->n_mods);
	u->mods = mods;
	u->n_mods = n;
	return 0;
}

int inj_unwinder_sync(struct inj_unwinder *u, const struct maps *m,
		      const struct inj_unwind_area *areas, size_t n_areas)
{
	bool differs = false;
	int r = 0;

	for (size_t i = 0; i < m->n && !differs; i++) {
		struct code c = code_of(&m->v[i], areas, n_areas);
		/* Anything at all where code was learnt about, but that same code. */
		c.start = m->v[i].start;
		c.end = m->v[i].end;
		differs = seen_differs(u, &c);
	}
	for (size_t i = 0; i < n_areas && !differs; i++)
		differs = seen_differs(
		    u, &(struct code){areas[i].start, areas[i].end, CODE_AREA, 0, 0, areas[i].key});
	if (differs || u->n_seen > MAX_SEEN)
		forget_rows(u);
	for (size_t i = 0; i < m->n && r == 0; i++) {
		struct code c = code_of(&m->v[i], areas, n_areas);
		if (is_module(&m->v[i], &c))
			r = seen_add(u, c);
	}
	for (size_t i = 0; i < n_areas && r == 0; i++)
		r = seen_add(
		    u, (struct code){areas[i].start, areas[i].end, CODE_AREA, 0, 0, areas[i].key});
	if (r == 0)
		r = sync_modules(u, m, areas, n_areas);
	if (r < 0) {
		unsync(u);
		forget_rows(u);
		return r;
	}
	u->synced = true;
	u->synced_runs = inj_ptrace_runs();
	return 0;
}

/* ---- the walk ---- */

/*
 * A sigreturn trampoline (glibc's and musl's __restore_rt, Go's):
 * mov $15, %rax (rt_sigreturn); syscall. The kernel returns from a handler
 * there, so the frame's CFA is the rt_sigframe with the ucontext. Checked
 * here rather than with unw_is_signal_frame(): in libunwind 1.6 that answers
 * for the frame stepped from last, in later versions for the current one.
 */
static bool at_sigreturn(struct walk *w, uint64_t ip)
{
	static const uint8_t seq[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
	size_t slot = (ip * 0x9e3779b97f4a7c15ULL) >> 56 & (NSIGRET - 1);
	uint8_t code[sizeof(seq)];
	int r;

	if (ip && w->u->sigret[slot].ip == ip)
		return w->u->sigret[slot].yes;
	r = read_cached(w, ip, code, sizeof(code));
	if (r < 0) {
		note_error(w, r);
		return false;
	}
	w->u->sigret[slot].ip = ip;
	w->u->sigret[slot].yes = !memcmp(code, seq, sizeof(seq));
	return w->u->sigret[slot].yes;
}

static int walk(struct walk *w, struct inj_frame *frames, size_t max, size_t *ret_n,
		enum inj_stack_end *ret_end)
{
	enum inj_stack_end end;
	unw_cursor_t c;
	size_t n = 0;
	int r;

	r = unw_init_remote(&c, w->u->as, w->u->upt);
	if (r < 0)
		return w->err ?: -EIO;
	for (;;) {
		struct inj_frame *f = &frames[n++];
		unw_word_t ip = 0, sp = 0;
		unw_save_loc_t loc;

		if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0 || unw_get_reg(&c, UNW_REG_SP, &sp) < 0)
			return w->err ?: -EIO;
		*f = (struct inj_frame){.ip = ip, .sp = sp, .signal_frame = at_sigreturn(w, ip)};
		if (w->err)
			return w->err;

		w->step_ip = ip;
		w->noinfo = false;
		r = unw_step(&c);
		if (w->err)
			return w->err;
		f->guessed = w->noinfo;
		if (r < 0) {
			end = INJ_STACK_END_BROKEN;
			break;
		}
		/* Without unwind info libunwind also says 0 when %rbp leads nowhere. */
		if (r == 0) {
			end = w->noinfo ? INJ_STACK_END_NO_INFO : INJ_STACK_END_OUTERMOST;
			break;
		}
		if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0)
			return w->err ?: -EIO;
		if (ip == 0) {
			/* A return address of 0 is a chain's end marker, not a frame. */
			end = w->noinfo ? INJ_STACK_END_NO_INFO : INJ_STACK_END_OUTERMOST;
			break;
		}
		if (unw_get_save_loc(&c, UNW_X86_64_RIP, &loc) == 0 && loc.type == UNW_SLT_MEMORY)
			f->ra_slot = loc.u.addr;
		if (n == max) {
			end = INJ_STACK_END_TRUNCATED;
			break;
		}
	}
	*ret_n = n;
	if (ret_end)
		*ret_end = end;
	return 0;
}

int inj_stack_walk(struct inj_unwinder *u, struct inj_thread *t, struct inj_frame *frames,
		   size_t max, size_t *ret_n, enum inj_stack_end *ret_end)
{
	struct walk w = {.u = u};
	int r;

	if (!max || t->proc != u->proc)
		return -EINVAL;
	if (t->stop == INJ_GONE || t->zombie)
		return -ESRCH;
	if (t->stop == INJ_RUNNING)
		return -EBUSY;
	if (u->synced && u->synced_runs != inj_ptrace_runs()) {
		/* The target ran since the sync: what it said may be wrong now. */
		unsync(u);
		forget_rows(u);
	}
	if (t->prepared) {
		w.regs = t->saved_regs;
	} else {
		r = inj_thread_getregs(t, &w.regs);
		if (r < 0)
			return r;
	}
	lines_reset(u);
	walking = &w;
	r = walk(&w, frames, max, ret_n, ret_end);
	walking = NULL;
	return r;
}
