/*
 * Code for test_ehframe.c whose copies do not have the original's layout:
 * every function leaves itself through a short branch that a copy far away
 * must widen or expand, and changes the CFA after that branch, so that CFI
 * applied at the original's offsets in the copy would be wrong.
 */
	.text

#define FUNC(name) .globl name; .type name, @function; name:
#define END(name) .globl name##_end; name##_end: .size name, name##_end - name; int3

/*
 * ehf_widen(cb, x): cb(x) + 1 under three pushes. The je (rel8 -> rel32: 4
 * bytes more) and the jrcxz (expanded: 7 bytes more) leave the function, so
 * the copy's call returns 11 bytes later than the original's. The pops
 * change the CFA 2 and 3 bytes after the return address: CFI applied at the
 * original's offsets would take them for done.
 */
FUNC(ehf_widen)
	.cfi_startproc
	push %rbx
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	test %rdi, %rdi
	je .Lehf_widen_null
	push %rbp
	.cfi_def_cfa_offset 24
	.cfi_offset %rbp, -24
	mov %rdi, %rcx
	jrcxz .Lehf_widen_null2
	push %r12
	.cfi_def_cfa_offset 32
	.cfi_offset %r12, -32
	mov %rdi, %rbx
	mov %rsi, %rdi
	call *%rbx
	pop %r12
	.cfi_def_cfa_offset 24
	pop %rbp
	.cfi_def_cfa_offset 16
	pop %rbx
	.cfi_def_cfa_offset 8
	inc %rax
	ret
	.cfi_endproc
END(ehf_widen)

/*
 * ehf_frame(cb, x): cb(x) + 1 in a frame-pointer frame. The loope (never
 * taken: ZF is clear) leaves the function: a copy far away expands it by 7
 * bytes. Right after the call, leave moves the CFA back to rsp.
 */
FUNC(ehf_frame)
	.cfi_startproc
	push %rbp
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	mov %rsp, %rbp
	.cfi_def_cfa_register %rbp
	sub $16, %rsp
	mov %rdi, %rcx
	test %rdi, %rdi
	loope .Lehf_frame_out
	mov %rdi, -8(%rbp)
	mov %rsi, %rdi
	call *-8(%rbp)
	leave
	.cfi_def_cfa %rsp, 8
	inc %rax
	ret
	.cfi_endproc
END(ehf_frame)

/* Outside the functions: where their short branches go, with their frames. */
.Lehf_widen_null:
	.cfi_startproc
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	pop %rbx
	.cfi_def_cfa_offset 8
	xor %eax, %eax
	ret
	.cfi_endproc

.Lehf_widen_null2:
	.cfi_startproc
	.cfi_def_cfa_offset 24
	.cfi_offset %rbx, -16
	.cfi_offset %rbp, -24
	pop %rbp
	.cfi_def_cfa_offset 16
	pop %rbx
	.cfi_def_cfa_offset 8
	xor %eax, %eax
	ret
	.cfi_endproc

.Lehf_frame_out:
	.cfi_startproc
	.cfi_def_cfa %rbp, 16
	.cfi_offset %rbp, -16
	leave
	.cfi_def_cfa %rsp, 8
	xor %eax, %eax
	ret
	.cfi_endproc

	.section .note.GNU-stack, "", @progbits
