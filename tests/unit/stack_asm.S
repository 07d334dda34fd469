/*
 * Code for test_stack.c whose frames must be known to the byte. Every
 * function has CFI except the trampolines, which are never on a walked stack.
 */
	.text

#define FUNC(name) .globl name; .type name, @function; name:
#define END(name) .globl name##_end; name##_end: .size name, name##_end - name; int3

/* stack_victim(progress, go): a frame of 32 bytes around a loop a signal interrupts. */
FUNC(stack_victim)
	.cfi_startproc
	push %rbx
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	sub $16, %rsp
	.cfi_def_cfa_offset 32
	.globl stack_victim_loop
stack_victim_loop:
1:	incq (%rdi)
	cmpl $0, (%rsi)
	je 1b
	.globl stack_victim_loop_end
stack_victim_loop_end:
	add $16, %rsp
	.cfi_def_cfa_offset 16
	pop %rbx
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc
END(stack_victim)

/* Reached by a rewritten return address: flags are dead, rax is the callee's result. */
FUNC(stack_ret_tramp)
	lock incl stack_tramp_hits(%rip)
	jmp *stack_tramp_target(%rip)
END(stack_ret_tramp)

/* Reached by a rewritten interrupted rip: everything is live. No red zone in stack_victim. */
FUNC(stack_sig_tramp)
	pushfq
	lock incl stack_tramp_hits(%rip)
	popfq
	jmp *stack_tramp_target(%rip)
END(stack_sig_tramp)

/*
 * stack_copyme(cb, _): cb(). The je to .Lcopy_null leaves the function: the
 * copier widens it (rel8 -> rel32), so everything after it sits 4 bytes
 * later in the copy. The pops right after the call change the CFA within 4
 * bytes of the return address: CFI applied at the copy's offsets instead of
 * the original's would take them for done.
 */
FUNC(stack_copyme)
	.cfi_startproc
	push %rbx
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	test %rdi, %rdi
	je .Lcopy_null
	push %rbp
	.cfi_def_cfa_offset 24
	.cfi_offset %rbp, -24
	push %r12
	.cfi_def_cfa_offset 32
	.cfi_offset %r12, -32
	mov %rdi, %rbx
	call *%rbx
	pop %r12
	.cfi_def_cfa_offset 24
	pop %rbp
	.cfi_def_cfa_offset 16
	pop %rbx
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc
END(stack_copyme)

/* stack_copyspin(progress, go): spins like stack_victim, returns 5. */
FUNC(stack_copyspin)
	.cfi_startproc
	push %rbx
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	test %rdi, %rdi
	je .Lcopy_null
	push %rbp
	.cfi_def_cfa_offset 24
	.cfi_offset %rbp, -24
	push %r12
	.cfi_def_cfa_offset 32
	.cfi_offset %r12, -32
1:	incq (%rdi)
	cmpl $0, (%rsi)
	je 1b
	pop %r12
	.cfi_def_cfa_offset 24
	pop %rbp
	.cfi_def_cfa_offset 16
	pop %rbx
	.cfi_def_cfa_offset 8
	mov $5, %eax
	ret
	.cfi_endproc
END(stack_copyspin)

/* Outside both: reached with %rbx pushed. */
.Lcopy_null:
	.cfi_startproc
	.cfi_def_cfa_offset 16
	.cfi_offset %rbx, -16
	pop %rbx
	.cfi_def_cfa_offset 8
	xor %eax, %eax
	ret
	.cfi_endproc

	.data
	.balign 8
	.globl stack_tramp_target
stack_tramp_target:
	.quad 0
	.globl stack_tramp_hits
stack_tramp_hits:
	.long 0

	.section .note.GNU-stack, "", @progbits
