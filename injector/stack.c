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
 */
#include <errno.h>
#include <libunwind-ptrace.h>
#include <libunwind.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

struct line {
	uint64_t base;
	bool valid;
	uint8_t data[LINE_SIZE];
};

struct inj_unwinder {
	struct inj_process *proc;
	unw_addr_space_t as;
	void *upt; /* libunwind-ptrace's state: the ELF image it has mapped, its unwind table */
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
			r = _UPT_find_proc_info(as, before ? orig - 1 : orig, pi, need_unwind_info,
						u->upt);
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
	r = _UPT_find_proc_info(as, ip, pi, need_unwind_info, u->upt);
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

void inj_unwinder_free(struct inj_unwinder *u)
{
	if (!u)
		return;
	if (u->upt)
		_UPT_destroy(u->upt);
	if (u->as)
		unw_destroy_addr_space(u->as);
	free(u->lines);
	free(u);
}

int inj_unwinder_flush(struct inj_unwinder *u)
{
	/* libunwind-ptrace keeps the last object's image and table by address range. */
	void *upt = _UPT_create(u->proc->pid);

	if (!upt)
		return -ENOMEM;
	_UPT_destroy(u->upt);
	u->upt = upt;
	unw_flush_cache(u->as, 0, 0);
	memset(u->sigret, 0, sizeof(u->sigret));
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
	if (t->prepared) {
		w.regs = t->saved_regs;
	} else {
		r = inj_ptrace_getregs(t->tid, &w.regs);
		if (r < 0)
			return r;
	}
	lines_reset(u);
	walking = &w;
	r = walk(&w, frames, max, ret_n, ret_end);
	walking = NULL;
	return r;
}
