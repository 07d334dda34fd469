/*
 * Hand-written functions for test_copier.c, one per relative form the copier
 * rewrites. Each function NAME is copied as [NAME, NAME_end); code after
 * NAME_end (or before NAME) is "outside" and stays where it is, so branches to
 * it are outbound. Every function keeps its first 5 bytes free of branch
 * targets (the entry patch goes there) unless the test is about exactly that.
 * The assembler picks rel8 wherever it reaches; {disp32} forces rel32.
 */
	.text

#define FUNC(name) .globl name; .type name, @function; name:
/* The int3 keeps name_end from sharing its address with the next object's first function. */
#define END(name) .globl name##_end; name##_end: .size name, name##_end - name; int3

/* Outside helpers: called, jumped to, or pointed at. */
FUNC(cpa_helper)		/* x * x + 3 */
	mov %rdi, %rax
	imul %rdi, %rax
	add $3, %rax
	ret
END(cpa_helper)

FUNC(cpa_helper_alt)		/* 2x + 1: tells a redirected call from a direct one */
	lea 1(%rdi,%rdi), %rax
	ret
END(cpa_helper_alt)

/* jmp rel8 forward and backward, jcc rel8 backward: 1 + 7x for x >= 0. */
FUNC(cpa_jmp8)
	xor %eax, %eax
	mov %rdi, %rcx
	jmp 2f
1:	add $7, %rax
	dec %rcx
	jnz 3f
	ret
2:	add $1, %rax
	test %rcx, %rcx
	jnz 1b
	ret
3:	jmp 1b
END(cpa_jmp8)

/* The same with rel32 forms. */
FUNC(cpa_jmp32)
	xor %eax, %eax
	mov %rdi, %rcx
	{disp32} jmp 2f
1:	add $7, %rax
	dec %rcx
	{disp32} jnz 3f
	ret
2:	add $1, %rax
	test %rcx, %rcx
	{disp32} jnz 1b
	ret
3:	{disp32} jmp 1b
END(cpa_jmp32)

/* Every condition after cmp b, a: bit i set when condition i holds. */
.macro JCC_ALL disp
	xor %eax, %eax
	mov $1, %edx
	.irp cc, o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
	cmp %rsi, %rdi
	\disp j\cc 1f
	jmp 2f
1:	or %rdx, %rax
2:	shl $1, %rdx
	.endr
	/* Backward forms too: each taken jcc here jumps back over a counter. */
	.irp cc, e, ne, l, ge
	cmp %rsi, %rdi
	\disp j\cc 4f
	jmp 5f
3:	add $0x10000, %rax
	jmp 6f
4:	\disp jmp 3b
5:	add $0x100000, %rax
6:
	.endr
	ret
.endm

FUNC(cpa_jcc8)
	JCC_ALL
END(cpa_jcc8)

FUNC(cpa_jcc32)
	JCC_ALL {disp32}
END(cpa_jcc32)

/* call rel32 to an outside function and through the PLT: helper(x) + labs(x) + x. */
FUNC(cpa_call)
	push %rbx
	push %r12
	push %r13
	mov %rdi, %rbx
	call cpa_helper
	mov %rax, %r12
	mov %rbx, %rdi
	call labs@PLT
	add %r12, %rax
	add %rbx, %rax
	pop %r13
	pop %r12
	pop %rbx
	ret
END(cpa_call)

/* Recursion: call rel32 to the function's own start. Sum 1..n. */
FUNC(cpa_rec)
	test %rdi, %rdi
	nop
	nop
	jle 1f
	push %rdi
	dec %rdi
	call cpa_rec
	pop %rdi
	add %rdi, %rax
	ret
1:	xor %eax, %eax
	ret
END(cpa_rec)

/*
 * The loop family, internal targets, forward and backward. cpa_loops(n, v):
 * n >= 1 iterations of loop; v points at 8 longs for loope/loopne scans.
 */
FUNC(cpa_loops)
	xor %eax, %eax
	mov %rdi, %rcx
1:	add $3, %rax		/* loop backward: 3n */
	loop 1b
	mov %rdi, %rcx
	loop 2f			/* loop forward: taken when n > 1 */
	add $1000, %rax
