/*
 * Function discovery: which functions the executable mappings of a target
 * hold, where they start and end at run time, and what they are called.
 *
 * Pipeline step 2 ("Map") of DESIGN.md. Everything here reads files and
 * /proc; nothing stops, traces or changes the target, so it can run while the
 * target runs. The result is a snapshot of one /proc/PID/maps reading: after
 * the target maps or unmaps a library it is stale, and the caller rediscovers.
 *
 * Sources, in order of trust:
 *   .symtab   every function with its exact size and name (absent when stripped);
 *   .dynsym   the exported functions: stripped files keep it;
 *   .eh_frame one FDE per function (per hot/cold part) that unwinding needs,
 *             which compilers emit by default and strip keeps: it bounds every
 *             compiled function of a stripped file, without a name. The
 *             module keeps the section's bytes and each function the
 *             offset of its FDE, for the unwind info of its copies.
 * A function is one start address: aliases (several symbols at one address)
 * become one struct func with one chosen name, and every name stays findable
 * through module_find_func_by_name(). An FDE that starts inside a symbol's
 * range adds nothing; an FDE at a sized symbol's start only sets FUNC_FROM_FDE;
 * every other FDE becomes a function of its own, named only when a size-less
 * symbol sits at its start (asm entry points such as _start).
 *
 * The PLT (.plt, .plt.sec, .plt.got, .iplt) is not a function: it is kept
 * apart as the module's plt ranges, and no function is made from it.
 *
 * Not handled: files without section headers (sstrip'ed; only the FDEs through
 * PT_GNU_EH_FRAME would be left), .debug_frame-only CFI (code built with
 * -fno-asynchronous-unwind-tables), compressed MiniDebugInfo (.gnu_debugdata)
 * and separate debug files under /usr/lib/debug (a stripped file's .symtab
 * could come from there, found by build-id), code without any CFI or symbol
 * (hand-written asm in some libraries): it belongs to no function.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "maps.h"
#include "range.h"

/*
 * Where a function's bounds and name came from; several can be set.
 *   FROM_SYMTAB  a .symtab symbol starts here;
 *   FROM_DYNSYM  a .dynsym symbol starts here;
 *   FROM_FDE     an .eh_frame FDE starts here (without a sized symbol, the
 *                FDE gave the bounds);
 *   IFUNC        an STT_GNU_IFUNC symbol: this is the resolver, not the
 *                implementation it picks;
 *   GLOBAL       some symbol here is global or weak: other modules may call it;
 *   NESTED       starts inside an earlier function (asm entry points, odd FDEs).
 */
#define FUNC_FROM_SYMTAB (1u << 0)
#define FUNC_FROM_DYNSYM (1u << 1)
#define FUNC_FROM_FDE (1u << 2)
#define FUNC_IFUNC (1u << 3)
#define FUNC_GLOBAL (1u << 4)
#define FUNC_NESTED (1u << 5)

/* struct func's fde_off when no FDE of the module's .eh_frame starts at the function. */
#define FUNC_NO_FDE UINT64_MAX

struct func {
	uint64_t start;	  /* run-time addresses: ELF address + module bias */
	uint64_t end;	  /* exclusive, > start */
	const char *name; /* NULL when no symbol names it; owned by the module */
	uint32_t flags;	  /* FUNC_* */
	/*
	 * Offset in the module's eh_frame of the FDE that starts exactly at
	 * start (the longest, if several do), or FUNC_NO_FDE; always
	 * FUNC_NO_FDE without FUNC_FROM_FDE. Its range may differ from
	 * [start, end): a symbol's size and a split function's several FDEs are
	 * not checked against it (ehframe_add() is).
	 */
	uint64_t fde_off;
};

/* One PT_LOAD segment, in ELF addresses (add the bias for run time). */
struct module_segment {
	uint64_t vaddr;
	uint64_t memsz;
	uint64_t offset;
	uint64_t filesz;
	uint32_t flags; /* PF_R, PF_W, PF_X */
};

/* A name of a function: the chosen one and every alias. */
struct module_name {
	const char *name;
	size_t func; /* index in funcs */
};

/* A GOT slot that the dynamic linker fills with a symbol's address. */
struct module_got {
	uint64_t slot;	  /* run time */
	const char *name; /* the symbol; owned by the module */
};

struct module_stats {
	size_t symtab_funcs; /* STT_FUNC/STT_GNU_IFUNC symbols read from .symtab */
	size_t dynsym_funcs; /* ... from .dynsym */
	size_t fdes;	     /* FDEs read from .eh_frame */
	size_t fde_funcs;    /* functions that only an FDE gave */
	size_t fdes_skipped; /* FDEs in the PLT, empty, or with an encoding not understood */
};

/*
 * One loaded ELF file (or the vDSO) at one load address. Everything it points
 * to is owned by it.
 */
struct module {
	char *path;	    /* as /proc/PID/maps names it; "[vdso]" for the vDSO */
	bool deleted;	    /* maps said " (deleted)" */
	bool via_map_files; /* through /proc/PID/map_files, else /proc/PID/root/PATH or memory */
	bool from_memory;   /* read from the target's memory (the vDSO) */
	unsigned dev_major; /* the file's identity as maps gives it (0 for the vDSO) */
	unsigned dev_minor;
	uint64_t inode;
	uint16_t elf_type; /* ET_EXEC (bias 0) or ET_DYN (PIE, shared library, vDSO) */