2:	mov $8, %ecx		/* loope backward: leading zeros of v */
	xor %edx, %edx
3:	cmpq $0, (%rsi,%rdx,8)
	lea 1(%rdx), %rdx
	loope 3b
	imul $100, %rdx, %rdx
	add %rdx, %rax
	mov $8, %ecx		/* loopne backward: position of the first 5 */
	xor %edx, %edx
4:	cmpq $5, (%rsi,%rdx,8)
	lea 1(%rdx), %rdx
	loopne 4b
	imul $10000, %rdx, %rdx
	add %rdx, %rax
	mov %rdi, %rcx		/* loope/loopne forward */
	cmp $2, %rdi
	loope 5f
	add $0x1000000, %rax
5:	cmp $3, %rdi
	loopne 6f
	add $0x2000000, %rax
6:	mov %rdi, %rcx		/* jrcxz forward and backward, jecxz forward */
	sub $1, %rcx
	jrcxz 8f
	jmp 9f
7:	add $0x4000000, %rax
	jmp 10f
8:	jrcxz 7b
9:	mov %rdi, %rcx
	sub $2, %ecx
	jecxz 10f
	add $0x8000000, %rax
10:	ret
END(cpa_loops)

/*
 * The loop family with targets outside the function: copies expand each into
 * "loopcc L1; jmp L2; L1: jmp rel32 target; L2:".
 */
cpa_lx_pre:
	add $1000, %rax
	ret
FUNC(cpa_lx)
	mov %rdi, %rcx
	xor %eax, %eax
	jrcxz cpa_lx_pre	/* n == 0: 1000 */
	sub $7, %ecx
	jecxz cpa_lx_post2	/* n == 7: 300000 */
	mov %rdi, %rcx
	add $5, %rax
	loop cpa_lx_post	/* n > 1: 20005; n == 1: 5 */
	ret
END(cpa_lx)
cpa_lx_post:
	add $20000, %rax
	ret
cpa_lx_post2:
	add $300000, %rax
	ret

/* jmp and jcc rel8 (one with a branch hint) to outside targets. */
FUNC(cpa_jx)
	mov %rdi, %rax
	test %rax, %rax
	js cpa_jx_neg
	cmp $10, %rax
	ds jg cpa_jx_big
	add $1, %rax
	jmp cpa_jx_out
END(cpa_jx)
cpa_jx_neg:
	neg %rax
	ret
cpa_jx_big:
	shl $1, %rax
	ret
cpa_jx_out:
	add $100, %rax
	ret

/*
 * Widening that cascades. E: ten outbound je rel8 back to cpa_widen_ext (each
 * becomes rel32, +4 bytes). A1 (jz) and A2 (jmp back) span E, so they widen
 * in the first layout round. B (jz) spans only A2 and 124 bytes of padding:
 * it reaches until A2 grows, so it widens in the second round.
 * x = 0 -> 0, x > 0 -> 10x + 100, x = -1 -> -5.
 */
cpa_widen_ext:
	mov $-5, %rax
	ret
FUNC(cpa_widen)
	xor %eax, %eax
	mov %rdi, %rcx
	test %rcx, %rcx
	jz 9f			/* A1 */
1:	.rept 10		/* E */
	add $1, %rax
	cmp $-1, %rcx
	je cpa_widen_ext
	.endr
	dec %rcx
	jz 8f			/* B */
	jmp 1b			/* A2 */
9:	ret
	.fill 124, 1, 0x90
8:	add $100, %rax
	ret
END(cpa_widen)

	.data
	.balign 16
	.globl cpa_var64, cpa_var32, cpa_var8, cpa_store, cpa_store32, cpa_fnptr, cpa_table
cpa_var64:	.quad 0x1122334455667788
cpa_var32:	.long 0x12345678
cpa_var8:	.byte 5
	.balign 8
cpa_store:	.quad 0
cpa_store32:	.long 0
	.balign 8
cpa_fnptr:	.quad cpa_helper
cpa_table:	.quad 11, 22, 33, 44

	.section .rodata
	.balign 16