	/* NT_GNU_BUILD_ID; build_id_len 0 and build_id_hex "" when the file has none. */
	unsigned char *build_id;
	size_t build_id_len;
	char *build_id_hex;

	uint64_t bias; /* run-time address - ELF address */

	struct range *text; /* run-time ranges of this module's executable mappings, sorted */
	size_t n_text;
	struct range *plt; /* run-time ranges of .plt, .plt.sec, .plt.got, .iplt, sorted */
	size_t n_plt;
	struct module_segment *segs; /* PT_LOAD, in file order */
	size_t n_segs;

	struct func *funcs; /* sorted by start; starts are unique */
	size_t n_funcs;
	struct module_name *names; /* every symbol name of a function, sorted by strcmp */
	size_t n_names;

	struct module_stats stats;

	/*
	 * A copy of the module's .eh_frame section, which ehframe.c reads to
	 * give copies of its functions unwind info, and the run-time address
	 * of its first byte (section address + bias), which its pcrel pointers
	 * are relative to. NULL and 0 without one.
	 */
	uint8_t *eh_frame;
	size_t eh_frame_size;
	uint64_t eh_frame_addr;

	/*
	 * The slots of its dynamic relocations R_X86_64_JUMP_SLOT (the PLT's)
	 * and R_X86_64_GLOB_DAT (calls through the GOT), sorted by slot: which
	 * symbol each will hold, resolved yet or not (lazy binding).
	 */
	struct module_got *got;
	size_t n_got;

	char *strings;	   /* storage of every name */
	char *got_strings; /* storage of the GOT's symbol names */
};

/* An executable mapping that could not be read, so no module covers it. */
struct module_skip {
	uint64_t start;
	uint64_t end;
	char *path; /* NULL for an anonymous mapping */
	int err; /* -ENODATA: no file behind it (anonymous, e.g. a JIT's); else module_open()'s */
};

struct module_text;

struct module_set {
	struct module **v; /* in order of their lowest text address */
	size_t n;
	struct module_skip *skipped; /* executable mappings without a module, in address order */
	size_t n_skipped;

	struct module_text *index; /* private: text ranges sorted, for module_set_find() */
	size_t n_index;
};

/*
 * Reads the module that the executable mapping e of process pid belongs to. m
 * is the maps reading e comes from: every other executable mapping of the same
 * file (same device, inode and path) at the same bias joins the module's text.
 *
 * A file mapping is opened through /proc/PID/map_files/START-END, which gives
 * the mapped file itself even when it was deleted or replaced since; where that
 * is not allowed (it needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN) through
 * /proc/PID/root/PATH, which resolves the path in the target's own mount
 * namespace, and only if the inode there is still the mapped one. The vDSO is
 * read from the target's memory (/proc/PID/mem).
 *
 * Returns 0 and *ret; -EINVAL if e is not an executable file or vDSO mapping;
 * -ESRCH if the process is gone; -ESTALE if the only reachable file at the path
 * is another one; -ENOEXEC if it is not a 64-bit x86-64 ELF file or no PT_LOAD
 * segment maps e; -ENOMEM; -EIO for an ELF file libelf cannot read; other -errno
 * from open().
 */
int module_open(pid_t pid, const struct maps *m, const struct maps_entry *e, struct module **ret);
void module_free(struct module *mod);
static inline void module_freep(struct module **mod)
{
	module_free(*mod);
}

/*
 * The function containing run-time address addr, or NULL. Where functions
 * overlap (FUNC_NESTED), the one that starts last before addr.
 */
const struct func *module_find_func(const struct module *mod, uint64_t addr);
/* The function that a symbol of this name (chosen name or alias) starts, or NULL. */
const struct func *module_find_func_by_name(const struct module *mod, const char *name);
/* The symbol whose address the GOT slot at run-time address slot holds or will hold, or NULL. */
const char *module_got_symbol(const struct module *mod, uint64_t slot);

/*
 * Discovers every executable mapping of process pid: one module for each file
 * at each load address, and the vDSO. A mapping that cannot be read (an
 * anonymous executable mapping such as a JIT's, a file that is not ELF, a file
 * that cannot be opened) is listed in skipped with the reason, and discovery
 * goes on. [vsyscall] is left out: it is the kernel's, at a fixed address.
 * Returns 0 and *ret, -ESRCH if the process is gone (a zombie too), -ENOMEM,
 * or the -errno of reading /proc/PID/maps.
 */
int funcs_discover(pid_t pid, struct module_set **ret);
void module_set_free(struct module_set *set);
static inline void module_set_freep(struct module_set **set)
{
	module_set_free(*set);
}

/* The module whose text contains addr, or NULL. */
const struct module *module_set_find(const struct module_set *set, uint64_t addr);
/* The function containing addr and (if ret_mod) its module; NULL if none. */
const struct func *module_set_find_func(const struct module_set *set, uint64_t addr,
					const struct module **ret_mod);
/* The first module with this build-id (hex, lower case), or NULL. */
const struct module *module_set_find_build_id(const struct module_set *set, const char *hex);