cpa_d1:		.double 1.5
cpa_d2:		.double 2.25
cpa_d3:		.double 7.75
	.balign 16
cpa_vec:	.long 1, 2, 3, 4

	.text

/* RIP-relative loads, stores (with an immediate after disp32), lea. */
FUNC(cpa_rip_load)
	mov cpa_var64(%rip), %rax
	add %rdi, %rax
	movzbl cpa_var8(%rip), %ecx
	add %rcx, %rax
	ret
END(cpa_rip_load)

FUNC(cpa_rip_store)
	mov %rdi, cpa_store(%rip)
	movl $0xabcdef, cpa_store32(%rip)
	addq $3, cpa_store(%rip)
	addl $0x11111, cpa_store32(%rip)
	mov cpa_store(%rip), %rax
	ret
END(cpa_rip_store)

FUNC(cpa_rip_lea)
	lea cpa_table(%rip), %rax
	and $3, %rdi
	mov (%rax,%rdi,8), %rax
	ret
END(cpa_rip_lea)

/* cmp with memory and an immediate after disp32: one bit per comparison. */
FUNC(cpa_rip_cmp)
	xor %eax, %eax
	cmpl $0x12345678, cpa_var32(%rip)
	sete %al
	cmpb $5, cpa_var8(%rip)
	sete %cl
	movzbl %cl, %ecx
	shl $1, %ecx
	or %ecx, %eax
	cmp %rdi, cpa_var64(%rip)
	setl %cl
	movzbl %cl, %ecx
	shl $2, %ecx
	or %ecx, %eax
	testb $4, cpa_var8(%rip)
	setnz %cl
	movzbl %cl, %ecx
	shl $3, %ecx
	or %ecx, %eax
	ret
END(cpa_rip_cmp)

/* SSE with RIP-relative operands, two of them with an immediate after disp32. */
FUNC(cpa_rip_sse)
	mulsd cpa_d1(%rip), %xmm0
	addsd cpa_d2(%rip), %xmm0
	roundsd $1, cpa_d3(%rip), %xmm1
	addsd %xmm1, %xmm0
	pshufd $0x1b, cpa_vec(%rip), %xmm2
	cvtdq2pd %xmm2, %xmm2
	addsd %xmm2, %xmm0
	ret
END(cpa_rip_sse)

/* VEX and EVEX (xmm16) forms; EVEX with an immediate after disp32. */
FUNC(cpa_rip_avx)
	vmulsd cpa_d1(%rip), %xmm0, %xmm0
	vaddsd cpa_d2(%rip), %xmm0, %xmm16
	vrndscalesd $1, cpa_d3(%rip), %xmm16, %xmm17
	vaddsd %xmm17, %xmm16, %xmm16
	vmovsd %xmm16, %xmm0, %xmm0
	ret
END(cpa_rip_avx)

FUNC(cpa_rip_push)
	push cpa_var64(%rip)
	pop %rax
	add %rdi, %rax
	ret
END(cpa_rip_push)

/* call and jmp (tail call) through a pointer in memory. */
FUNC(cpa_rip_call)
	push %rbx
	mov %rdi, %rbx
	call *cpa_fnptr(%rip)
	add %rbx, %rax
	pop %rbx
	ret
END(cpa_rip_call)

FUNC(cpa_rip_jmp)
	add $2, %rdi
	jmp *cpa_fnptr(%rip)
END(cpa_rip_jmp)

/* Falls through its end into the next function: the copy needs a jmp there. */
FUNC(cpa_fall)
	lea 3(%rdi), %rax
	add %rax, %rax
	.globl cpa_fall_end
cpa_fall_end:
	.size cpa_fall, cpa_fall_end - cpa_fall
cpa_fall_next:
	add $1, %rax
	ret

/* endbr64, then a loop back to offset 4: the patch's first byte, allowed. */
FUNC(cpa_endbr)
	endbr64
1:	add $3, %rsi
	dec %rdi
	jg 1b
	mov %rsi, %rax
	ret
END(cpa_endbr)

	.section .note.GNU-stack, "", @progbits
